with

source as (

    select * from {{ source('market', 'earnings') }}

),

renamed as (

    select
        cast(symbol as varchar) as symbol,
        cast(announced_at as timestamptz) as announced_at,
        cast(eps_estimate as double) as eps_estimate,
        cast(eps_actual as double) as eps_actual
    from source

)

select * from renamed
