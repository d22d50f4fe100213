{{
    config(
        materialized='incremental',
        unique_key=['symbol', 'event_timestamp'],
        partition_by=partitioned_by(),
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

    -- Each symbol's last close already built before the cutoff, for the first lag (the other
    -- columns are null and the row itself is filtered out below).
    select
        symbol,
        max(event_timestamp) as event_timestamp,
        cast(null as double) as open,
        cast(null as double) as high,
        cast(null as double) as low,
        {{ arg_max('close', 'event_timestamp') }} as close,
        cast(null as double) as volume
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

select *{{ partition_column('event_timestamp') }} from final
{{ only_recomputed_rows() }}
