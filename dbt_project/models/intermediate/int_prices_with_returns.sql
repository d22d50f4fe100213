{{
    config(
        materialized='incremental',
        unique_key=['symbol', 'event_timestamp'],
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
    union all by name

    -- Each symbol's last close already built before the cutoff, for the first lag (the other
    -- columns come out null and the row itself is filtered out below).
    select
        symbol,
        max(event_timestamp) as event_timestamp,
        arg_max(close, event_timestamp) as close
    from {{ this }}
    where event_timestamp < {{ incremental_cutoff() }}
    group by symbol
    {% endif %}

),

final as (

    select
        *,
        lag(close) over by_day as previous_close,
        close / lag(close) over by_day - 1 as return_1d
    from prices
    window by_day as (partition by symbol order by event_timestamp)

)

select * from final
{{ only_recomputed_rows() }}
