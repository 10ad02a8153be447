{#- Rows of one window [low, high): the column is compared bare so the index on event_timestamp is used. -#}
SELECT id, event_timestamp, customer_id, amount, currency, note
FROM {{ schema }}.{{ table }}
WHERE event_timestamp >= TIMESTAMPTZ '{{ low_watermark.isoformat() }}'
  AND event_timestamp < TIMESTAMPTZ '{{ high_watermark.isoformat() }}'
ORDER BY event_timestamp, id;
