{{ config(unique_key=['symbol', 'event_timestamp'], partition_by=partitioned_by()) }}

with

prices as (

    select
        symbol,
        event_timestamp,
        close
    from {{ ref('stg_market__prices') }}
    {{ only_recomputed_rows() }}

),

next_day as (

    select
        symbol,
        event_timestamp,
        close,
        lead(close) over by_day as next_close,
        lead(event_timestamp) over by_day as next_event_timestamp
    from prices
    window by_day as (partition by symbol order by event_timestamp)

),

final as (

    select
        symbol,
        event_timestamp,
        cast(next_close > close as integer) as next_day_up,
        next_event_timestamp as label_timestamp
    from next_day
    where next_event_timestamp is not null

)

select *{{ partition_column('event_timestamp') }} from final
