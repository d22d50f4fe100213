with

source as (

    select * from {{ source('market', 'prices') }}

),

renamed as (

    select
        cast(symbol as string) as symbol,
        cast(ts as {{ timestamptz() }}) as event_timestamp,
        cast(open as double) as open,
        cast(high as double) as high,
        cast(low as double) as low,
        cast(close as double) as close,
        cast(volume as double) as volume,
        cast(ingested_at as {{ timestamptz() }}) as ingested_at
    from source
    -- a run as of T sees the days up to T (with their corrections: history as now known)
    where {{ known_at('ts') }}

)

select * from renamed
