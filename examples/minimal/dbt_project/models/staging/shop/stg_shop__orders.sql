-- Staging: the only model that reads the source. Rename and type the raw columns here.
with

source as (

    select * from {{ source('shop', 'orders') }}

),

renamed as (

    select
        cast(order_id as varchar) as order_id,
        cast(customer_id as varchar) as customer_id,
        cast(ordered_at as timestamptz) as ordered_at,
        cast(amount as double) as amount,
        {{ optional_column(source('shop', 'orders'), 'channel', 'varchar') }} as channel
    from source
    -- a run as of T (featurestack run --as-of) sees the orders placed by then
    where {{ known_at('ordered_at') }}

)

select * from renamed
