-- The label: does the customer order again within 7 days after this order day? Stamped at
-- the features' event_timestamp (the instant the prediction is made); label_timestamp is
-- when the answer is known. Rows whose 7 days are not over yet are left out.
with

features as (

    select customer_id, event_timestamp from {{ ref('feat_customer__daily') }}

),

horizon as (

    select max(event_timestamp) as newest from features

),

final as (

    select
        current_day.customer_id,
        current_day.event_timestamp,
        cast(
            exists (
                select 1
                from features as later
                where later.customer_id = current_day.customer_id
                    and later.event_timestamp > current_day.event_timestamp
                    and later.event_timestamp <= current_day.event_timestamp + interval 7 days
            ) as integer
        ) as reorders_within_7d,
        current_day.event_timestamp + interval 7 days as label_timestamp
    from features as current_day
    cross join horizon
    where current_day.event_timestamp + interval 7 days <= horizon.newest

)

select * from final
