{{
    config(
        materialized='incremental',
        unique_key='trade_id',
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
        arg_max_null(position_after, (traded_at, trade_id)) as position,
        arg_max_null(avg_cost_after, (traded_at, trade_id)) as avg_cost
    from {{ this }}
    where traded_at < {{ incremental_cutoff('traded_at') }}
        and traded_at >= {{ last_trade_before_cutoff() }}
        and (account_id, symbol) in (select distinct account_id, symbol from trades)
    group by account_id, symbol
    {% else %}
    select
        cast(null as varchar) as account_id,
        cast(null as varchar) as symbol,
        cast(0 as double) as position,
        cast(null as double) as avg_cost
    where false
    {% endif %}

),

costed as (

    -- Step 0 of every (account, symbol): its opening position (flat unless carried over).
    select
        pairs.account_id,
        pairs.symbol,
        cast(0 as bigint) as seq,
        cast(null as varchar) as trade_id,
        cast(null as timestamptz) as traded_at,
        cast(null as double) as signed_quantity,
        cast(null as double) as price,
        cast(null as double) as fee,
        coalesce(opening.position, 0) as position_after,
        opening.avg_cost as avg_cost_after,
        cast(null as double) as closed_quantity,
        cast(null as double) as realized_profit
    from (select distinct account_id, symbol from sequenced) as pairs
    left join opening_positions as opening
        on pairs.account_id = opening.account_id and pairs.symbol = opening.symbol

    union all

    -- Each next trade moves the position; see int_trades_costed.yml for the rule.
    select
        t.account_id,
        t.symbol,
        t.seq,
        t.trade_id,
        t.traded_at,
        t.signed_quantity,
        t.price,
        t.fee,
        c.position_after + t.signed_quantity,
        case
            when c.position_after = 0 or sign(c.position_after) = sign(t.signed_quantity)
                then (c.position_after * coalesce(c.avg_cost_after, 0)
                    + t.signed_quantity * t.price) / (c.position_after + t.signed_quantity)
            when c.position_after + t.signed_quantity = 0 then null
            when sign(c.position_after + t.signed_quantity) <> sign(c.position_after)
                then t.price
            else c.avg_cost_after
        end,
        case
            when c.position_after = 0 or sign(c.position_after) = sign(t.signed_quantity)
                then 0
            else least(abs(t.signed_quantity), abs(c.position_after))
        end,
        case
            when c.position_after = 0 or sign(c.position_after) = sign(t.signed_quantity)
                then 0
            else least(abs(t.signed_quantity), abs(c.position_after))
                * sign(c.position_after) * (t.price - c.avg_cost_after)
        end
    from costed as c
    inner join sequenced as t
        on t.account_id = c.account_id and t.symbol = c.symbol and t.seq = c.seq + 1

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

select * from final
