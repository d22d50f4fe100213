{#
    Incremental feature models recompute every row whose event time is at or after the cutoff:
    the newest event time already built minus `feature_lookback_days` (dbt_project.yml). That
    window absorbs late corrections and late rows up to that age; older ones need
    `dbt build --full-refresh`. Windows over the recomputed rows still need earlier rows, so
    `lookback_rows` keeps, per entity, the `rows` most recent rows before the cutoff as input.
    Window values are computed over lists (see feat_symbol__daily.yml), so recomputed rows are
    bit-identical to a full build.
#}

{% macro incremental_cutoff(column='event_timestamp') -%}
    (
        select coalesce(
            max({{ column }}) - to_days({{ var('feature_lookback_days') }}),
            '-infinity'::timestamptz
        )
        from {{ this }}
    )
{%- endmacro %}


{% macro lookback_rows(partition_by, rows) -%}
    {%- if is_incremental() %}
    qualify event_timestamp >= {{ incremental_cutoff() }}
        or row_number() over (
            partition by {{ partition_by }}, event_timestamp >= {{ incremental_cutoff() }}
            order by event_timestamp desc
        ) <= {{ rows }}
    {%- endif %}
{%- endmacro %}


{% macro only_recomputed_rows(column='event_timestamp', cutoff_column='event_timestamp') -%}
    {%- if is_incremental() %}
    where {{ column }} >= {{ incremental_cutoff(cutoff_column) }}
    {%- endif %}
{%- endmacro %}
