{#- Column names and types of the source's tables: the export CSVs have no header, this file names them. -#}
SELECT table_name, column_name, data_type, ordinal_position, is_nullable
FROM information_schema.columns
WHERE table_schema = '{{ schema }}'
  AND table_name IN ({% for name in tables %}'{{ name }}'{{ ", " if not loop.last }}{% endfor %})
ORDER BY table_name, ordinal_position;
