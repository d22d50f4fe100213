{{ config(materialized='view') }}

with

prices as (

    select * from {{ ref('stg_market__prices') }}

),

final as (

    select
        symbol,
        event_timestamp,
        open,
        high,
        low,
        close,
        volume,
        lag(close) over by_day as previous_close,
        close / lag(close) over by_day - 1 as return_1d
    from prices
    window by_day as (partition by symbol order by event_timestamp)

)

select * from final
