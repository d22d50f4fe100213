with

source as (

    select * from {{ source('market', 'trades') }}

),

renamed as (

    select
        cast(trade_id as string) as trade_id,
        cast(account_id as string) as account_id,
        cast(symbol as string) as symbol,
        cast(ts as {{ timestamptz() }}) as traded_at,
        lower(cast(side as string)) as side,
        cast(quantity as double) as quantity,
        cast(price as double) as price,
        cast(fee as double) as fee
    from source
    where {{ known_at('ts') }}

)

select * from renamed
