{{
    config(
        materialized='incremental',
        unique_key=['symbol', 'event_timestamp'],
        incremental_strategy='delete+insert',
        on_schema_change='fail',
    )
}}

with

prices as (

    select
        symbol,
        event_timestamp,
        open,
        high,
        low,
        close,
        volume
    from {{ ref('stg_market__prices') }}
    {{ only_recomputed_rows() }}

    {% if is_incremental() %}
    union all

    -- Each symbol's last close already built before the cutoff, for the first lag.
    select
        symbol,
        max(event_timestamp) as event_timestamp,
        null as open,
        null as high,
        null as low,
        arg_max(close, event_timestamp) as close,
        null as volume
    from {{ this }}
    where event_timestamp < {{ incremental_cutoff() }}
    group by symbol
    {% endif %}

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
{{ only_recomputed_rows() }}
