"""The Cloud SQL Admin API emulator, driven by googleapiclient (v1 and v1beta4) against real PostgreSQL
and fake-gcs-server started by this module."""

from __future__ import annotations

import gzip
import json
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import google.auth.credentials
import psycopg
import pytest
from google.cloud import storage
from googleapiclient import discovery
from googleapiclient.errors import HttpError

from tests._emulator_fixtures import LocalServices, postgres_bin

pytestmark = [
    pytest.mark.stack,
    pytest.mark.skipif(postgres_bin() is None, reason="needs PostgreSQL (apt-get install postgresql)"),
]

PROJECT = "cdc-local"
DATABASE = "shop"
BUCKET = "cdc-exports"
BUSY = (
    "Operation failed because another operation was already in progress. "
    "Try your request after the current operation is complete."
)

ROWS_SQL = r"""
CREATE TABLE things (id int PRIMARY KEY, txt text, ts timestamptz, n numeric);
INSERT INTO things VALUES
 (1, NULL, NULL, NULL),
 (2, '', '2026-01-02 03:04:05.123456+00', 1.50),
 (3, 'say "hi", ok', '2026-01-02 05:04:05+02', -2),
 (4, E'two\nlines', '2025-12-31 23:59:59.5-01', 0),
 (5, E'back\\slash', '2026-06-30 12:00:00+00', 3.14159),
 (6, 'zoë ✓ 日本', '2026-01-01 00:00:00+00', 7),
 (7, E'quote\\"mix', '2026-01-01 00:00:00+00', 8),
 (8, E'cr\rhere', '2026-01-01 00:00:00+00', 9);
"""

# What PostgreSQL's CSV COPY writes for ROWS_SQL with escape "5C" (backslash), quote "22", delimiter "2C":
# NULL is an unquoted empty field; a value is quoted only when it is empty or holds the delimiter, the
# quote, CR or LF; inside quotes the quote and the escape character are preceded by the escape character;
# timestamptz in the session's UTC.
EXPECTED_5C = (
    b"1,,,\n"
    b'2,"",2026-01-02 03:04:05.123456+00,1.50\n'
    b'3,"say \\"hi\\", ok",2026-01-02 03:04:05+00,-2\n'
    b'4,"two\nlines",2026-01-01 00:59:59.5+00,0\n'
    b"5,back\\slash,2026-06-30 12:00:00+00,3.14159\n"
    + "6,zoë ✓ 日本,2026-01-01 00:00:00+00,7\n".encode()
    + b'7,"quote\\\\\\"mix",2026-01-01 00:00:00+00,8\n'
    b'8,"cr\rhere",2026-01-01 00:00:00+00,9\n'
)
QUERY = "SELECT id, txt, ts, n FROM things ORDER BY id"


@pytest.fixture(scope="module")
def services() -> Iterator[LocalServices]:
    svc = LocalServices(emulator_args=["--seed", "7"]).start()
    try:
        with psycopg.connect(svc.pg_conninfo, dbname="postgres", autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {DATABASE}")
        with psycopg.connect(svc.pg_conninfo, dbname=DATABASE, autocommit=True) as conn:
            conn.execute(ROWS_SQL)
        _gcs(svc).create_bucket(BUCKET)
        yield svc
    finally:
        svc.stop()


def _gcs(svc: LocalServices) -> storage.Client:
    return storage.Client(
        project=PROJECT,
        credentials=google.auth.credentials.AnonymousCredentials(),
        client_options={"api_endpoint": svc.gcs_url},
    )


@pytest.fixture(scope="module")
def gcs(services: LocalServices) -> storage.Client:
    return _gcs(services)


def _build(services: LocalServices, version: str) -> Any:
    return discovery.build(
        "sqladmin",
        version,
        static_discovery=True,
        credentials=google.auth.credentials.AnonymousCredentials(),
        client_options={"api_endpoint": services.emulator_url},
    )


@pytest.fixture(scope="module", params=["v1", "v1beta4"])
def api(request: pytest.FixtureRequest, services: LocalServices) -> Any:
    return _build(services, request.param)


@pytest.fixture(scope="module")
def v1(services: LocalServices) -> Any:
    return _build(services, "v1")


@pytest.fixture(autouse=True)
def _reset(services: LocalServices) -> None:
    admin(services, "POST", "reset")


def admin(services: LocalServices, method: str, name: str, body: dict[str, Any] | None = None) -> Any:
    data = json.dumps(body).encode() if body is not None else (b"{}" if method == "POST" else None)
    req = urllib.request.Request(
        f"{services.emulator_url}_emulator/{name}",
        data=data,
        method=method,
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def new_uri(suffix: str = ".csv") -> str:
    return f"gs://{BUCKET}/t/{uuid.uuid4().hex}{suffix}"


def export_body(uri: str, query: str = QUERY, databases: list[str] | None = None, **csv: str | None) -> dict[str, Any]:
    options = {
        "selectQuery": query,
        "escapeCharacter": "5C",
        "quoteCharacter": "22",
        "fieldsTerminatedBy": "2C",
        **csv,
    }
    return {
        "exportContext": {
            "fileType": "CSV",
            "uri": uri,
            "databases": [DATABASE] if databases is None else databases,
            "csvExportOptions": {k: v for k, v in options.items() if v is not None},
        }
    }


def start(api: Any, uri: str, instance: str = "shop-pg", **kwargs: Any) -> dict[str, Any]:
    body = export_body(uri, **kwargs)
    return api.instances().export(project=PROJECT, instance=instance, body=body).execute()


def wait_done(api: Any, name: str, timeout: float = 15) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        op = api.operations().get(project=PROJECT, operation=name).execute()
        if op["status"] == "DONE":
            return op
        assert time.monotonic() < deadline, f"operation {name} not DONE after {timeout}s: {op}"
        time.sleep(0.02)


def export_and_wait(api: Any, uri: str, **kwargs: Any) -> dict[str, Any]:
    return wait_done(api, start(api, uri, **kwargs)["name"])


def read(gcs: storage.Client, uri: str) -> bytes:
    return gcs.bucket(BUCKET).blob(uri.removeprefix(f"gs://{BUCKET}/")).download_as_bytes()


def exists(gcs: storage.Client, uri: str) -> bool:
    return gcs.bucket(BUCKET).blob(uri.removeprefix(f"gs://{BUCKET}/")).exists()


def op_error(op: dict[str, Any]) -> dict[str, Any]:
    assert op["status"] == "DONE"
    assert op["error"]["kind"] == "sql#operationErrors"
    (err,) = op["error"]["errors"]
    assert err["kind"] == "sql#operationError"
    return err


# --- the export itself ------------------------------------------------------------------------------


def test_csv_is_byte_exact_and_reads_back_as_the_same_rows(
    api: Any, services: LocalServices, gcs: storage.Client
) -> None:
    uri = new_uri()
    op = export_and_wait(api, uri)
    assert "error" not in op
    data = read(gcs, uri)
    assert data == EXPECTED_5C

    with psycopg.connect(services.pg_conninfo, dbname=DATABASE, autocommit=True) as conn:
        conn.execute("SET TimeZone = 'UTC'")
        conn.execute("CREATE TEMP TABLE back (LIKE things)")
        with (
            conn.cursor() as cur,
            cur.copy("COPY back FROM STDIN WITH (FORMAT csv, DELIMITER ',', QUOTE '\"', ESCAPE '\\')") as copy,
        ):
            copy.write(data)
        original = conn.execute("SELECT * FROM things ORDER BY id").fetchall()
        assert conn.execute("SELECT * FROM back ORDER BY id").fetchall() == original
    assert original[0][1:] == (None, None, None) and original[1][1] == ""


def test_operation_resource_looks_like_the_real_one(api: Any) -> None:
    uri = new_uri()
    first = start(api, uri)
    assert first["status"] in {"PENDING", "RUNNING"}
    op = wait_done(api, first["name"])
    assert op["kind"] == "sql#operation"
    assert op["operationType"] == "EXPORT"
    assert op["targetId"] == "shop-pg" and op["targetProject"] == PROJECT
    assert op["targetLink"].endswith(f"/projects/{PROJECT}/instances/shop-pg")
    assert op["selfLink"].endswith(f"/projects/{PROJECT}/operations/{op['name']}")
    assert len(uuid.UUID(op["name"]).hex) == 32
    assert op["user"]
    for key in ("insertTime", "startTime", "endTime"):
        assert len(op[key]) == 24 and op[key].endswith("Z") and op[key][19] == ".", op[key]
    assert op["insertTime"] <= op["startTime"] <= op["endTime"]
    context = op["exportContext"]
    assert context["kind"] == "sql#exportContext" and context["uri"] == uri
    assert context["databases"] == [DATABASE] and context["csvExportOptions"]["escapeCharacter"] == "5C"


def test_default_options_double_the_quote_and_delimiter_is_honoured(v1: Any, gcs: storage.Client) -> None:
    uri = new_uri()
    export_and_wait(
        v1,
        uri,
        query="SELECT id, txt FROM things WHERE id IN (3, 5, 7) ORDER BY id",
        escapeCharacter=None,
        quoteCharacter=None,
        fieldsTerminatedBy="3B",
    )
    assert read(gcs, uri) == b'3;"say ""hi"", ok"\n5;back\\slash\n7;"quote\\""mix"\n'


def test_gz_uri_is_gzipped(v1: Any, gcs: storage.Client) -> None:
    uri = new_uri(".csv.gz")
    op = export_and_wait(v1, uri)
    assert "error" not in op
    data = read(gcs, uri)
    assert data[:2] == b"\x1f\x8b"
    assert gzip.decompress(data) == EXPECTED_5C


def test_empty_result_is_an_empty_object(v1: Any, gcs: storage.Client) -> None:
    uri = new_uri()
    assert "error" not in export_and_wait(v1, uri, query="SELECT * FROM things WHERE false")
    assert read(gcs, uri) == b""


# --- refusals -------------------------------------------------------------------------------------------


def test_second_export_on_a_busy_instance_gets_409(api: Any, services: LocalServices, gcs: storage.Client) -> None:
    admin(services, "POST", "faults", {"min_duration": 0.6})
    first = start(api, new_uri())
    second_uri = new_uri()
    with pytest.raises(HttpError) as info:
        start(api, second_uri)
    assert info.value.status_code == 409
    assert info.value.error_details[0]["reason"] == "operationInProgress"
    assert info.value.error_details[0]["domain"] == "global"
    assert info.value.reason == BUSY
    wait_done(api, first["name"])
    assert "error" not in export_and_wait(api, second_uri)  # free again once the first is DONE
    assert exists(gcs, second_uri)


def test_simultaneous_exports_never_both_start(v1: Any, services: LocalServices) -> None:
    admin(services, "POST", "faults", {"min_duration": 0.5})
    clients = [_build(services, "v1") for _ in range(6)]
    barrier = threading.Barrier(len(clients))
    outcomes: list[int] = []

    def attempt(client: Any) -> None:
        barrier.wait()
        try:
            start(client, new_uri(), instance="race-pg")
            outcomes.append(200)
        except HttpError as exc:
            outcomes.append(exc.status_code)

    threads = [threading.Thread(target=attempt, args=(c,)) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == [200] + [409] * (len(clients) - 1)


def test_overwrite_is_refused_and_the_object_is_untouched(api: Any, gcs: storage.Client) -> None:
    uri = new_uri()
    assert "error" not in export_and_wait(api, uri, query="SELECT 1")
    generation = gcs.bucket(BUCKET).get_blob(uri.removeprefix(f"gs://{BUCKET}/")).generation
    err = op_error(export_and_wait(api, uri, query="SELECT 2"))
    assert err["code"] == "ALREADY_EXISTS" and uri in err["message"]
    blob = gcs.bucket(BUCKET).get_blob(uri.removeprefix(f"gs://{BUCKET}/"))
    assert blob.generation == generation and blob.download_as_bytes() == b"1\n"


def test_query_error_carries_postgresql_message(api: Any, gcs: storage.Client) -> None:
    uri = new_uri()
    err = op_error(export_and_wait(api, uri, query="SELECT * FROM no_such_table"))
    assert err["code"] == "ERROR_RDBMS"
    assert err["message"] == 'ERROR:  relation "no_such_table" does not exist'
    assert not exists(gcs, uri)


def test_unknown_database_fails_the_operation(v1: Any, gcs: storage.Client) -> None:
    uri = new_uri()
    err = op_error(export_and_wait(v1, uri, databases=["nope"]))
    assert err["code"] == "ERROR_RDBMS" and 'database "nope" does not exist' in err["message"]
    assert not exists(gcs, uri)


def _malformed(uri: str) -> dict[str, dict[str, Any]]:
    base = export_body(uri)["exportContext"]
    options = base["csvExportOptions"]
    return {
        "no databases": {**base, "databases": []},
        "databases missing": {k: v for k, v in base.items() if k != "databases"},
        "two databases": {**base, "databases": [DATABASE, "other"]},
        "fileType SQL": {**base, "fileType": "SQL"},
        "fileType missing": {k: v for k, v in base.items() if k != "fileType"},
        "uri not gs": {**base, "uri": "s3://bucket/key.csv"},
        "uri without object": {**base, "uri": f"gs://{BUCKET}/"},
        "no selectQuery": {**base, "csvExportOptions": {**options, "selectQuery": ""}},
        "no csvExportOptions": {k: v for k, v in base.items() if k != "csvExportOptions"},
        "escape not hex": {**base, "csvExportOptions": {**options, "escapeCharacter": "\\"}},
        "linesTerminatedBy CRLF": {**base, "csvExportOptions": {**options, "linesTerminatedBy": "0D0A"}},
    }


@pytest.mark.parametrize("case", sorted(_malformed("gs://x/y")))
def test_malformed_request_gets_400(case: str, v1: Any, services: LocalServices) -> None:
    context = _malformed(new_uri())[case]
    with pytest.raises(HttpError) as info:
        v1.instances().export(project=PROJECT, instance="shop-pg", body={"exportContext": context}).execute()
    assert info.value.status_code == 400
    assert info.value.error_details[0]["reason"] == "invalid"
    assert info.value.reason.startswith("Invalid request: ")
    assert admin(services, "GET", "operations")["operations"] == []


def test_unknown_operation_is_404(api: Any) -> None:
    with pytest.raises(HttpError) as info:
        api.operations().get(project=PROJECT, operation=str(uuid.uuid4())).execute()
    assert info.value.status_code == 404
    assert info.value.error_details[0]["reason"] == "operationDoesNotExist"


# --- list and cancel --------------------------------------------------------------------------------------


def test_operations_list_filters_by_instance_newest_first(api: Any) -> None:
    a1 = export_and_wait(api, new_uri(), instance="inst-a", query="SELECT 1")
    b1 = export_and_wait(api, new_uri(), instance="inst-b", query="SELECT 1")
    a2 = export_and_wait(api, new_uri(), instance="inst-a", query="SELECT 1")
    listed = api.operations().list(project=PROJECT, instance="inst-a").execute()
    assert listed["kind"] == "sql#operationsList"
    assert [op["name"] for op in listed["items"]] == [a2["name"], a1["name"]]
    assert all(op["kind"] == "sql#operation" and op["targetId"] == "inst-a" for op in listed["items"])
    page = api.operations().list(project=PROJECT, instance="inst-a", maxResults=1).execute()
    assert [op["name"] for op in page["items"]] == [a2["name"]] and page["nextPageToken"]
    token = page["nextPageToken"]
    rest = api.operations().list(project=PROJECT, instance="inst-a", pageToken=token).execute()
    assert [op["name"] for op in rest["items"]] == [a1["name"]] and "nextPageToken" not in rest
    other = api.operations().list(project=PROJECT, instance="inst-b").execute()
    assert [op["name"] for op in other["items"]] == [b1["name"]]


def test_cancel_interrupts_a_running_query(api: Any, gcs: storage.Client) -> None:
    uri = new_uri()
    op = start(api, uri, query="SELECT pg_sleep(20)")
    while api.operations().get(project=PROJECT, operation=op["name"]).execute()["status"] != "RUNNING":
        time.sleep(0.02)
    time.sleep(0.2)  # the COPY is under way
    began = time.monotonic()
    assert api.operations().cancel(project=PROJECT, operation=op["name"]).execute() in ({}, None, "")
    done = wait_done(api, op["name"], timeout=5)
    assert time.monotonic() - began < 3
    assert op_error(done)["code"] == "OPERATION_CANCELLED"
    assert not exists(gcs, uri)
    assert "error" not in export_and_wait(api, new_uri(), query="SELECT 1")  # the instance is free again
    with pytest.raises(HttpError) as info:  # a DONE operation cannot be cancelled
        api.operations().cancel(project=PROJECT, operation=op["name"]).execute()
    assert info.value.status_code == 400


def test_cancel_during_min_duration_hold(v1: Any, services: LocalServices, gcs: storage.Client) -> None:
    admin(services, "POST", "faults", {"min_duration": 10})
    uri = new_uri()
    op = start(v1, uri, query="SELECT 1")
    time.sleep(0.3)
    v1.operations().cancel(project=PROJECT, operation=op["name"]).execute()
    assert op_error(wait_done(v1, op["name"], timeout=3))["code"] == "OPERATION_CANCELLED"
    assert not exists(gcs, uri)


# --- fault knobs ------------------------------------------------------------------------------------------


def test_min_duration_holds_the_operation_running(v1: Any, services: LocalServices) -> None:
    assert admin(services, "POST", "faults", {"min_duration": 0.8})["min_duration"] == 0.8
    assert admin(services, "GET", "faults")["min_duration"] == 0.8
    began = time.monotonic()
    op = start(v1, new_uri(), query="SELECT 1")
    time.sleep(0.3)
    assert v1.operations().get(project=PROJECT, operation=op["name"]).execute()["status"] == "RUNNING"
    wait_done(v1, op["name"])
    assert time.monotonic() - began >= 0.8


def test_op_overhead_is_added_to_every_export_and_keeps_the_instance_serial(v1: Any, services: LocalServices) -> None:
    assert admin(services, "POST", "faults", {"op_overhead_seconds": 0.5})["op_overhead_seconds"] == 0.5
    began = time.monotonic()
    op = start(v1, new_uri(), query="SELECT 1")
    time.sleep(0.2)
    assert v1.operations().get(project=PROJECT, operation=op["name"]).execute()["status"] == "RUNNING"
    with pytest.raises(HttpError) as info:  # the overhead holds the instance like the query does
        start(v1, new_uri(), query="SELECT 1")
    assert info.value.status_code == 409
    wait_done(v1, op["name"])
    assert "error" not in export_and_wait(v1, new_uri(), query="SELECT 1")
    assert time.monotonic() - began >= 1.0  # two operations, one after the other


def test_duration_jitter_spreads_each_exports_run_time_around_min_duration(v1: Any, services: LocalServices) -> None:
    """An export's run time is its fixed overhead (min_duration) spread by duration_jitter, drawn per export."""
    admin(services, "POST", "faults", {"min_duration": 0.4, "duration_jitter": 0.5})
    ran = []
    for _ in range(4):
        op = wait_done(v1, start(v1, new_uri(), query="SELECT 1")["name"])
        ran.append(datetime.fromisoformat(op["endTime"]) - datetime.fromisoformat(op["startTime"]))
    seconds = [r.total_seconds() for r in ran]
    assert all(0.2 <= s <= 0.7 for s in seconds), seconds  # 0.4 x [0.5, 1.5], plus the COPY and upload
    assert max(seconds) - min(seconds) > 0.02, seconds  # drawn per export, not fixed


def test_error_rate_answers_503(v1: Any, services: LocalServices) -> None:
    admin(services, "POST", "faults", {"error_rate": 1.0})
    with pytest.raises(HttpError) as info:
        v1.operations().list(project=PROJECT, instance="shop-pg").execute()
    assert info.value.status_code == 503
    assert info.value.error_details[0]["reason"] == "backendError"
    with pytest.raises(HttpError):
        start(v1, new_uri())
    assert admin(services, "GET", "stats")["faults"]["http_503"] == 2
    assert admin(services, "GET", "operations")["operations"] == []  # a 503 starts nothing
    admin(services, "POST", "faults", {"error_rate": 0.5, "seed": 3})
    statuses = []
    for _ in range(20):
        try:
            v1.operations().list(project=PROJECT, instance="shop-pg").execute()
            statuses.append(200)
        except HttpError as exc:
            statuses.append(exc.status_code)
    assert set(statuses) == {200, 503}


def test_op_fail_rate_ends_done_with_an_error(v1: Any, services: LocalServices, gcs: storage.Client) -> None:
    admin(services, "POST", "faults", {"op_fail_rate": 1.0})
    uri = new_uri()
    err = op_error(export_and_wait(v1, uri))
    assert err["code"] == "INTERNAL_ERROR" and "op_fail_rate" in err["message"]
    assert not exists(gcs, uri)
    assert admin(services, "GET", "stats")["faults"]["op_fail"] == 1


def test_fail_uri_regex_fails_matching_exports_only(v1: Any, services: LocalServices, gcs: storage.Client) -> None:
    admin(services, "POST", "faults", {"fail_uri_regex": r"/poison/"})
    bad = f"gs://{BUCKET}/poison/{uuid.uuid4().hex}.csv"
    assert op_error(export_and_wait(v1, bad))["code"] == "INTERNAL_ERROR"
    assert not exists(gcs, bad)
    good = new_uri()
    assert "error" not in export_and_wait(v1, good)
    assert admin(services, "GET", "stats")["faults"] == {"uri_fail": 1}


def test_a_hung_export_stays_running_until_cancelled(v1: Any, services: LocalServices, gcs: storage.Client) -> None:
    admin(services, "POST", "faults", {"hang_exports": 1})
    uri = new_uri()
    op = start(v1, uri, query="SELECT 1")
    time.sleep(1.0)  # a SELECT 1 export takes milliseconds
    assert v1.operations().get(project=PROJECT, operation=op["name"]).execute()["status"] == "RUNNING"
    assert admin(services, "GET", "faults")["hang_exports"] == 0  # used up: the next export runs
    with pytest.raises(HttpError) as info:  # and it holds the instance, as a real hung operation does
        start(v1, new_uri(), query="SELECT 1")
    assert info.value.status_code == 409
    v1.operations().cancel(project=PROJECT, operation=op["name"]).execute()
    assert op_error(wait_done(v1, op["name"], timeout=3))["code"] == "OPERATION_CANCELLED"
    assert not exists(gcs, uri)
    assert "error" not in export_and_wait(v1, new_uri(), query="SELECT 1")
    assert admin(services, "GET", "stats")["faults"] == {"operation_hang": 1}


def test_a_vanishing_export_writes_its_object_then_its_name_is_unknown(
    v1: Any, services: LocalServices, gcs: storage.Client
) -> None:
    admin(services, "POST", "faults", {"vanish_exports": 1})
    uri = new_uri()
    op = start(v1, uri, query="SELECT 1")
    deadline = time.monotonic() + 10
    while not exists(gcs, uri):
        assert time.monotonic() < deadline, "the vanishing export never wrote its object"
        time.sleep(0.05)
    time.sleep(0.2)
    with pytest.raises(HttpError) as info:
        v1.operations().get(project=PROJECT, operation=op["name"]).execute()
    assert info.value.status_code == 404 and info.value.error_details[0]["reason"] == "operationDoesNotExist"
    listed = v1.operations().list(project=PROJECT, instance="shop-pg").execute().get("items", [])
    assert op["name"] not in [o["name"] for o in listed]
    assert "error" not in export_and_wait(v1, new_uri(), query="SELECT 1")  # the slot was freed
    assert admin(services, "GET", "stats")["faults"] == {"operation_vanish": 1}


def test_request_latency_delays_api_calls(v1: Any, services: LocalServices) -> None:
    admin(services, "POST", "faults", {"request_latency": 0.3})
    began = time.monotonic()
    v1.operations().list(project=PROJECT, instance="shop-pg").execute()
    assert time.monotonic() - began >= 0.3


def test_bad_fault_settings_are_refused(services: LocalServices) -> None:
    for body in (
        {"error_rat": 0.5},
        {"error_rate": 2},
        {"min_duration": -1},
        {"op_overhead_seconds": -0.5},
        {"op_overhead_seconds": "1"},
        {"fail_uri_regex": "("},
        {"hang_exports": -1},
        {"vanish_exports": 1.5},
        {"duration_jitter": 1.5},
        {"duration_jitter": -0.1},
    ):
        with pytest.raises(urllib.error.HTTPError) as info:
            admin(services, "POST", "faults", body)
        assert info.value.code == 400


def test_foreign_operation_holds_the_instance_then_frees_it(api: Any, services: LocalServices) -> None:
    foreign = admin(services, "POST", "foreign-operation", {"project": PROJECT, "instance": "shop-pg", "seconds": 0.8})
    assert foreign["operationType"] == "BACKUP_VOLUME" and foreign["status"] == "RUNNING"
    with pytest.raises(HttpError) as info:
        start(api, new_uri())
    assert info.value.status_code == 409 and info.value.error_details[0]["reason"] == "operationInProgress"
    assert start(api, new_uri(), instance="other-pg")  # other instances are not affected
    assert wait_done(api, foreign["name"], timeout=3).get("error") is None
    assert "error" not in export_and_wait(api, new_uri())


def test_instances_run_in_parallel_but_each_serially(v1: Any, services: LocalServices) -> None:
    admin(services, "POST", "faults", {"min_duration": 0.8})
    began = time.monotonic()
    a = start(v1, new_uri(), instance="par-a")
    b = start(v1, new_uri(), instance="par-b")
    with pytest.raises(HttpError) as info:
        start(v1, new_uri(), instance="par-a")
    assert info.value.status_code == 409
    wait_done(v1, a["name"])
    wait_done(v1, b["name"])
    assert time.monotonic() - began < 1.5  # both ran at once: serially they would take 1.6 s
    ops = {o["name"]: o for o in admin(services, "GET", "operations")["operations"]}
    assert ops[a["name"]]["startTime"] < ops[b["name"]]["endTime"]
    assert ops[b["name"]]["startTime"] < ops[a["name"]]["endTime"]


# --- admin endpoints --------------------------------------------------------------------------------------


def test_admin_operations_lists_every_operation(v1: Any, services: LocalServices) -> None:
    uri = new_uri()
    done = export_and_wait(v1, uri, query="SELECT 1")
    failed = export_and_wait(v1, uri, query="SELECT 1")
    listed = admin(services, "GET", "operations")["operations"]
    assert [o["name"] for o in listed] == [done["name"], failed["name"]]  # oldest first
    first, second = listed
    assert first["instance"] == "shop-pg" and first["uri"] == uri and first["operationType"] == "EXPORT"
    assert first["status"] == "DONE" and first["error"] is None and first["endTime"]
    assert second["error"]["code"] == "ALREADY_EXISTS"
    assert admin(services, "GET", "stats")["operations"] == {"DONE": 2}


def test_call_log_names_each_api_calls_verb_instance_operation_and_status(v1: Any, services: LocalServices) -> None:
    since = time.time()
    op = export_and_wait(v1, new_uri(), query="SELECT 1")
    v1.operations().list(project=PROJECT, instance="shop-pg").execute()
    with pytest.raises(HttpError):
        v1.operations().get(project=PROJECT, operation="nope").execute()
    calls = admin(services, "GET", f"calls?since={since}")["calls"]
    assert calls[0] == {**calls[0], "verb": "export", "instance": "shop-pg", "operation": op["name"], "status": 200}
    gets = [c for c in calls if c["verb"] == "get" and c["operation"] == op["name"]]
    assert gets and all(c["instance"] == "shop-pg" and c["status"] == 200 for c in gets)
    assert calls[-2]["verb"] == "list" and calls[-2]["instance"] == "shop-pg"
    assert calls[-1] == {**calls[-1], "verb": "get", "instance": None, "operation": "nope", "status": 404}
    assert all(since <= c["at"] <= time.time() for c in calls)
    admin(services, "POST", "reset")
    assert admin(services, "GET", "calls")["calls"] == []


def test_reset_restores_start_settings_and_forgets_operations(v1: Any, services: LocalServices) -> None:
    admin(services, "POST", "faults", {"min_duration": 5, "op_fail_rate": 0.5})
    op = start(v1, new_uri(), query="SELECT 1")
    after = admin(services, "POST", "reset")
    assert after["faults"]["min_duration"] == 0 and after["faults"]["seed"] == 7
    assert admin(services, "GET", "operations")["operations"] == []
    with pytest.raises(HttpError) as info:
        v1.operations().get(project=PROJECT, operation=op["name"]).execute()
    assert info.value.status_code == 404
    assert "error" not in export_and_wait(v1, new_uri(), query="SELECT 1")  # the slot was freed


def test_structured_ready_line_and_healthz(services: LocalServices) -> None:
    ready = services.log_lines()[0]
    assert ready["severity"] == "INFO" and ready["message"] == "sqladmin emulator ready"
    assert ready["port"] == services.emulator_port and ready["url"] == services.emulator_url
    assert admin(services, "GET", "healthz") == {"status": "ok"}
