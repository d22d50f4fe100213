{#
    The raw data contract of a source, checked before any model reads it (dbt build runs a
    source's tests first and skips every model downstream of a failure). One failing row per
    problem: a declared column that is missing or of another type family, or an empty file.
    Families, not exact types: the base models cast, so any numeric type may feed a double; but
    a timestamp must carry its time zone (a naive one would be read in the session's zone).
    A column the contract marks `meta: {optional: true}` may be missing (staging reads it with
    optional_column); when present it must still be of its family.
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
    from {{ described_columns(model) }}
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
