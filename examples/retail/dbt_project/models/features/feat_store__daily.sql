-- Features per store and day, over all its products: a view keyed by store_id alone, joined
-- with the (store_id, product_id) view in the same feature services (the shared entity
-- `store`). As known at the end of the day (UTC); windows look back only.
with

sales as (

    select * from {{ ref('stg_pos__sales') }}

),

days as (

    select
        store_id,
        sales_date,
        sum(units_sold) as store_units,
        count(distinct product_id) as products_sold
    from sales
    group by 1, 2

),

final as (

    select
        store_id,
        cast(sales_date as timestamptz) + interval 1 day - interval 1 second as event_timestamp,
        cast(store_units as bigint) as store_units,
        cast(products_sold as bigint) as products_sold,
        sum(store_units) over (
            partition by store_id order by sales_date
            range between interval 6 days preceding and current row
        ) / 7.0 as store_units_7d_avg
    from days

)

select * from final
