{{
    config(
        materialized='incremental',
        unique_key='trade_id',
        partition_by=partitioned_by(),
    )
}}

with recursive

trades as (

    select
        trade_id,
        account_id,
        symbol,
        traded_at,
        case when side = 'buy' then quantity else -quantity end as signed_quantity,
        price,
        fee
    from {{ ref('stg_market__trades') }}
    {{ only_recomputed_rows('traded_at', 'traded_at') }}

),

sequenced as (

    select
        *,
        row_number() over (
            partition by account_id, symbol order by traded_at, trade_id
        ) as seq
    from trades

),

opening_positions as (

    {% if is_incremental() %}
    -- The position left by the last trade before the cutoff, as costed by an earlier build,
    -- for the pairs that trade again (a grouped arg_max_null: null costs kept; no sort of the whole history).
    select
        account_id,
        symbol,
        {{ arg_max_null('position_after', ['traded_at', 'trade_id']) }} as position,
        {{ arg_max_null('avg_cost_after', ['traded_at', 'trade_id']) }} as avg_cost
    from {{ this }}
    where traded_at < {{ incremental_cutoff('traded_at') }}
        and traded_at >= {{ last_trade_before_cutoff() }}
        and (account_id, symbol) in (select distinct account_id, symbol from trades)
    group by account_id, symbol
    {% else %}
    select
        cast(null as string) as account_id,
        cast(null as string) as symbol,
        cast(0 as double) as position,
        cast(null as double) as avg_cost
    where false
    {% endif %}

),

costed as (

    -- Each next trade moves the position; see int_trades_costed.yml for the rule.
    {{ cost_trades('sequenced', 'opening_positions') }}

),

final as (

    select
        trade_id,
        account_id,
        symbol,
        traded_at,
        signed_quantity,
        price,
        fee,
        position_after,
        avg_cost_after,
        closed_quantity,
        realized_profit
    from costed
    where seq > 0

)

select *{{ partition_column('traded_at') }} from final
