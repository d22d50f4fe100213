with

source as (

    select * from {{ source('market', 'accounts') }}

),

renamed as (

    select
        cast(account_id as string) as account_id,
        -- optional in the contract: without it days_since_opened is null
        {{ optional_column(source('market', 'accounts'), 'opened_at', timestamptz()) }}
            as opened_at,
        lower(cast(tier as string)) as tier,
        cast(updated_at as {{ timestamptz() }}) as updated_at
    from source
    where {{ known_at('updated_at') }}

)

select * from renamed
