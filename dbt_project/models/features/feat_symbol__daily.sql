{{ config(unique_key=['symbol', 'event_timestamp'], partition_by=partitioned_by()) }}

with

prices as (

    select * from {{ ref('int_prices_with_returns') }}
    {{ lookback_rows(ref('int_prices_with_returns'), 'symbol', 30) }}

),

earnings as (

    select * from {{ ref('stg_market__earnings') }}

),

windows as (

    select
        *,
        lag(close, 5) over by_day as close_5,
        lag(close, 7) over by_day as close_7,
        lag(close, 14) over by_day as close_14,
        lag(close, 30) over by_day as close_30,
        {{ list_over('return_1d', 'last_30') }} as returns_30,
        {{ list_over('volume', 'last_30') }} as volumes_30
    from prices
    window
        by_day as (partition by symbol order by event_timestamp),
        last_30 as (
            partition by symbol
            order by event_timestamp
            rows between 29 preceding and current row
        )

),

-- The latest announcement published at or before the close.
last_earnings as (

    select
        windows.symbol,
        windows.event_timestamp,
        earnings.announced_at,
        earnings.eps_surprise
    from windows
    {{ asof_inner_join('windows', 'earnings', ['symbol'], 'event_timestamp', 'announced_at', 'backward') }}

),

-- The next announcement among those whose date was already public at the close.
next_earnings as (

    select
        windows.symbol,
        windows.event_timestamp,
        min(earnings.announced_at) as announced_at
    from windows
    inner join earnings
        on windows.symbol = earnings.symbol
        and earnings.scheduled_at <= windows.event_timestamp
        and earnings.announced_at > windows.event_timestamp
    group by windows.symbol, windows.event_timestamp

),

final as (

    select
        w.symbol,
        w.event_timestamp,
        w.close,
        w.return_1d,
        w.close / w.close_5 - 1 as return_5d,
        case
            when {{ list_count(list_tail('w.returns_30', 20)) }} = 20
                then {{ list_stddev_samp(list_tail('w.returns_30', 20)) }}
        end as volatility_20d,
        case
            when {{ list_count(list_tail('w.volumes_30', 20)) }} = 20
                and {{ list_stddev_samp(list_tail('w.volumes_30', 20)) }} > 0
                then (w.volume - {{ list_avg(list_tail('w.volumes_30', 20)) }})
                / {{ list_stddev_samp(list_tail('w.volumes_30', 20)) }}
        end as volume_zscore_20d,
        w.close / w.close_7 - 1 as momentum_7d,
        w.close / w.close_14 - 1 as momentum_14d,
        w.close / w.close_30 - 1 as momentum_30d,
        case
            when {{ list_count(list_tail('w.returns_30', 7)) }} = 7
                then {{ list_stddev_samp(list_tail('w.returns_30', 7)) }}
        end as volatility_7d,
        case
            when {{ list_count(list_tail('w.returns_30', 14)) }} = 14
                then {{ list_stddev_samp(list_tail('w.returns_30', 14)) }}
        end as volatility_14d,
        case
            when {{ list_count('w.returns_30') }} = 30
                then {{ list_stddev_samp('w.returns_30') }}
        end as volatility_30d,
        case
            when {{ list_len('w.volumes_30') }} >= 7
                then {{ list_avg(list_tail('w.volumes_30', 7)) }}
        end as volume_ma_7d,
        case
            when {{ list_len('w.volumes_30') }} = 30 then {{ list_avg('w.volumes_30') }}
        end as volume_ma_30d,
        case
            when {{ list_count('w.volumes_30') }} = 30 and {{ list_stddev_samp('w.volumes_30') }} > 0
                then (w.volume - {{ list_avg('w.volumes_30') }})
                / {{ list_stddev_samp('w.volumes_30') }}
        end as volume_zscore_30d,
        (w.high - w.low) / w.close as high_low_range,
        w.open / w.previous_close - 1 as gap_from_previous_close,
        {{ days_between('last_earnings.announced_at', 'w.event_timestamp') }}
            as days_since_earnings,
        {{ days_between('w.event_timestamp', 'next_earnings.announced_at') }}
            as days_until_earnings,
        last_earnings.eps_surprise as last_earnings_surprise
    from windows as w
    left join last_earnings
        on w.symbol = last_earnings.symbol and w.event_timestamp = last_earnings.event_timestamp
    left join next_earnings
        on w.symbol = next_earnings.symbol and w.event_timestamp = next_earnings.event_timestamp
    {{ only_recomputed_rows('w.event_timestamp') }}

)

select *{{ partition_column('event_timestamp') }} from final
