{#
    Incremental feature models recompute every row whose event time is at or after the cutoff:
    the newest event time already built minus `feature_lookback_days` (dbt_project.yml). That
    window absorbs late corrections and late rows up to that age; older ones need
    `dbt build --full-refresh`. Windows over the recomputed rows still need earlier rows, so
    `lookback_rows` keeps, per entity, at least the `rows` most recent rows before the cutoff.
    Window values are computed over lists (see feat_symbol__daily.yml), so recomputed rows are
    bit-identical to a full build.

    On Spark the cutoff is moved back to the start of its UTC month (var
    `spark_partition_period`): Spark replaces recomputed rows by overwriting whole partitions
    (docs/spark.md), so a build must recompute every row of each partition it touches.
    Recomputing more rows than needed changes no value.
#}

{% macro incremental_cutoff(column='event_timestamp') -%}
    {%- set query -%}
        select coalesce(
            {{ lookback_start('max(' ~ column ~ ')') }},
            {{ lowest_timestamp() }}
        )
        from {{ this }}
    {%- endset -%}
    {{ as_literal_when_running(query) }}
{%- endmacro %}


{% macro lookback_start(newest) -%}
    {{ return(adapter.dispatch('lookback_start', 'featurestack')(newest)) }}
{%- endmacro %}

{% macro default__lookback_start(newest) -%}
    {{ newest }} - to_days({{ var('feature_lookback_days') }})
{%- endmacro %}

{% macro spark__lookback_start(newest) -%}
    date_trunc(
        '{{ var('spark_partition_period') }}',
        {{ newest }} - make_dt_interval({{ var('feature_lookback_days') }})
    )
{%- endmacro %}


{% macro as_literal_when_running(query) -%}
    {#- A scalar subquery, or, when a model actually runs, its value as a timestamp literal:
        DuckDB pushes a literal bound into Parquet scans and skips row groups by their min/max,
        which it cannot do for a subquery. Unit tests keep the subquery: their `this` and refs
        are fixtures, not the tables run_query would read. -#}
    {%- if execute and model.resource_type == 'model' -%}
        {%- set value = run_query('select cast((' ~ query ~ ') as string)').columns[0].values()[0] -%}
        cast('{{ value }}' as {{ timestamptz() }})
    {%- else -%}
        ({{ query }})
    {%- endif -%}
{%- endmacro %}


{% macro lookback_rows(relation, partition_by, rows) -%}
    {#- A where clause: rows at or after the cutoff and, for every entity that has such rows,
        at least its `rows` latest rows before the cutoff. The bound is the earliest of those
        per-entity starts (a grouped top-N, no sort of the history), and a plain range filter
        on event_timestamp lets DuckDB skip older row groups. -#}
    {%- if is_incremental() %}
    {%- set bound -%}
        select coalesce(min(entity_start), {{ incremental_cutoff() }})
        from (
            select {{ nth_greatest('event_timestamp', rows) }} as entity_start
            from {{ relation }}
            where event_timestamp < {{ incremental_cutoff() }}
                and {{ partition_by }} in (
                    select {{ partition_by }} from {{ relation }}
                    where event_timestamp >= {{ incremental_cutoff() }}
                )
            group by {{ partition_by }}
        ) as entity_starts
    {%- endset %}
    where event_timestamp >= {{ as_literal_when_running(bound) }}
    {%- endif %}
{%- endmacro %}


{% macro only_recomputed_rows(column='event_timestamp', cutoff_column='event_timestamp') -%}
    {%- if is_incremental() %}
    where {{ column }} >= {{ incremental_cutoff(cutoff_column) }}
    {%- endif %}
{%- endmacro %}


{% macro last_trade_before_cutoff() -%}
    {#- The earliest, over (account, symbol) pairs trading again, of their last trade before the
        cutoff: older trades cannot hold an opening position, so int_trades_costed skips them. -#}
    {%- set query -%}
        select coalesce(min(last_trade), {{ incremental_cutoff('traded_at') }})
        from (
            select max(traded_at) as last_trade
            from {{ this }}
            where traded_at < {{ incremental_cutoff('traded_at') }}
                and (account_id, symbol) in (
                    select account_id, symbol from {{ ref('stg_market__trades') }}
                    where traded_at >= {{ incremental_cutoff('traded_at') }}
                )
            group by account_id, symbol
        ) as last_trades
    {%- endset -%}
    {{ as_literal_when_running(query) }}
{%- endmacro %}
