{#
    Moving-average cost accounting per (account, symbol), one step per trade in (traded_at,
    trade_id) order (int_trades_costed.yml states the rule). The step is written once, in
    `position_step`, over the previous step `c` and the trade `t`; each engine applies it its
    own way: DuckDB with a recursive CTE, Spark with a fold (`aggregate`) over each pair's
    trades, since Spark runs a recursive CTE as one job per step and a pair may have thousands
    of trades. The same arithmetic in the same order gives the same doubles on both.
#}

{% macro position_step(c, t) -%}
    {%- set opens = c ~ '.position_after = 0 or sign(' ~ c ~ '.position_after) = sign(' ~ t ~ '.signed_quantity)' -%}
    {{- return({
        'position_after': c ~ '.position_after + ' ~ t ~ '.signed_quantity',
        'avg_cost_after': 'case
            when ' ~ opens ~ '
                then (' ~ c ~ '.position_after * coalesce(' ~ c ~ '.avg_cost_after, 0)
                    + ' ~ t ~ '.signed_quantity * ' ~ t ~ '.price) / (' ~ c ~ '.position_after + ' ~ t ~ '.signed_quantity)
            when ' ~ c ~ '.position_after + ' ~ t ~ '.signed_quantity = 0 then null
            when sign(' ~ c ~ '.position_after + ' ~ t ~ '.signed_quantity) <> sign(' ~ c ~ '.position_after)
                then ' ~ t ~ '.price
            else ' ~ c ~ '.avg_cost_after
        end',
        'closed_quantity': 'case
            when ' ~ opens ~ '
                then 0
            else least(abs(' ~ t ~ '.signed_quantity), abs(' ~ c ~ '.position_after))
        end',
        'realized_profit': 'case
            when ' ~ opens ~ '
                then 0
            else least(abs(' ~ t ~ '.signed_quantity), abs(' ~ c ~ '.position_after))
                * sign(' ~ c ~ '.position_after) * (' ~ t ~ '.price - ' ~ c ~ '.avg_cost_after)
        end',
    }) -}}
{%- endmacro %}


{#- Every step of every pair: step 0 is the pair's opening position (from `opening`: flat
    unless carried over), then one row per trade of `sequenced` (numbered by `seq`). -#}
{% macro cost_trades(sequenced, opening) -%}
    {{ return(adapter.dispatch('cost_trades', 'featurestack')(sequenced, opening)) }}
{%- endmacro %}

{% macro default__cost_trades(sequenced, opening) -%}
    {%- set step = position_step('c', 't') -%}
    -- Step 0 of every (account, symbol): its opening position (flat unless carried over).
    select
        pairs.account_id,
        pairs.symbol,
        cast(0 as bigint) as seq,
        cast(null as string) as trade_id,
        cast(null as timestamptz) as traded_at,
        cast(null as double) as signed_quantity,
        cast(null as double) as price,
        cast(null as double) as fee,
        coalesce(opening.position, 0) as position_after,
        opening.avg_cost as avg_cost_after,
        cast(null as double) as closed_quantity,
        cast(null as double) as realized_profit
    from (select distinct account_id, symbol from {{ sequenced }}) as pairs
    left join {{ opening }} as opening
        on pairs.account_id = opening.account_id and pairs.symbol = opening.symbol

    union all

    -- Each next trade moves the position.
    select
        t.account_id,
        t.symbol,
        t.seq,
        t.trade_id,
        t.traded_at,
        t.signed_quantity,
        t.price,
        t.fee,
        {%- for name, expr in step.items() %}
        {{ expr }} as {{ name }}{{ ',' if not loop.last }}
        {%- endfor %}
    from costed as c
    inner join {{ sequenced }} as t
        on t.account_id = c.account_id and t.symbol = c.symbol and t.seq = c.seq + 1
{%- endmacro %}

{#- The previous step is the last element of the steps built so far. -#}
{% macro spark__cost_trades(sequenced, opening) -%}
    {%- set step = position_step('element_at(steps, -1)', 't') -%}
    {%- set columns = ['seq', 'trade_id', 'traded_at', 'signed_quantity', 'price', 'fee'] -%}
    select
        folded.account_id,
        folded.symbol,
        step.*
    from (
        select
            pairs.account_id,
            pairs.symbol,
            aggregate(
                pairs.trades,
                array(named_struct(
                    'seq', cast(0 as bigint),
                    'trade_id', cast(null as string),
                    'traded_at', cast(null as timestamp),
                    'signed_quantity', cast(null as double),
                    'price', cast(null as double),
                    'fee', cast(null as double),
                    'position_after', cast(coalesce(opening.position, 0) as double),
                    'avg_cost_after', cast(opening.avg_cost as double),
                    'closed_quantity', cast(null as double),
                    'realized_profit', cast(null as double)
                )),
                (steps, t) -> concat(steps, array(named_struct(
                    {%- for column in columns %}
                    '{{ column }}', t.{{ column }},
                    {%- endfor %}
                    {%- for name, expr in step.items() %}
                    '{{ name }}', cast({{ expr }} as double){{ ',' if not loop.last }}
                    {%- endfor %}
                )))
            ) as steps
        from (
            select
                account_id,
                symbol,
                array_sort(collect_list(named_struct(
                    {%- for column in columns %}
                    '{{ column }}', {{ 'cast(seq as bigint)' if column == 'seq' else column }}
                    {{- ',' if not loop.last }}
                    {%- endfor %}
                ))) as trades
            from {{ sequenced }}
            group by account_id, symbol
        ) as pairs
        left join {{ opening }} as opening
            on pairs.account_id = opening.account_id and pairs.symbol = opening.symbol
    ) as folded
    lateral view explode(folded.steps) exploded as step
{%- endmacro %}
