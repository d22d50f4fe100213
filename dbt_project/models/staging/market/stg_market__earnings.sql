with

source as (

    select * from {{ source('market', 'earnings') }}

),

renamed as (

    select
        cast(symbol as string) as symbol,
        cast(announced_at as {{ timestamptz() }}) as announced_at,
        cast(scheduled_at as {{ timestamptz() }}) as scheduled_at,
        -- a run as of T knows the announcement's date once scheduled, its figures once out
        case when {{ known_at('announced_at') }} then cast(eps_estimate as double) end
            as eps_estimate,
        case when {{ known_at('announced_at') }} then cast(eps_actual as double) end
            as eps_actual
    from source
    where {{ known_at('scheduled_at') }}

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
