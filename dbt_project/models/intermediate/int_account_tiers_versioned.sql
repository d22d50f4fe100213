with

changes as (

    select * from {{ ref('stg_market__accounts') }}

),

final as (

    select
        account_id,
        tier,
        min(opened_at) over by_account as opened_at,
        updated_at as valid_from,
        lead(updated_at) over (partition by account_id order by updated_at) as valid_to
    from changes
    window by_account as (partition by account_id)

)

select * from final
