{{
    config(
        materialized='incremental',
        unique_key='event_timestamp',
        partition_by=partitioned_by(),
    )
}}

with

returns as (

    select * from {{ ref('int_prices_with_returns') }}
    where return_1d is not null
    {% if is_incremental() %}
        and event_timestamp >= {{ incremental_cutoff() }}
    {% endif %}

),

final as (

    select
        event_timestamp,
        -- Averaged over a list in symbol order: a grouped avg() adds partial sums in an order
        -- that depends on threads, and the last bit would differ between two builds.
        {{ list_avg(list_ordered('return_1d', 'symbol')) }} as market_return_1d,
        count(*) as symbols_in_market
    from returns
    group by event_timestamp

)

select *{{ partition_column('event_timestamp') }} from final
