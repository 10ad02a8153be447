"""Validates an export request and runs it: PostgreSQL COPY to CSV, then one upload to storage."""

from __future__ import annotations

import gzip
import json
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any

import psycopg
from google.api_core import exceptions as gexc
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage
from psycopg import sql

from local.sqladmin_emulator.api_errors import invalid

_SPOOL_IN_MEMORY_BYTES = 16 * 1024 * 1024
# What the export runs. Confirmed: PostgreSQL's COPY CSV rules (quoting, escape only inside quotes, NULL as an
# unquoted empty field); that an unset escapeCharacter means COPY's default (the quote), as gcloud sends no escape
# by default and the result doubles quotes (measured with gcloud against the API's documented options, see
# LOCAL_STACK.md). Inferred: that Cloud SQL passes the hex options to COPY as DELIMITER/QUOTE/ESCAPE unchanged.
_COPY_TEMPLATE = sql.SQL(
    "COPY ({query}) TO STDOUT WITH (FORMAT csv, HEADER false, DELIMITER {delimiter}, QUOTE {quote}, ESCAPE {escape})"
)


class OperationFailed(Exception):
    """The export ran but failed: the operation ends DONE with this error code and message."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@dataclass(frozen=True)
class CsvExport:
    """A validated CSV export request."""

    database: str
    uri: str
    bucket: str
    key: str
    query: str
    delimiter: str
    quote: str
    escape: str

    @property
    def gzip(self) -> bool:
        """Confirmed (gcloud sql export csv reference): "If the filename ends with .gz, the contents are
        compressed." Inferred: the object is stored as gzip bytes without Content-Encoding metadata; the project's
        reader recognises gzip by its magic bytes, so either way reads the same."""
        return self.key.endswith(".gz")


def _hex_char(options: dict[str, Any], field: str, default: str) -> str:
    value = options.get(field)
    if value is None:
        return default
    if not isinstance(value, str) or len(value) != 2:
        raise invalid(f'csvExportOptions.{field} must be one character as two hex digits (e.g. "5C"), got {value!r}.')
    try:
        code = int(value, 16)
    except ValueError:
        raise invalid(f"csvExportOptions.{field} {value!r} is not hexadecimal.") from None
    if code == 0 or code > 0x7F:
        raise invalid(f"csvExportOptions.{field} {value!r} must be a printable ASCII character.")
    return chr(code)


def parse_export_request(body: Any) -> tuple[dict[str, Any], CsvExport]:
    """Validate an InstancesExportRequest; return the exportContext to echo and the export to run.

    Raises a 400 ApiError for anything the emulator (or the real API) refuses up front.
    """
    context = body.get("exportContext") if isinstance(body, dict) else None
    if not isinstance(context, dict):
        raise invalid("exportContext is required.")
    file_type = context.get("fileType")
    if file_type != "CSV":
        raise invalid(f"fileType {file_type!r} is not supported: the emulator exports CSV only.")
    uri = context.get("uri")
    if not isinstance(uri, str) or not uri.startswith("gs://"):
        raise invalid(f"uri must be of the form gs://bucketName/fileName, got {uri!r}.")
    bucket, _, key = uri[len("gs://") :].partition("/")
    if not bucket or not key or key.endswith("/"):
        raise invalid(f"uri must be of the form gs://bucketName/fileName, got {uri!r}.")
    databases = context.get("databases")
    if not isinstance(databases, list) or not databases:
        raise invalid("databases must name the database to export from.")
    if len(databases) > 1 or not isinstance(databases[0], str) or not databases[0]:
        raise invalid(f"a CSV export reads exactly one database, got databases={json.dumps(databases)}.")
    options = context.get("csvExportOptions")
    if not isinstance(options, dict):
        raise invalid("csvExportOptions.selectQuery is required for a CSV export.")
    query = options.get("selectQuery")
    if not isinstance(query, str) or not query.strip():
        raise invalid("csvExportOptions.selectQuery is required for a CSV export.")
    lines = options.get("linesTerminatedBy")
    if lines is not None and str(lines).upper() != "0A":
        raise invalid(
            f"csvExportOptions.linesTerminatedBy {lines!r} is not supported for PostgreSQL; rows always end with 0A."
        )
    quote = _hex_char(options, "quoteCharacter", '"')
    export = CsvExport(
        database=databases[0],
        uri=uri,
        bucket=bucket,
        key=key,
        query=query,
        delimiter=_hex_char(options, "fieldsTerminatedBy", ","),
        quote=quote,
        escape=_hex_char(options, "escapeCharacter", quote),
    )
    return {"kind": "sql#exportContext", **context}, export


class Exporter:
    """Runs exports against one PostgreSQL server and one storage endpoint."""

    def __init__(self, pg_conninfo: str, storage_endpoint: str) -> None:
        self._pg_conninfo = pg_conninfo
        self._storage = storage.Client(
            project="sqladmin-emulator",
            credentials=AnonymousCredentials(),
            client_options={"api_endpoint": storage_endpoint},
        )

    def _blob(self, export: CsvExport) -> storage.Blob:
        return self._storage.bucket(export.bucket).blob(export.key)

    def check_absent(self, export: CsvExport) -> None:
        """Fail early when the object exists (the upload's precondition still guards the race)."""
        try:
            exists = self._blob(export).exists()
        except gexc.GoogleAPIError as exc:
            raise OperationFailed("INTERNAL_ERROR", f"Cannot read the bucket of {export.uri}: {exc}") from exc
        if exists:
            raise _already_exists(export)

    def copy(self, export: CsvExport, on_connection: Callable[[psycopg.Connection], None]) -> IO[bytes]:
        """Run the COPY; return a rewound spool file holding the (possibly gzipped) CSV bytes.

        `on_connection` receives the open connection so that a cancel can interrupt the query.
        """
        spool = tempfile.SpooledTemporaryFile(max_size=_SPOOL_IN_MEMORY_BYTES)  # noqa: SIM115 - returned open
        try:
            with psycopg.connect(
                self._pg_conninfo,
                dbname=export.database,
                autocommit=True,
                application_name="cloudsqladmin-export",
                options="-c TimeZone=UTC -c default_transaction_read_only=on",
            ) as conn:
                on_connection(conn)
                statement = _COPY_TEMPLATE.format(
                    query=sql.SQL(export.query),  # the caller's query, verbatim, as the real export runs it
                    delimiter=sql.Literal(export.delimiter),
                    quote=sql.Literal(export.quote),
                    escape=sql.Literal(export.escape),
                )
                out: IO[bytes] = gzip.GzipFile(fileobj=spool, mode="wb", mtime=0) if export.gzip else spool
                with conn.cursor() as cur, cur.copy(statement) as copy:
                    for chunk in copy:
                        out.write(chunk)
                if out is not spool:
                    out.close()  # writes the gzip trailer; the spool stays open
        except psycopg.Error as exc:
            spool.close()
            raise OperationFailed("ERROR_RDBMS", _pg_message(exc)) from exc
        except BaseException:
            spool.close()
            raise
        spool.seek(0)
        return spool

    def upload(self, export: CsvExport, spool: IO[bytes]) -> None:
        """Create the object; never overwrite one (if_generation_match=0)."""
        content_type = "application/gzip" if export.gzip else "text/csv"
        try:
            self._blob(export).upload_from_file(
                spool, rewind=True, content_type=content_type, if_generation_match=0, timeout=60
            )
        except gexc.PreconditionFailed as exc:
            raise _already_exists(export) from exc
        except gexc.NotFound as exc:
            raise OperationFailed("INTERNAL_ERROR", f"The bucket of {export.uri} does not exist.") from exc
        except gexc.GoogleAPIError as exc:
            raise OperationFailed("INTERNAL_ERROR", f"Writing {export.uri} failed: {exc}") from exc


def _already_exists(export: CsvExport) -> OperationFailed:
    return OperationFailed(
        "ALREADY_EXISTS",
        f"The export file {export.uri} already exists. Cloud SQL does not overwrite existing objects; "
        "export to a new name.",
    )


def _pg_message(exc: psycopg.Error) -> str:
    """PostgreSQL's own words, as psql prints them (ERROR: ..., DETAIL: ..., HINT: ...)."""
    diag = exc.diag
    if diag.message_primary is None:  # connection-level failure: no server diagnostics
        return str(exc).strip()
    parts = [f"{diag.severity or 'ERROR'}:  {diag.message_primary}"]
    if diag.message_detail:
        parts.append(f"DETAIL:  {diag.message_detail}")
    if diag.message_hint:
        parts.append(f"HINT:  {diag.message_hint}")
    return "\n".join(parts)
