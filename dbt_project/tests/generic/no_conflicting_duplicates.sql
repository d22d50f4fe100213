{#
    Fails for every `key` that holds rows with different `values`. Identical rows under one key
    (a file delivered twice) are harmless and deduplicated downstream; two different versions
    under the same key cannot be resolved, so they must stop the build.
#}
{% test no_conflicting_duplicates(model, key, values) %}

select
    {{ key | join(', ') }},
    count(*) as n_rows,
    count(distinct ({{ values | join(', ') }})) as n_versions
from {{ model }}
group by {{ key | join(', ') }}
having count(distinct ({{ values | join(', ') }})) > 1

{% endtest %}
