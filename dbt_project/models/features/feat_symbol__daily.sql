with

prices as (

    select
        symbol,
        event_timestamp,
        close,
        volume
    from {{ ref('stg_market__prices') }}

),

returns as (

    select
        *,
        close / lag(close, 1) over by_day - 1 as return_1d,
        close / lag(close, 5) over by_day - 1 as return_5d
    from prices
    window by_day as (partition by symbol order by event_timestamp)

),

windows as (

    select
        *,
        list(return_1d) over last_20 as returns_20,
        list(volume) over last_20 as volumes_20
    from returns
    window last_20 as (
        partition by symbol
        order by event_timestamp
        rows between 19 preceding and current row
    )

),

final as (

    select
        symbol,
        event_timestamp,
        close,
        return_1d,
        return_5d,
        case
            when list_count(returns_20) = 20 then list_stddev_samp(returns_20)
        end as volatility_20d,
        case
            when list_count(volumes_20) = 20 and list_stddev_samp(volumes_20) > 0
                then (volume - list_avg(volumes_20)) / list_stddev_samp(volumes_20)
        end as volume_zscore_20d
    from windows

)

select * from final
