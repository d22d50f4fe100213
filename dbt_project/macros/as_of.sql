{#-
    `featurestack run --as-of T` (and `featurestack backfill`) pass the instant as the var
    `as_of`: staging models keep only the raw rows known at T, so a build is the build a run at
    T would have made (history, backtests). Without the var every row is kept.

    known_at(column): true when the row's `column` (the instant it became known) is at or
    before the run's instant.
-#}
{% macro known_at(column) -%}
    {%- if var('as_of', none) is not none -%}
        {{ column }} <= cast('{{ var("as_of") }}' as {{ timestamptz() }})
    {%- else -%}
        true
    {%- endif -%}
{%- endmacro %}
