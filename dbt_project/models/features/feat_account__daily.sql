{{ config(unique_key=['account_id', 'event_timestamp'], partition_by=partitioned_by()) }}

with

days as (

    select * from {{ ref('int_account_days_aggregated') }}
    {{ lookback_rows(ref('int_account_days_aggregated'), 'account_id', 29) }}

),

tiers as (

    select * from {{ ref('int_account_tiers_versioned') }}

),

windows as (

    select
        *,
        {{ list_over('net_profit', 'last_30') }} as net_profits_30,
        {{ list_over('closing_trades', 'last_30') }} as closing_30,
        {{ list_over('winning_trades', 'last_30') }} as winning_30
    from days
    window last_30 as (
        partition by account_id
        order by event_timestamp
        rows between 29 preceding and current row
    )

),

final as (

    select
        windows.account_id,
        windows.event_timestamp,
        windows.trade_count,
        windows.gross_notional,
        windows.fees,
        windows.net_cash_flow,
        windows.realized_profit,
        windows.net_profit,
        case
            when {{ list_len('windows.net_profits_30') }} >= 7
                then {{ list_sum(list_tail('windows.net_profits_30', 7)) }}
        end as net_profit_7d,
        case
            when {{ list_len('windows.net_profits_30') }} = 30
                then {{ list_sum('windows.net_profits_30') }}
        end as net_profit_30d,
        case
            when {{ list_len('windows.closing_30') }} >= 7
                and {{ list_sum(list_tail('windows.closing_30', 7)) }} > 0
                then {{ list_sum(list_tail('windows.winning_30', 7)) }}
                / {{ list_sum(list_tail('windows.closing_30', 7)) }}
        end as win_rate_7d,
        case
            when {{ list_len('windows.closing_30') }} = 30
                and {{ list_sum('windows.closing_30') }} > 0
                then {{ list_sum('windows.winning_30') }} / {{ list_sum('windows.closing_30') }}
        end as win_rate_30d,
        tiers.tier,
        {{ days_between('tiers.opened_at', 'windows.event_timestamp') }} as days_since_opened
    from windows
    left join tiers
        on windows.account_id = tiers.account_id
        and windows.event_timestamp >= tiers.valid_from
        and (tiers.valid_to is null or windows.event_timestamp < tiers.valid_to)
    {{ only_recomputed_rows('windows.event_timestamp') }}

)

select *{{ partition_column('event_timestamp') }} from final
