with

source as (

    select * from {{ source('market', 'earnings') }}

),

renamed as (

    select
        cast(symbol as string) as symbol,
        cast(announced_at as {{ timestamptz() }}) as announced_at,
        -- optional in the contract: without it the calendar features (days_until_earnings)
        -- are null, the announcement itself still counts once published
        {{ optional_column(source('market', 'earnings'), 'scheduled_at', timestamptz()) }}
            as scheduled_at,
        cast(eps_estimate as double) as eps_estimate,
        cast(eps_actual as double) as eps_actual
    from source

),

known as (

    -- a run as of T knows the announcement's date once scheduled (once announced, when the
    -- data has no schedule), its figures once they are out
    select
        symbol,
        announced_at,
        scheduled_at,
        case when {{ known_at('announced_at') }} then eps_estimate end as eps_estimate,
        case when {{ known_at('announced_at') }} then eps_actual end as eps_actual
    from renamed
    where {{ known_at('coalesce(scheduled_at, announced_at)') }}

),

final as (

    select
        *,
        case
            when eps_estimate <> 0 then (eps_actual - eps_estimate) / abs(eps_estimate)
        end as eps_surprise
    from known

)

select * from final
