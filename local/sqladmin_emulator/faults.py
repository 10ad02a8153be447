"""Fault injection knobs, set at start or through `POST /_emulator/faults`, and counters of what fired."""

from __future__ import annotations

import random
import re
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from local.sqladmin_emulator.api_errors import invalid


@dataclass(frozen=True)
class FaultSettings:
    """What to inject. Durations are seconds, rates are probabilities in [0, 1]."""

    min_duration: float = 0.0  # an operation stays RUNNING at least this long
    op_overhead_seconds: float = 0.0  # every export runs this much longer than its query (the fixed cost of one
    # operation); operations on one instance stay serial, so it adds up per operation
    duration_jitter: float = 0.0  # each export holds min_duration x uniform(1 - this, 1 + this), in [0, 1]
    error_rate: float = 0.0  # each API call answers HTTP 503 with this probability
    op_fail_rate: float = 0.0  # an export ends DONE with an error instead of exporting
    fail_uri_regex: str | None = None  # exports whose uri matches (re.search) always fail
    fail_after_write_regex: str | None = None  # these exports write their object, then end DONE with an error
    request_latency: float = 0.0  # added before every API call is handled
    seed: int | None = None  # seeds the random draws, for reproducible fault sequences
    stopped_instances: tuple[str, ...] = ()  # exports to these instances answer 400 "instance is not running"
    forbidden_instances: tuple[str, ...] = ()  # calls about these instances answer 403 notAuthorized (IAM)
    maintenance_instances: tuple[str, ...] = ()  # exports to these answer 409 invalidState (restart, maintenance)
    calls_per_minute: int = 0  # more API calls than this in any 60 s answer 429 rateLimitExceeded (0: no limit)
    hang_exports: int = 0  # the next N exports stay RUNNING until cancelled (an operation that never finishes)
    vanish_exports: int = 0  # the next N exports write their object, then their operation is forgotten (404)

    def merged(self, changes: dict[str, Any]) -> FaultSettings:
        """Return a copy with `changes` applied; raises a 400 ApiError naming a bad key or value."""
        known = {f.name for f in fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise invalid(f"unknown fault setting(s) {unknown}; known: {sorted(known)}")
        for key in (
            "min_duration",
            "request_latency",
            "error_rate",
            "op_fail_rate",
            "op_overhead_seconds",
            "duration_jitter",
        ):
            if key in changes:
                value = changes[key]
                if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                    raise invalid(f"{key} must be a non-negative number, got {value!r}")
                if key.endswith("_rate") and value > 1:
                    raise invalid(f"{key} is a probability in [0, 1], got {value!r}")
                if key == "duration_jitter" and value > 1:
                    raise invalid(f"{key} is a fraction of min_duration in [0, 1], got {value!r}")
        for key in ("fail_uri_regex", "fail_after_write_regex"):
            regex = changes.get(key)
            if regex is not None:
                try:
                    re.compile(regex)
                except (re.error, TypeError) as exc:
                    raise invalid(f"{key} {regex!r} is not a regular expression: {exc}") from None
        seed = changes.get("seed")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise invalid(f"seed must be an integer, got {seed!r}")
        for key in ("stopped_instances", "forbidden_instances", "maintenance_instances"):
            if key in changes:
                names = changes[key]
                if not isinstance(names, list | tuple) or not all(isinstance(n, str) for n in names):
                    raise invalid(f"{key} must be a list of instance names, got {names!r}")
                changes = {**changes, key: tuple(names)}
        for key in ("calls_per_minute", "hang_exports", "vanish_exports"):
            count = changes.get(key)
            if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 0):
                raise invalid(f"{key} must be a non-negative integer, got {count!r}")
        return replace(self, **changes)


class Faults:
    """Thread-safe holder of the current settings, the random source and the counters."""

    def __init__(self, initial: FaultSettings) -> None:
        self._initial = initial
        self._lock = threading.Lock()
        self._settings = initial
        self._rng = random.Random(initial.seed)
        self._counts: Counter[str] = Counter()
        self._calls: list[float] = []
        self._failed_after_write: set[str] = set()

    @property
    def settings(self) -> FaultSettings:
        with self._lock:
            return self._settings

    def update(self, changes: dict[str, Any]) -> FaultSettings:
        with self._lock:
            self._settings = self._settings.merged(changes)
            if "seed" in changes:
                self._rng = random.Random(self._settings.seed)
            return self._settings

    def reset(self) -> None:
        """Back to the settings given at start, counters at zero."""
        with self._lock:
            self._settings = self._initial
            self._rng = random.Random(self._initial.seed)
            self._counts.clear()
            self._calls.clear()
            self._failed_after_write.clear()

    def counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    def draw_http_error(self) -> bool:
        """True when this API call must answer 503 (counted as `http_503`)."""
        with self._lock:
            fire = self._settings.error_rate > 0 and self._rng.random() < self._settings.error_rate
            if fire:
                self._counts["http_503"] += 1
            return fire

    def refuse(self, instance: str | None, exporting: bool) -> str | None:
        """Which production refusal this call gets, if any (`rate_limited`, `forbidden`, `stopped`, `maintenance`);
        counted."""
        with self._lock:
            settings, now = self._settings, time.monotonic()
            if settings.calls_per_minute:
                self._calls = [t for t in self._calls if now - t < 60]
                if len(self._calls) >= settings.calls_per_minute:
                    self._counts["http_429"] += 1
                    return "rate_limited"
                self._calls.append(now)
            if instance in settings.forbidden_instances:
                self._counts["http_403"] += 1
                return "forbidden"
            if exporting and instance in settings.stopped_instances:
                self._counts["http_400_not_running"] += 1
                return "stopped"
            if exporting and instance in settings.maintenance_instances:
                self._counts["http_409_invalid_state"] += 1
                return "maintenance"
            return None

    def draw_duration(self) -> float:
        """How long this export holds the instance: `min_duration`, spread by `duration_jitter` (a real export's
        time is its fixed overhead plus a share that varies from run to run)."""
        with self._lock:
            base, jitter = self._settings.min_duration, self._settings.duration_jitter
            return base * self._rng.uniform(1 - jitter, 1 + jitter) if jitter else base

    def draw_lost(self) -> str | None:
        """Whether this new export is lost to its caller: `hang` (never finishes until cancelled) or `vanish`
        (finishes, then its name stops resolving); uses up one of `hang_exports` / `vanish_exports`; counted."""
        with self._lock:
            for kind, key in (("hang", "hang_exports"), ("vanish", "vanish_exports")):
                left = getattr(self._settings, key)
                if left > 0:
                    self._settings = replace(self._settings, **{key: left - 1})
                    self._counts[f"operation_{kind}"] += 1
                    return kind
            return None

    def draw_failure_after_write(self, uri: str) -> bool:
        """True when this export must fail after its object was written (`fail_after_write_regex`), once per uri:
        a retry to the same uri would be refused as an overwrite, which the worker must never attempt."""
        with self._lock:
            regex = self._settings.fail_after_write_regex
            if regex and re.search(regex, uri) and uri not in self._failed_after_write:
                self._failed_after_write.add(uri)
                self._counts["fail_after_write"] += 1
                return True
            return False

    def draw_operation_failure(self, uri: str) -> str | None:
        """Why this export must fail (`fail_uri_regex` or `op_fail_rate`), or None; counted by kind."""
        with self._lock:
            regex = self._settings.fail_uri_regex
            if regex and re.search(regex, uri):
                self._counts["uri_fail"] += 1
                return f"uri matches fail_uri_regex {regex!r}"
            rate = self._settings.op_fail_rate
            if rate > 0 and self._rng.random() < rate:
                self._counts["op_fail"] += 1
                return f"op_fail_rate {rate}"
            return None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self.settings)
