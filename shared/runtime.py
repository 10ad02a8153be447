"""The one boundary between Pub/Sub deliveries and the pipeline: parse, dispatch, map errors to outcomes.

- PermanentError (malformed message, bad template...): logged at ERROR and acknowledged (never retried).
- RetryableError (busy, transient, stale lease): logged at WARNING and raised, so Pub/Sub redelivers
  with backoff and, past the delivery limit, parks the message in the dead-letter topic.
- Anything unexpected: logged at ERROR with its traceback and raised (same path: redelivery, then
  dead letter), so nothing is silently lost.

One process serves several requests at once (the worker is deployed with a request concurrency above 1, and
functions-framework runs each request on a thread of its own), so the per-process objects are built exactly
once under a lock, and everything a request changes lives in that request's own objects.
"""

from __future__ import annotations

import functools
import threading
import traceback
from collections.abc import Callable
from typing import Any, TypeVar

from shared.adapters.clients import Clients
from shared.app.planner import plan_backfill, plan_tick, plan_verify
from shared.app.worker import run_work
from shared.core import logs
from shared.core.config import Config
from shared.core.environment import load_config, templates_root
from shared.core.errors import ConfigError, MessageError, PermanentError, RetryableError, context
from shared.core.messages import Backfill, Message, Tick, Verify, Work, parse_event
from shared.core.templates import Templates

T = TypeVar("T")


def once(build: Callable[[], T]) -> Callable[[], T]:
    """`build()` called at most once per process, even by concurrent first requests (functools.cache may call
    it twice when a second thread arrives before the first call returned: two sets of Google clients)."""
    lock = threading.Lock()
    built: list[T] = []

    @functools.wraps(build)
    def get() -> T:
        if not built:
            with lock:
                if not built:
                    built.append(build())
        return built[0]

    return get


@once
def config() -> Config:
    """The validated configuration, loaded once per process (cold start)."""
    try:
        loaded = load_config()
    except ConfigError as exc:
        logs.log("CRITICAL", "invalid configuration", path=exc.path, value=repr(exc.value), error=str(exc))
        raise
    return loaded


@once
def clients() -> Clients:
    return Clients(config())


@once
def templates() -> Templates:
    return Templates(templates_root())


def _event_id(cloud_event: Any) -> str | None:
    try:
        return cloud_event["id"]
    except (KeyError, TypeError):
        return None


def handle_ticks(cloud_event: Any) -> None:
    """Planner entry: ticks and backfill requests from the ticks topic."""

    def dispatch(message: Message) -> None:
        if isinstance(message, Tick):
            plan_tick(message, clients())
        elif isinstance(message, Backfill):
            plan_backfill(message, clients())
        elif isinstance(message, Verify):
            plan_verify(message, clients())
        else:
            raise MessageError(
                "a work message arrived on the ticks topic",
                message_id=message.message_id,
                hint="publish work messages to the work topic",
            )

    _handle(cloud_event, "planner", dispatch)


def handle_work(cloud_event: Any) -> None:
    """Worker entry: `work` messages from the work topic."""

    def dispatch(message: Message) -> None:
        if not isinstance(message, Work):
            raise MessageError(
                f"a {type(message).__name__.lower()} message arrived on the work topic",
                message_id=message.message_id,
                hint="publish ticks, backfills and verifications to the ticks topic",
            )
        run_work(message, clients(), templates())

    _handle(cloud_event, "worker", dispatch)


def _handle(cloud_event: Any, function: str, dispatch: Any) -> None:
    event_id = _event_id(cloud_event)
    try:
        message = parse_event(cloud_event, config())
        logs.info(
            "message received",
            function=function,
            message_id=message.message_id,
            kind=type(message).__name__.lower(),
        )
        dispatch(message)
    except PermanentError as exc:
        logs.error(
            "message rejected; acknowledged without retry",
            function=function,
            message_id=event_id,
            error=str(exc),
            error_type=type(exc).__name__,
            **context(exc),
        )
    except RetryableError as exc:
        logs.warning(
            "retryable failure; Pub/Sub will redeliver",
            function=function,
            message_id=event_id,
            error=str(exc),
            error_type=type(exc).__name__,
            **context(exc),
        )
        raise
    except Exception as exc:
        logs.error(
            "unexpected failure; Pub/Sub will redeliver",
            function=function,
            message_id=event_id,
            error=f"{type(exc).__name__}: {exc}",
            traceback=traceback.format_exc(),
        )
        raise
