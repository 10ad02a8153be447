{#- Example: columns in another order than the table defines them; a quoted, reserved name ("when"). -#}
SELECT id, "when", note, n, f, arr, j, b, iv, ts, tstz, u, t_null, e, big, event_timestamp
FROM {{ schema }}.awkward
WHERE event_timestamp >= TIMESTAMPTZ '{{ low_watermark.isoformat() }}'
  AND event_timestamp < TIMESTAMPTZ '{{ high_watermark.isoformat() }}'
ORDER BY id;
