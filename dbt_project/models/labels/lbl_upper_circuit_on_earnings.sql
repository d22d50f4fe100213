{{ config(unique_key=['symbol', 'event_timestamp'], partition_by=partitioned_by()) }}

with

earnings as (

    select
        symbol,
        announced_at
    from {{ ref('stg_market__earnings') }}
    {{ only_recomputed_rows('announced_at') }}

),

prices as (

    select * from {{ ref('int_prices_with_returns') }}
    {{ only_recomputed_rows() }}

),

-- The close that first reflects the announcement: the first one at or after it.
reaction as (

    select
        earnings.symbol,
        earnings.announced_at,
        prices.event_timestamp as close_timestamp,
        prices.close,
        prices.previous_close
    from earnings
    {{ asof_inner_join('earnings', 'prices', ['symbol'], 'announced_at', 'event_timestamp', 'forward') }}

),

final as (

    select
        symbol,
        announced_at as event_timestamp,
        -- A ratio, not close >= 1.1 * previous_close: 1.1 * 100 rounds to 110.00000000000001.
        cast(close / previous_close >= 1.1 as integer) as upper_circuit,
        close / previous_close - 1 as announcement_day_return,
        close_timestamp as label_timestamp
    from reaction
    where previous_close is not null

)

select *{{ partition_column('event_timestamp') }} from final
