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
