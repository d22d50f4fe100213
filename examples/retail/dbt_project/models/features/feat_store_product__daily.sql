-- Features per store, product and day, as known at the end of that day (UTC). The key has two
-- columns (store_id, product_id): the Feast view gets one entity per key column. Windows look
-- back only, so no row sees a day after its own event_timestamp.
with

sales as (

    select * from {{ ref('stg_pos__sales') }}

),

windows as (

    select
        store_id,
        product_id,
        sales_date,
        units_sold,
        unit_price,
        on_promotion,
        sum(units_sold) over last_7_days / 7.0 as units_7d_avg,
        sum(units_sold) over last_28_days / 28.0 as units_28d_avg,
        count(on_promotion) over last_7_days as days_with_promotion_flag_7d,
        count(*) filter (where on_promotion) over last_7_days as promotion_days_7d
    from sales
    window
        last_7_days as (
            partition by store_id, product_id order by sales_date
            range between interval 6 days preceding and current row
        ),
        last_28_days as (
            partition by store_id, product_id order by sales_date
            range between interval 27 days preceding and current row
        )

),

final as (

    select
        store_id,
        product_id,
        -- the end of the business day: the day's sales are known then
        cast(sales_date as timestamptz) + interval 1 day - interval 1 second as event_timestamp,
        units_sold,
        unit_price,
        units_7d_avg,
        units_28d_avg,
        -- the weekday of the day predicted (tomorrow), 1 = Monday … 7 = Sunday
        cast(isodow(sales_date + interval 1 day) as bigint) as next_day_of_week,
        case
            when days_with_promotion_flag_7d > 0 then cast(promotion_days_7d as bigint)
        end as promotion_days_7d
    from windows

)

select * from final
