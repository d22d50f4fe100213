{#-
    `featurestack run --as-of T` and `featurestack backfill` pass the instant as the var
    `as_of`: staging models keep only the raw rows known at T (history, backtests).
    known_at(column): the row's `column` (when it became known) is at or before T.
-#}
{% macro known_at(column) -%}
    {%- if var('as_of', none) is not none -%}
        {{ column }} <= cast('{{ var("as_of") }}' as timestamptz)
    {%- else -%}
        true
    {%- endif -%}
{%- endmacro %}
