"""Shared fixtures: one dedicated local stack for the whole test session (never the `make up` one).

The session stack lives in `.stack-test/` on port base 17300 (override: CDC_TEST_STACK_DIR,
CDC_TEST_PORT_BASE), so tests can run while a `make up` stack (17100, `.stack/`) is serving the demo.
Tests that need it are marked `@pytest.mark.stack` and take `stack` (shared state) or `clean_stack`
(emptied emulators, client env applied).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from local.stack import DEFAULT_CONFIG, REPO, Stack
from tests import checkov_env

TEST_STACK_DIR = Path(os.environ.get("CDC_TEST_STACK_DIR", REPO / ".stack-test"))
TEST_PORT_BASE = int(os.environ.get("CDC_TEST_PORT_BASE", "17300"))


def apply_stack_env(monkeypatch: pytest.MonkeyPatch, stack: Stack) -> dict[str, str]:
    """Point the Google client libraries and our config at the stack for one test."""
    env = stack.env()
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("CDC_CONFIG", raising=False)
    return env


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    """The test session's stack: started once (or reused if a crashed session left it running), torn down
    at the end of the session."""
    test_stack = Stack(TEST_STACK_DIR, TEST_PORT_BASE, DEFAULT_CONFIG)
    test_stack.up()
    try:
        yield test_stack
    finally:
        test_stack.down()


@pytest.fixture
def stack_env(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    return apply_stack_env(monkeypatch, stack)


@pytest.fixture
def clean_stack(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Stack:
    """The session stack with every emulator emptied (Firestore, bucket, Pub/Sub backlog, Admin API
    operations) and the client env applied."""
    stack.reset()
    apply_stack_env(monkeypatch, stack)
    return stack


CHECKOV_TEST = "tests/test_terraform_lint.py::test_checkov"
BREAKER_E2E = "tests/test_breaker_e2e.py::test_the_chain_pauses_the_instance_and_resumes_when_it_is_back"
FULL_ONLY = {
    # Dialects: the in-process property (tests/test_csvread.py, tests/test_packing_split.py) covers every dialect
    # with gzip or not; on the stack, the API's own dialect plain and the most foreign one gzipped stay in `make test`.
    "tests/test_formats_e2e.py::test_every_value_and_manifest_match_the_source[api-default-gzip]",
    "tests/test_formats_e2e.py::test_every_value_and_manifest_match_the_source[tab-apostrophe-plain]",
    "tests/test_formats_e2e.py::test_every_value_and_manifest_match_the_source[tab-apostrophe-gzip]",
    "tests/test_formats_e2e.py::test_every_value_and_manifest_match_the_source[pipe-backslash-plain]",
    # Instance-level refusals: every condition in-process (tests/test_breaker.py); 403 and 429 in the fault suite.
    BREAKER_E2E + "[maintenance_instances-not ready]",
    BREAKER_E2E + "[forbidden_instances-permission]",
    # Packing: the gzip dialect and the kill mid-split stay; `make bench` runs the benchmark in full.
    "tests/test_packing_e2e.py::test_a_packed_backfill_equals_one_export_per_window[default]",
    "tests/test_packing_e2e.py::test_the_packing_benchmark_runs_small",
    # Covered in-process (tests/test_verification.py, tests/test_priority.py); the repair of late rows stays.
    "tests/test_verification_e2e.py::test_a_live_window_goes_before_queued_verifications",
    "tests/test_verification_e2e.py::test_schema_drift_is_recorded_in_the_next_windows_manifest",
    # Ordering under a long backfill: in-process (tests/test_priority.py) and in the fault suite.
    "tests/test_pipeline_e2e.py::test_backfill_of_24_windows_does_not_starve_live_ticks",
    # Superseded by six instances at once (tests/test_parallel_e2e.py).
    "tests/test_pipeline_e2e.py::test_two_instances_run_in_parallel_but_each_is_serial",
    # Windows tiled exactly once across ticks: checked per (table, window) by the fault suite (test_reliability.py).
    "tests/test_pipeline_e2e.py::test_consecutive_ticks_tile_the_range_without_gaps_or_duplicates",
    # A task that cannot render fails alone: in-process (tests/test_chain.py), with and without a crash.
    "tests/test_bad_input.py::test_an_unrenderable_template_fails_its_task_only",
}
"""Stack tests that `make test` (CI) leaves to `make test-full`: each repeats a case another test in CI covers."""


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.nodeid in FULL_ONLY:
            item.add_marker(pytest.mark.full)


def pytest_collection_finish(session: pytest.Session) -> None:
    """Create checkov's virtualenv while the other tests run, when its test is to run."""
    if any(item.nodeid.startswith(CHECKOV_TEST) for item in session.items):
        checkov_env.start_installing()
