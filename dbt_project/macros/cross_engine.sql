{#
    The SQL that differs between DuckDB and Spark, one `adapter.dispatch` macro per difference
    (docs/spark.md). `default__` renders exactly the DuckDB SQL the models had before Spark, so
    the DuckDB build is unchanged; `spark__` is the Spark SQL equivalent.

    Lists: DuckDB's list functions work on the values of a window or a group collected in
    order. Spark's collect_list drops nulls, so it collects one-element arrays and flattens
    them (a null stays an element, as in DuckDB), and the list statistics are folds with
    `aggregate` that do DuckDB's arithmetic in DuckDB's order (sum from the first value,
    Welford's update for the sample standard deviation): the results agree to the last bits
    instead of depending on how Spark happens to split a sum.
#}


{# ------------------------------------------------------------------------- types and time #}

{% macro timestamptz() -%}
    {{ return(adapter.dispatch('timestamptz', 'featurestack')()) }}
{%- endmacro %}

{% macro default__timestamptz() -%}timestamptz{%- endmacro %}

{#- Spark's TIMESTAMP is an instant shown in the session time zone (UTC here): DuckDB's
    TIMESTAMPTZ. -#}
{% macro spark__timestamptz() -%}timestamp{%- endmacro %}


{% macro days(n) -%}
    {{ return(adapter.dispatch('days', 'featurestack')(n)) }}
{%- endmacro %}

{% macro default__days(n) -%}to_days({{ n }}){%- endmacro %}

{% macro spark__days(n) -%}make_dt_interval({{ n }}){%- endmacro %}


{% macro lowest_timestamp() -%}
    {{ return(adapter.dispatch('lowest_timestamp', 'featurestack')()) }}
{%- endmacro %}

{% macro default__lowest_timestamp() -%}'-infinity'::timestamptz{%- endmacro %}

{% macro spark__lowest_timestamp() -%}timestamp'0001-01-01 00:00:00'{%- endmacro %}


{% macro days_between(start, end) -%}
    {{ return(adapter.dispatch('days_between', 'featurestack')(start, end)) }}
{%- endmacro %}

{% macro default__days_between(start, end) -%}
    date_diff('day', cast({{ start }} as date), cast({{ end }} as date))
{%- endmacro %}

{% macro spark__days_between(start, end) -%}
    cast(datediff(cast({{ end }} as date), cast({{ start }} as date)) as bigint)
{%- endmacro %}


{# ------------------------------------------------------------------------ grouped values #}

{% macro arg_max(value, ordering) -%}
    {{ return(adapter.dispatch('arg_max', 'featurestack')(value, ordering)) }}
{%- endmacro %}

{% macro default__arg_max(value, ordering) -%}arg_max({{ value }}, {{ ordering }}){%- endmacro %}

{% macro spark__arg_max(value, ordering) -%}max_by({{ value }}, {{ ordering }}){%- endmacro %}


{#- The value of the row with the greatest (ordering...) tuple, null values kept. -#}
{% macro arg_max_null(value, ordering) -%}
    {{ return(adapter.dispatch('arg_max_null', 'featurestack')(value, ordering)) }}
{%- endmacro %}

{% macro default__arg_max_null(value, ordering) -%}
    arg_max_null({{ value }}, ({{ ordering | join(', ') }}))
{%- endmacro %}

{#- Spark's max_by keeps a null value (it skips only null orderings). -#}
{% macro spark__arg_max_null(value, ordering) -%}
    max_by({{ value }}, struct({{ ordering | join(', ') }}))
{%- endmacro %}


{#- The smallest of each group's `n` greatest values of `column` (a grouped top-N). -#}
{% macro nth_greatest(column, n) -%}
    {{ return(adapter.dispatch('nth_greatest', 'featurestack')(column, n)) }}
{%- endmacro %}

{% macro default__nth_greatest(column, n) -%}list_min(max({{ column }}, {{ n }})){%- endmacro %}

{% macro spark__nth_greatest(column, n) -%}
    array_min(slice(sort_array(collect_list({{ column }}), false), 1, {{ n }}))
{%- endmacro %}


{# -------------------------------------------------------------------------------- lists #}

{#- `expr` of every row of the window frame, in frame order, nulls included. -#}
{% macro list_over(expr, window) -%}
    {{ return(adapter.dispatch('list_over', 'featurestack')(expr, window)) }}
{%- endmacro %}

{% macro default__list_over(expr, window) -%}list({{ expr }}) over {{ window }}{%- endmacro %}

{% macro spark__list_over(expr, window) -%}
    flatten(collect_list(array({{ expr }})) over {{ window }})
{%- endmacro %}


{#- `expr` of every row of the group, ordered by `order_by` (unique within the group). -#}
{% macro list_ordered(expr, order_by) -%}
    {{ return(adapter.dispatch('list_ordered', 'featurestack')(expr, order_by)) }}
{%- endmacro %}

{% macro default__list_ordered(expr, order_by) -%}
    list({{ expr }} order by {{ order_by }})
{%- endmacro %}

{% macro spark__list_ordered(expr, order_by) -%}
    transform(
        array_sort(collect_list(named_struct('k', {{ order_by }}, 'v', {{ expr }}))),
        e -> e.v
    )
{%- endmacro %}


{#- A struct value with named fields: `fields` maps each name to its expression. -#}
{% macro struct_of(fields) -%}
    {{ return(adapter.dispatch('struct_of', 'featurestack')(fields)) }}
{%- endmacro %}

{% macro default__struct_of(fields) -%}
    { {%- for name, expr in fields.items() %}'{{ name }}': {{ expr }}{{ ', ' if not loop.last }}{% endfor -%} }
{%- endmacro %}

{% macro spark__struct_of(fields) -%}
    named_struct({%- for name, expr in fields.items() %}'{{ name }}', {{ expr }}{{ ', ' if not loop.last }}{% endfor -%})
{%- endmacro %}


{#- The last `n` elements of a list (all of it when shorter). -#}
{% macro list_tail(list, n) -%}
    {{ return(adapter.dispatch('list_tail', 'featurestack')(list, n)) }}
{%- endmacro %}

{% macro default__list_tail(list, n) -%}{{ list }}[-{{ n }}:]{%- endmacro %}

{% macro spark__list_tail(list, n) -%}
    slice({{ list }}, greatest(size({{ list }}) - {{ n - 1 }}, 1), {{ n }})
{%- endmacro %}


{#- Elements, nulls included. -#}
{% macro list_len(list) -%}
    {{ return(adapter.dispatch('list_len', 'featurestack')(list)) }}
{%- endmacro %}

{% macro default__list_len(list) -%}len({{ list }}){%- endmacro %}

{% macro spark__list_len(list) -%}size({{ list }}){%- endmacro %}


{#- Non-null elements. -#}
{% macro list_count(list) -%}
    {{ return(adapter.dispatch('list_count', 'featurestack')(list)) }}
{%- endmacro %}

{% macro default__list_count(list) -%}list_count({{ list }}){%- endmacro %}

{% macro spark__list_count(list) -%}size(filter({{ list }}, v -> v is not null)){%- endmacro %}


{% macro list_filter(list, var, condition) -%}
    {{ return(adapter.dispatch('list_filter', 'featurestack')(list, var, condition)) }}
{%- endmacro %}

{% macro default__list_filter(list, var, condition) -%}
    list_filter({{ list }}, lambda {{ var }}: {{ condition }})
{%- endmacro %}

{% macro spark__list_filter(list, var, condition) -%}
    filter({{ list }}, {{ var }} -> {{ condition }})
{%- endmacro %}


{% macro list_transform(list, var, expr) -%}
    {{ return(adapter.dispatch('list_transform', 'featurestack')(list, var, expr)) }}
{%- endmacro %}

{% macro default__list_transform(list, var, expr) -%}
    list_transform({{ list }}, lambda {{ var }}: {{ expr }})
{%- endmacro %}

{% macro spark__list_transform(list, var, expr) -%}
    transform({{ list }}, {{ var }} -> {{ expr }})
{%- endmacro %}


{#- Sum of the non-null elements in list order as a double; null when there are none. -#}
{% macro list_sum(list) -%}
    {{ return(adapter.dispatch('list_sum', 'featurestack')(list)) }}
{%- endmacro %}

{% macro default__list_sum(list) -%}list_sum({{ list }}){%- endmacro %}

{% macro spark__list_sum(list) -%}
    aggregate(
        {{ list }}, cast(null as double),
        (acc, v) -> case when v is null then acc when acc is null then v else acc + v end
    )
{%- endmacro %}


{% macro list_product(list) -%}
    {{ return(adapter.dispatch('list_product', 'featurestack')(list)) }}
{%- endmacro %}

{% macro default__list_product(list) -%}list_product({{ list }}){%- endmacro %}

{% macro spark__list_product(list) -%}
    aggregate(
        {{ list }}, cast(null as double),
        (acc, v) -> case when v is null then acc when acc is null then v else acc * v end
    )
{%- endmacro %}


{#- Mean of the non-null elements; null when there are none. -#}
{% macro list_avg(list) -%}
    {{ return(adapter.dispatch('list_avg', 'featurestack')(list)) }}
{%- endmacro %}

{% macro default__list_avg(list) -%}list_avg({{ list }}){%- endmacro %}

{% macro spark__list_avg(list) -%}
    ({{ spark__list_sum(list) }} / nullif({{ spark__list_count(list) }}, 0))
{%- endmacro %}


{#- Sample standard deviation of the non-null elements; null for fewer than two. -#}
{% macro list_stddev_samp(list) -%}
    {{ return(adapter.dispatch('list_stddev_samp', 'featurestack')(list)) }}
{%- endmacro %}

{% macro default__list_stddev_samp(list) -%}list_stddev_samp({{ list }}){%- endmacro %}

{#- Welford's update, as DuckDB's stddev_samp does it: n += 1; mean' = mean + (v - mean) / n;
    m2 += (v - mean') * (v - mean). -#}
{% macro spark__list_stddev_samp(list) -%}
    aggregate(
        {{ list }},
        named_struct('n', 0L, 'mean', 0D, 'm2', 0D),
        (s, v) -> case
            when v is null then s
            else named_struct(
                'n', s.n + 1,
                'mean', s.mean + (v - s.mean) / (s.n + 1),
                'm2', s.m2 + (v - (s.mean + (v - s.mean) / (s.n + 1))) * (v - s.mean)
            )
        end,
        s -> case when s.n > 1 then sqrt(s.m2 / (s.n - 1)) end
    )
{%- endmacro %}


{# --------------------------------------------------------------------------- ASOF joins #}

{#- An inner ASOF join of `right` to the rows of `left`, on equal `by` columns and the
    nearest time: direction 'backward' matches the latest right row at or before the left
    time, 'forward' the earliest right row at or after it. -#}
{% macro asof_inner_join(left, right, by, left_time, right_time, direction) -%}
    {{ return(adapter.dispatch('asof_inner_join', 'featurestack')(
        left, right, by, left_time, right_time, direction)) }}
{%- endmacro %}

{% macro default__asof_inner_join(left, right, by, left_time, right_time, direction) -%}
    asof inner join {{ right }}
        on
        {%- for column in by %} {{ left }}.{{ column }} = {{ right }}.{{ column }}
        and
        {%- endfor %}
        {%- if direction == 'backward' %} {{ left }}.{{ left_time }} >= {{ right }}.{{ right_time }}
        {%- else %} {{ right }}.{{ right_time }} >= {{ left }}.{{ left_time }}
        {%- endif %}
{%- endmacro %}

{#- Spark has no ASOF join. Each right row owns the interval up to its neighbour in time
    (lead for backward, lag for forward), so the join is an equi-join on `by` plus a band
    that at most one right row matches, ties on time included; no sort of the left side. -#}
{% macro spark__asof_inner_join(left, right, by, left_time, right_time, direction) -%}
    {%- set partition = ('partition by ' ~ (by | join(', '))) if by else '' -%}
    {%- set neighbour = 'lead' if direction == 'backward' else 'lag' -%}
    inner join (
        select
            *,
            {{ neighbour }}({{ right_time }}) over (
                {{ partition }} order by {{ right_time }}
            ) as asof_neighbour_time
        from {{ right }}
    ) as {{ right }}
        on
        {%- for column in by %} {{ left }}.{{ column }} = {{ right }}.{{ column }}
        and
        {%- endfor %}
        {%- if direction == 'backward' %} {{ left }}.{{ left_time }} >= {{ right }}.{{ right_time }}
        and ({{ right }}.asof_neighbour_time is null
            or {{ left }}.{{ left_time }} < {{ right }}.asof_neighbour_time)
        {%- else %} {{ right }}.{{ right_time }} >= {{ left }}.{{ left_time }}
        and ({{ right }}.asof_neighbour_time is null
            or {{ right }}.asof_neighbour_time < {{ left }}.{{ left_time }})
        {%- endif %}
{%- endmacro %}


{# ------------------------------------------------------------- incremental partitioning #}

{#- Spark replaces an incremental model's recomputed rows by overwriting whole partitions
    (insert_overwrite, docs/spark.md): the partition column, the first day of the UTC
    `spark_partition_period` (a var: month or day) of the event time, is added to the model's
    final select there and nowhere else. -#}
{% macro partition_column(column) -%}
    {{ return(adapter.dispatch('partition_column', 'featurestack')(column)) }}
{%- endmacro %}

{% macro default__partition_column(column) -%}{%- endmacro %}

{% macro spark__partition_column(column) -%}
    , cast(date_trunc('{{ var('spark_partition_period') }}', {{ column }}) as date) as partition_date
{%- endmacro %}


{% macro partitioned_by() -%}
    {{ return(adapter.dispatch('partitioned_by', 'featurestack')()) }}
{%- endmacro %}

{% macro default__partitioned_by() -%}{{ return(none) }}{%- endmacro %}

{% macro spark__partitioned_by() -%}{{ return(['partition_date']) }}{%- endmacro %}
