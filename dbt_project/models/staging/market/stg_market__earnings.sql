with

source as (

    select * from {{ source('market', 'earnings') }}

),

renamed as (

    select
        cast(symbol as string) as symbol,
        cast(announced_at as {{ timestamptz() }}) as announced_at,
        cast(scheduled_at as {{ timestamptz() }}) as scheduled_at,
        cast(eps_estimate as double) as eps_estimate,
        cast(eps_actual as double) as eps_actual
    from source

),

final as (

    select
        *,
        case
            when eps_estimate <> 0 then (eps_actual - eps_estimate) / abs(eps_estimate)
        end as eps_surprise
    from renamed

)

select * from final
