-- Features per customer and order day, as known at the end of that day (UTC). Windows look
-- back only, so no row sees an order placed after its own event_timestamp. Change: add your
-- features to `final` and declare each in the yml (the contract is enforced).
with

orders as (

    select * from {{ ref('stg_shop__orders') }}

),

days as (

    select
        customer_id,
        cast(date_trunc('day', ordered_at) as date) as order_day,
        count(*) as orders_today,
        sum(amount) as amount_today,
        count(channel) as orders_with_channel,
        count(*) filter (where channel = 'web') as web_orders_today
    from orders
    group by 1, 2

),

windows as (

    select
        customer_id,
        order_day,
        orders_today,
        amount_today,
        sum(orders_today) over last_30_days as orders_30d,
        sum(amount_today) over last_30_days as amount_30d,
        sum(web_orders_today) over last_30_days as web_orders_30d,
        sum(orders_with_channel) over last_30_days as orders_with_channel_30d,
        order_day - lag(order_day) over by_customer as days_since_previous_order
    from days
    window
        by_customer as (partition by customer_id order by order_day),
        last_30_days as (
            partition by customer_id order by order_day
            range between interval 29 days preceding and current row
        )

),

final as (

    select
        customer_id,
        -- the end of the order day: every order of the day is known then
        cast(order_day as timestamptz) + interval 1 day - interval 1 second as event_timestamp,
        cast(orders_today as bigint) as orders_today,
        amount_today,
        cast(orders_30d as bigint) as orders_30d,
        amount_30d,
        cast(days_since_previous_order as bigint) as days_since_previous_order,
        case
            when orders_with_channel_30d > 0 then web_orders_30d / orders_with_channel_30d
        end as web_share_30d
    from windows

)

select * from final
