{#- Verification of one table over a range of windows: per window, the source's row count and an order-free checksum
    of its rows (the sum of each row's md5 as a 60-bit number; sum() of bigint is numeric, so it cannot overflow).
    The watermark column is compared bare, so its index serves the range join; windows with no rows are listed too,
    so deletes show. Override per table with `verify_template`. -#}
WITH w(low, high) AS (VALUES
{%- for window in windows %}
  (TIMESTAMPTZ '{{ window.low.isoformat() }}', TIMESTAMPTZ '{{ window.high.isoformat() }}'){{ "," if not loop.last }}
{%- endfor %})
SELECT to_char(w.low AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"+00:00"') AS window_low,
       count(t.{{ params.watermark_column }}) AS row_count,
       coalesce(sum(('x' || substr(md5(t::text), 1, 15))::bit(60)::bigint), 0) AS checksum
FROM w LEFT JOIN {{ schema }}.{{ table }} AS t
  ON t.{{ params.watermark_column }} >= w.low AND t.{{ params.watermark_column }} < w.high
GROUP BY w.low
ORDER BY w.low;
