-- Staging: the only model that reads the source. Rename and type the raw columns here.
with

source as (

    select * from {{ source('pos', 'sales') }}

),

renamed as (

    select
        cast(store_id as varchar) as store_id,
        cast(product_id as varchar) as product_id,
        cast(sales_date as date) as sales_date,
        cast(units_sold as bigint) as units_sold,
        cast(unit_price as double) as unit_price,
        {{ optional_column(source('pos', 'sales'), 'on_promotion', 'boolean') }} as on_promotion
    from source
    -- a run as of T (featurestack run --as-of) sees the days whose books closed by then
    where {{ known_at("cast(sales_date as timestamptz) + interval 1 day - interval 1 second") }}

)

select * from renamed
