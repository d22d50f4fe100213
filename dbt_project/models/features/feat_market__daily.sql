{{ config(unique_key=['symbol', 'event_timestamp'], partition_by=partitioned_by()) }}

with

returns as (

    select
        symbol,
        event_timestamp,
        return_1d
    from {{ ref('int_prices_with_returns') }}
    {{ lookback_rows(ref('int_prices_with_returns'), 'symbol', 60) }}

),

market as (

    select * from {{ ref('int_market_returns_averaged') }}

),

joined as (

    select
        returns.symbol,
        returns.event_timestamp,
        returns.return_1d,
        market.market_return_1d
    from returns
    left join market on returns.event_timestamp = market.event_timestamp

),

windows as (

    select
        *,
        {{ list_over(struct_of({'x': 'return_1d', 'y': 'market_return_1d'}), 'last_60') }}
            as pairs_60
    from joined
    window last_60 as (
        partition by symbol
        order by event_timestamp
        rows between 59 preceding and current row
    )

),

-- Only complete windows: every day of the window has both returns.
complete as (

    select
        symbol,
        event_timestamp,
        market_return_1d,
        case
            when {{ list_len(list_filter(
                list_tail('pairs_60', 20), 'p', 'p.x is not null and p.y is not null'
            )) }} = 20
                then {{ list_tail('pairs_60', 20) }}
        end as pairs_20,
        case
            when {{ list_len(list_filter('pairs_60', 'p', 'p.x is not null and p.y is not null')) }}
                = 60
                then pairs_60
        end as pairs_60
    from windows

),

means as (

    select
        *,
        {{ list_avg(list_transform('pairs_20', 'p', 'p.x')) }} as mean_x_20,
        {{ list_avg(list_transform('pairs_20', 'p', 'p.y')) }} as mean_y_20,
        {{ list_avg(list_transform('pairs_60', 'p', 'p.x')) }} as mean_x_60,
        {{ list_avg(list_transform('pairs_60', 'p', 'p.y')) }} as mean_y_60
    from complete

),

moments as (

    select
        symbol,
        event_timestamp,
        market_return_1d,
        {{ list_sum(list_transform('pairs_20', 'p', '(p.x - mean_x_20) * (p.y - mean_y_20)')) }}
        / 19 as covariance_20,
        {{ list_sum(list_transform('pairs_60', 'p', '(p.x - mean_x_60) * (p.y - mean_y_60)')) }}
        / 59 as covariance_60,
        {{ list_stddev_samp(list_transform('pairs_20', 'p', 'p.x')) }} as stddev_x_20,
        {{ list_stddev_samp(list_transform('pairs_20', 'p', 'p.y')) }} as stddev_y_20,
        {{ list_stddev_samp(list_transform('pairs_60', 'p', 'p.x')) }} as stddev_x_60,
        {{ list_stddev_samp(list_transform('pairs_60', 'p', 'p.y')) }} as stddev_y_60,
        -- Compounded over the window: (1 + symbol) / (1 + market) - 1.
        {{ list_product(list_transform('pairs_20', 'p', '1 + p.x')) }}
        / {{ list_product(list_transform('pairs_20', 'p', '1 + p.y')) }} - 1
            as relative_strength_20d
    from means

),

final as (

    select
        symbol,
        event_timestamp,
        market_return_1d,
        covariance_20 / nullif(stddev_x_20 * stddev_y_20, 0) as correlation_20d,
        covariance_60 / nullif(stddev_x_60 * stddev_y_60, 0) as correlation_60d,
        covariance_20 / nullif(stddev_y_20 * stddev_y_20, 0) as beta_20d,
        covariance_60 / nullif(stddev_y_60 * stddev_y_60, 0) as beta_60d,
        relative_strength_20d
    from moments
    {{ only_recomputed_rows() }}

)

select *{{ partition_column('event_timestamp') }} from final
