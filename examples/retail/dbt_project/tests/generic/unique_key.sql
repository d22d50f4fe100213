{#
    Fails for every combination of `columns` that appears more than once (null-safe: nulls
    are compared as values). dbt's built-in `unique` covers one column only, and dbt_utils
    would need `dbt deps` from the internet.
#}
{% test unique_key(model, columns) %}

select
    {{ columns | join(', ') }},
    count(*) as n_rows
from {{ model }}
group by {{ columns | join(', ') }}
having count(*) > 1

{% endtest %}
