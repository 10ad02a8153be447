{#- One window [low, high) of a bench event table: the column is compared bare so the index on event_timestamp is used. -#}
SELECT id, event_timestamp, kind, payload
FROM {{ schema }}.{{ table }}
WHERE event_timestamp >= TIMESTAMPTZ '{{ low_watermark.isoformat() }}'
  AND event_timestamp < TIMESTAMPTZ '{{ high_watermark.isoformat() }}'
ORDER BY event_timestamp, id;
