-- The labels: units sold the next day (0 when the day has no sales row) and whether they beat
-- the usual (the 28-day mean) by a quarter. Stamped at the features' event_timestamp (when the
-- prediction is made); label_timestamp is when the answer is known. Rows whose next day is not
-- over yet are left out.
with

features as (

    select store_id, product_id, event_timestamp, units_sold, units_28d_avg
    from {{ ref('feat_store_product__daily') }}

),

horizon as (

    select max(event_timestamp) as newest from features

),

final as (

    select
        today.store_id,
        today.product_id,
        today.event_timestamp,
        cast(coalesce(tomorrow.units_sold, 0) as double) as units_next_day,
        cast(coalesce(tomorrow.units_sold, 0) > 1.25 * today.units_28d_avg as integer)
            as demand_spike,
        today.event_timestamp + interval 1 day as label_timestamp
    from features as today
    cross join horizon
    left join features as tomorrow
        on tomorrow.store_id = today.store_id
        and tomorrow.product_id = today.product_id
        and tomorrow.event_timestamp = today.event_timestamp + interval 1 day
    where today.event_timestamp + interval 1 day <= horizon.newest

)

select * from final
