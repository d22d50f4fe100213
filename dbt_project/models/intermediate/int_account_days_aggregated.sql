{{
    config(
        materialized='incremental',
        unique_key=['account_id', 'event_timestamp'],
        partition_by=partitioned_by(),
    )
}}

with

calendar as (

    select distinct event_timestamp from {{ ref('int_prices_with_returns') }}
    {% if is_incremental() %}
    -- A trade belongs to the first close at or after it, so a week before the cutoff is ample.
    where event_timestamp >= {{ incremental_cutoff() }} - {{ days(7) }}
    {% endif %}

),

accounts as (

    -- an account exists from its opening, or (without the optional opened_at) from its
    -- first tier record
    select
        account_id,
        min(coalesce(opened_at, valid_from)) as opened_at
    from {{ ref('int_account_tiers_versioned') }}
    group by account_id

),

-- One row per account and trading day from the day the account was open at the close.
grid as (

    select
        accounts.account_id,
        calendar.event_timestamp
    from accounts
    inner join calendar on calendar.event_timestamp >= accounts.opened_at
    {% if is_incremental() %}
    where calendar.event_timestamp >= {{ incremental_cutoff() }}
    {% endif %}

),

trades as (

    select * from {{ ref('int_trades_costed') }}
    {% if is_incremental() %}
    where traded_at >= {{ incremental_cutoff() }} - {{ days(7) }}
    {% endif %}

),

-- Each trade belongs to the trading day of the first close at or after it.
dated as (

    select
        trades.*,
        calendar.event_timestamp
    from trades
    {{ asof_inner_join('trades', 'calendar', [], 'traded_at', 'event_timestamp', 'forward') }}

),

daily as (

    select
        account_id,
        event_timestamp,
        count(*) as trade_count,
        -- Sums over lists in trade order: grouped sum() of doubles depends on threads.
        {{ list_sum(list_ordered('abs(signed_quantity) * price', 'trade_id')) }} as gross_notional,
        {{ list_sum(list_ordered('fee', 'trade_id')) }} as fees,
        {{ list_sum(list_ordered('-signed_quantity * price - fee', 'trade_id')) }} as net_cash_flow,
        {{ list_sum(list_ordered('realized_profit', 'trade_id')) }} as realized_profit,
        count(*) filter (where closed_quantity > 0) as closing_trades,
        count(*) filter (where realized_profit > 0) as winning_trades
    from dated
    group by account_id, event_timestamp

),

final as (

    select
        grid.account_id,
        grid.event_timestamp,
        coalesce(daily.trade_count, 0) as trade_count,
        coalesce(daily.gross_notional, 0) as gross_notional,
        coalesce(daily.fees, 0) as fees,
        coalesce(daily.net_cash_flow, 0) as net_cash_flow,
        coalesce(daily.realized_profit, 0) as realized_profit,
        coalesce(daily.realized_profit, 0) - coalesce(daily.fees, 0) as net_profit,
        coalesce(daily.closing_trades, 0) as closing_trades,
        coalesce(daily.winning_trades, 0) as winning_trades
    from grid
    left join daily
        on grid.account_id = daily.account_id and grid.event_timestamp = daily.event_timestamp

)

select *{{ partition_column('event_timestamp') }} from final
