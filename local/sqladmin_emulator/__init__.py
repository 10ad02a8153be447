"""A local stand-in for the Cloud SQL Admin API's export path (there is no official emulator).

It speaks the REST shapes of v1 (`/v1/projects/...`) and v1beta4 (`/sql/v1beta4/projects/...`) as the
discovery documents shipped with google-api-python-client describe them: `instances.export`,
`operations.get`, `operations.list?instance=`, `operations.cancel`. Exports run the request's
`csvExportOptions.selectQuery` with `COPY (query) TO STDOUT WITH (FORMAT csv, ...)` against the
PostgreSQL database named by `databases[0]` and upload the bytes to the storage emulator.

Choices made where the real service's behaviour is not published (documented so callers know):

- NULL. Cloud SQL for PostgreSQL exports through PostgreSQL's own CSV COPY, so the emulator does
  exactly that: a NULL is an unquoted empty field, an empty string is `""`, and `escapeCharacter`
  only changes how the quote and escape characters are escaped inside quoted values
  (with "5C": `"a\\"b"`, a backslash becomes `\\\\`). The `"N` marker people report (google-api-nodejs-client
  issue 719) comes from Cloud SQL for MySQL, whose `SELECT ... INTO OUTFILE` writes NULL as
  escape character + `N`; it does not apply to PostgreSQL, so it is not imitated.
- Defaults when a CSV option is absent: fieldsTerminatedBy "2C", quoteCharacter "22", escapeCharacter
  equal to the quote character (PostgreSQL's and gcloud's default). Values are one byte as two hex digits.
  linesTerminatedBy other than "0A" is refused with 400: PostgreSQL's COPY always ends rows with LF.
- The session runs with TimeZone=UTC (Cloud SQL's default) and read-only, so timestamptz values
  come out as `2026-01-02 03:04:05.123456+00`.
- HTTP errors use Google's JSON error body `{"error": {"code", "message", "errors": [{"message",
  "domain": "global", "reason"}], "status"}}`. Busy instance: 409, reason `operationInProgress`, message
  "Operation failed because another operation was already in progress. Try your request after the
  current operation is complete." (the text gcloud prints). Malformed export requests: 400, reason
  `invalid`, message "Invalid request: ...". Unknown operation: 404, reason `operationDoesNotExist`.
  Injected 5xx: 503, reason `backendError`, status UNAVAILABLE.
- Operation errors (status DONE + `error.errors[]`): a query or connection failure has code
  `ERROR_RDBMS` (the code Cloud SQL uses for database-side failures) and PostgreSQL's message
  ("ERROR: relation ... does not exist"); an existing object has code `ALREADY_EXISTS`; an injected
  failure or a storage error has code `INTERNAL_ERROR`; a cancelled operation has code
  `OPERATION_CANCELLED`. A failed operation never leaves an object behind.
"""
