{#- Example: a subset of the table's columns, one renamed. -#}
SELECT e AS empty_or_null, id, j
FROM {{ schema }}.awkward
WHERE event_timestamp >= TIMESTAMPTZ '{{ low_watermark.isoformat() }}'
  AND event_timestamp < TIMESTAMPTZ '{{ high_watermark.isoformat() }}'
ORDER BY id;
