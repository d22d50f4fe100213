{#
    What Spark needs around the models (docs/spark.md): the raw files as tables, and the
    build-time contract check in Spark's type names. DuckDB needs none of it: its sources read
    the files through `external_location` and dbt-duckdb checks contracts itself.
#}

{#- on-run-start: every `market` source becomes an external Parquet table (metadata only,
    re-pointed at each run) in schema `<target schema>_raw`, the sources' schema on Spark. The
    files are the ones the sources' `external_location` names for DuckDB. -#}
{% macro register_raw_sources() -%}
    {{ return(adapter.dispatch('register_raw_sources', 'featurestack')()) }}
{%- endmacro %}

{% macro default__register_raw_sources() -%}{%- endmacro %}

{% macro spark__register_raw_sources() -%}
    {%- if execute -%}
        {%- set schema = target.schema ~ '_raw' -%}
        {%- do run_query('create schema if not exists ' ~ schema) -%}
        {%- for node in graph.sources.values() if node.source_name == 'market' -%}
            {%- set path = node.config.external_location.split("'")[1]
                | replace('{name}', node.name) -%}
            {%- do run_query('drop table if exists ' ~ schema ~ '.' ~ node.name) -%}
            {%- do run_query(
                'create table ' ~ schema ~ '.' ~ node.name
                ~ " using parquet options (path '" ~ path ~ "')"
            ) -%}
        {%- endfor -%}
    {%- endif -%}
    select 1
{%- endmacro %}


{#- A data type as declared in a model's yml (DuckDB's names), in Spark's names. -#}
{% macro spark_type(data_type) -%}
    {%- set name = (data_type or '') | lower | trim -%}
    {%- set names = {
        'timestamp with time zone': 'timestamp', 'timestamptz': 'timestamp',
        'varchar': 'string', 'text': 'string', 'integer': 'int',
    } -%}
    {{- return(names.get(name, name)) -}}
{%- endmacro %}


{#- dbt's contract check, with the yml's types read as Spark's and the partition column (added
    on Spark only, see partition_column) left out. It checks names and types at build time;
    dbt-spark enforces no constraint (not_null) on Parquet tables: the gate checks nulls, keys
    and types before anything is published. -#}
{% macro spark__get_assert_columns_equivalent(sql) -%}
    {%- set declared = {} -%}
    {%- for column in model['columns'].values() -%}
        {%- do declared.update({column['name'] | lower: spark_type(column['data_type'])}) -%}
    {%- endfor -%}
    {%- set built = {} -%}
    {%- for column in get_column_schema_from_query(sql) if column.name | lower != 'partition_date' -%}
        {%- do built.update({column.name | lower: column.dtype | lower}) -%}
    {%- endfor -%}
    {%- if declared != built -%}
        {%- set problems = [] -%}
        {%- for name, dtype in declared.items() if built.get(name) != dtype -%}
            {%- do problems.append(name ~ ': declared ' ~ dtype ~ ', built ' ~ built.get(name, 'missing')) -%}
        {%- endfor -%}
        {%- for name in built if name not in declared -%}
            {%- do problems.append(name ~ ': built but not declared') -%}
        {%- endfor -%}
        {%- do exceptions.raise_compiler_error(
            'Contract of ' ~ model['name'] ~ ' not met on Spark: ' ~ (problems | join('; '))) -%}
    {%- endif -%}
{%- endmacro %}


{#- Unit-test fixtures are cast to the yml's types: in Spark's names there. -#}
{% macro spark__safe_cast(field, type) -%}
    cast({{ field }} as {{ spark_type(type) }})
{%- endmacro %}


{#- A relation's columns and types as a table (column_name, column_type), in DuckDB's type
    names, for the raw_contract test. -#}
{% macro described_columns(relation) -%}
    {{ return(adapter.dispatch('described_columns', 'featurestack')(relation)) }}
{%- endmacro %}

{% macro default__described_columns(relation) -%}(describe select * from {{ relation }}){%- endmacro %}

{#- Spark's TIMESTAMP is an instant (DuckDB's TIMESTAMPTZ); TIMESTAMP_NTZ is a naive one. -#}
{% macro spark__described_columns(relation) -%}
    {%- set names = {
        'string': 'VARCHAR', 'double': 'DOUBLE', 'float': 'FLOAT', 'bigint': 'BIGINT',
        'int': 'INTEGER', 'smallint': 'SMALLINT', 'tinyint': 'TINYINT', 'boolean': 'BOOLEAN',
        'date': 'DATE', 'timestamp': 'timestamp with time zone', 'timestamp_ntz': 'TIMESTAMP',
    } -%}
    {%- set columns = adapter.get_columns_in_relation(relation) if execute else [] -%}
    (
        values
        {%- for column in columns %}
        ('{{ column.name }}', '{{ names.get(column.dtype | lower, column.dtype | upper) }}')
            {{- ',' if not loop.last }}
        {%- else %}
        ('', '')
        {%- endfor %}
    ) as described (column_name, column_type)
{%- endmacro %}


{#- A contracted model's select keeps the declared columns in the declared order, and on Spark
    also the partition column of an incremental model (partitioned_by). -#}
{% macro spark__get_select_subquery(sql) -%}
    {%- set partition_by = config.get('partition_by') or [] -%}
    {%- set partition_by = [partition_by] if partition_by is string else partition_by -%}
    select
        {{ adapter.dispatch('get_column_names', 'dbt')() }}
        {%- for column in partition_by %}, {{ column }}{% endfor %}
    from (
        {{ sql }}
    ) as model_subq
{%- endmacro %}
