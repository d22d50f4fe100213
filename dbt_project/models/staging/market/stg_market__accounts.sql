with

source as (

    select * from {{ source('market', 'accounts') }}

),

renamed as (

    select
        cast(account_id as string) as account_id,
        cast(opened_at as {{ timestamptz() }}) as opened_at,
        lower(cast(tier as string)) as tier,
        cast(updated_at as {{ timestamptz() }}) as updated_at
    from source
    where {{ known_at('updated_at') }}

)

select * from renamed
