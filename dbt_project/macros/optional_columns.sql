{#-
    Optional raw columns. A source's contract (its yml) marks a column `meta: {optional: true}`
    when the data can do without it: the raw_contract test then requires it only to have the
    right type when present, and a staging model reads it with optional_column(), which gives
    the column when the file has it and a typed null when it does not — saying so once in the
    build output. The features that need the column are null then; each feature's yml says
    which optional column it needs.
-#}

{#- Whether the relation (a source's raw file or table) has the column, asked at run time. -#}
{% macro relation_has_column(relation, column) -%}
    {{ return(adapter.dispatch('relation_has_column', 'featurestack')(relation, column)) }}
{%- endmacro %}

{% macro default__relation_has_column(relation, column) -%}
    {%- if not execute -%}{{ return(true) }}{%- endif -%}
    {%- set described = run_query('select column_name from (describe select * from ' ~ relation ~ ')') -%}
    {{ return(column in described.columns[0].values()) }}
{%- endmacro %}

{% macro spark__relation_has_column(relation, column) -%}
    {%- if not execute -%}{{ return(true) }}{%- endif -%}
    {{ return(column in (adapter.get_columns_in_relation(relation) | map(attribute='name') | list)) }}
{%- endmacro %}

{#- `cast(column as data_type)`, or a typed null when the raw data lacks the column. -#}
{% macro optional_column(relation, column, data_type) -%}
    {%- if relation_has_column(relation, column) -%}
        cast({{ column }} as {{ data_type }})
    {%- else -%}
        {%- do log("optional raw column " ~ column ~ " is absent from " ~ relation.identifier ~ ": the features that need it are null (their yml says which)", info=true) -%}
        cast(null as {{ data_type }})
    {%- endif -%}
{%- endmacro %}
