{#-
    A raw column the contract marks `meta: {optional: true}`: the column when the file has it,
    a typed null when it does not (said once in the build output). The features computed from
    it are null then; their yml says so.
-#}
{% macro optional_column(relation, column, data_type) -%}
    {%- set present = true -%}
    {%- if execute -%}
        {%- set described = run_query('select column_name from (describe select * from ' ~ relation ~ ')') -%}
        {%- set present = column in described.columns[0].values() -%}
    {%- endif -%}
    {%- if present -%}
        cast({{ column }} as {{ data_type }})
    {%- else -%}
        {%- do log("optional raw column " ~ column ~ " is absent from " ~ relation.identifier ~ ": the features that need it are null (their yml says which)", info=true) -%}
        cast(null as {{ data_type }})
    {%- endif -%}
{%- endmacro %}
