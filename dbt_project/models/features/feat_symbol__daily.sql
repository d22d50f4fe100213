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
        stddev_samp(return_1d) over last_20 as return_sd_20,
        count(return_1d) over last_20 as n_returns_20,
        avg(volume) over last_20 as volume_mean_20,
        stddev_samp(volume) over last_20 as volume_sd_20,
        count(volume) over last_20 as n_volumes_20
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
        case when n_returns_20 = 20 then return_sd_20 end as volatility_20d,
        case
            when n_volumes_20 = 20 and volume_sd_20 > 0
                then (volume - volume_mean_20) / volume_sd_20
        end as volume_zscore_20d
    from windows

)

select * from final
