{{ config(unique_key=['account_id', 'event_timestamp'], partition_by=partitioned_by()) }}

with

days as (

    select * from {{ ref('int_account_days_aggregated') }}
    {{ only_recomputed_rows() }}

),

next_day as (

    select
        account_id,
        event_timestamp,
        lead(net_profit) over by_day as next_day_net_profit,
        lead(realized_profit) over by_day as next_day_gross_profit,
        lead(trade_count) over by_day as next_day_trade_count,
        lead(event_timestamp) over by_day as label_timestamp
    from days
    window by_day as (partition by account_id order by event_timestamp)

),

final as (

    select * from next_day
    where label_timestamp is not null

)

select *{{ partition_column('event_timestamp') }} from final
