with

prints as (

    select * from {{ ref('base_market__prices') }}

),

deduplicated as (

    select *
    from prints
    qualify row_number() over (
        partition by symbol, event_timestamp
        order by ingested_at desc
    ) = 1

)

select * from deduplicated
