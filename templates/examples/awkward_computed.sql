{#- Example: computed columns; each states its type with a cast, so the manifest can name and type it. -#}
SELECT a.id, upper(a.u)::text AS u_upper, (a.n * 2)::numeric AS n_twice, a.tstz::date AS day, 'x' AS tag
FROM {{ schema }}.awkward AS a
WHERE a.event_timestamp >= TIMESTAMPTZ '{{ low_watermark.isoformat() }}'
  AND a.event_timestamp < TIMESTAMPTZ '{{ high_watermark.isoformat() }}'
ORDER BY a.id;
