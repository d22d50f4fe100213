{#
    The raw data contract of a source, checked before any model reads it: every declared
    column present (unless `meta: {optional: true}`) and of its type family, and the file not
    empty. One failing row per problem; `dbt build` then skips every model downstream.
#}
{% test raw_contract(model) %}
{%- set ns = namespace(columns={}) -%}
{%- for node in (graph.get('sources') or {}).values() -%}
    {%- if node.identifier == model.identifier or node.name == model.identifier -%}
        {%- set ns.columns = node.columns -%}
    {%- endif -%}
{%- endfor -%}
{%- set families = {
    'double': 'number', 'float': 'number', 'bigint': 'number', 'integer': 'number',
    'varchar': 'text', 'text': 'text', 'boolean': 'boolean', 'date': 'date',
    'timestamp with time zone': 'timestamp with time zone', 'timestamptz': 'timestamp with time zone',
} -%}

with

declared (column_name, family, declared_type, optional) as (
    values
    {%- for name, column in ns.columns.items() %}
        ('{{ name }}', '{{ families.get((column.data_type or "") | lower, (column.data_type or "") | lower) }}', '{{ column.data_type }}', {{ 'true' if (column.meta or {}).get('optional') else 'false' }}){{ "," if not loop.last }}
    {%- endfor %}
),

actual as (
    select
        column_name,
        column_type,
        case
            when column_type in ('DOUBLE', 'FLOAT', 'BIGINT', 'INTEGER', 'SMALLINT', 'TINYINT',
                                 'HUGEINT', 'UBIGINT', 'UINTEGER', 'USMALLINT', 'UTINYINT')
                or column_type like 'DECIMAL%' then 'number'
            when column_type = 'VARCHAR' then 'text'
            else lower(column_type)
        end as family
    from (describe select * from {{ model }})
),

problems as (
    select
        d.column_name,
        d.declared_type as expected,
        coalesce(a.column_type, 'missing') as observed
    from declared as d
    left join actual as a on a.column_name = d.column_name
    where (a.column_name is null and not d.optional) or a.family <> d.family

    union all

    select '(rows)', 'at least 1 row', 'empty'
    from (select count(*) as n from {{ model }})
    where n = 0
)

select * from problems

{% endtest %}
