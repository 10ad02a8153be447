"""Fail fast: check within seconds that Firestore and Pub/Sub can be reached before an operator command calls them.

Without this, a closed emulator port or an unreachable Google API makes the client libraries retry for a minute
or more (their default retry deadlines) before anything is printed. The check is per service:

- emulator variable set (FIRESTORE_EMULATOR_HOST, PUBSUB_EMULATOR_HOST, `host:port`): an HTTP GET of `/`, which
  both emulators answer with `Ok` (measured, docs/LOCAL_STACK); a refused or silent port fails the check;
- no emulator variable: Application Default Credentials must exist (`google.auth.default()`, local only), and
  the API host must accept a TCP connection on 443.

Each check runs in a daemon thread bounded by `timeout` seconds, so a DNS lookup that hangs cannot hold the
command either. Only the reachability is proven: permissions are the real call's business (exit 4 as well).
"""

from __future__ import annotations

import http.client
import socket
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import google.auth
from google.auth.exceptions import DefaultCredentialsError

from shared.core.errors import ServiceUnreachable

LOCAL_HINT = (
    "start the local stack with `make up` and load its variables (set -a; . .stack/env; set +a), "
    "or unset the emulator variables to use Google Cloud"
)
CLOUD_HINT = (
    "check the network and Application Default Credentials (gcloud auth application-default login); "
    "for the local stack run `make up` and load its emulator variables (set -a; . .stack/env; set +a)"
)


@dataclass(frozen=True)
class Service:
    name: str
    emulator_variable: str
    api_host: str


FIRESTORE = Service("Firestore", "FIRESTORE_EMULATOR_HOST", "firestore.googleapis.com")
PUBSUB = Service("Pub/Sub", "PUBSUB_EMULATOR_HOST", "pubsub.googleapis.com")


def _bounded(check: Callable[[], None], timeout: float) -> BaseException | None:
    """Run `check` in a daemon thread; its exception, a TimeoutError when it overran, or None."""
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            check()
        except BaseException as e:  # reported to the caller as the check's outcome
            outcome.append(e)
        else:
            outcome.append(None)

    thread = threading.Thread(target=run, name="cdc-probe", daemon=True)
    thread.start()
    thread.join(timeout)
    if not outcome:
        return TimeoutError(f"no answer within {timeout:g}s")
    return outcome[0]


def _emulator_answers(address: str, timeout: float) -> None:
    host, _, port = address.rpartition(":")
    connection = http.client.HTTPConnection(host or address, int(port) if port.isdigit() else 80, timeout=timeout)
    try:
        connection.request("GET", "/")
        response = connection.getresponse()
        body = response.read(64)
    finally:
        connection.close()
    if response.status != 200:
        raise ConnectionError(f"answered HTTP {response.status} {body[:40]!r}, not an emulator's Ok")


def _describe(error: BaseException) -> str:
    if isinstance(error, ConnectionRefusedError):
        return "refused the connection (nothing listens there)"
    if isinstance(error, TimeoutError | socket.timeout):
        return f"did not answer in time ({error})"
    if isinstance(error, socket.gaierror):
        return f"cannot be resolved ({error.strerror})"
    return f"cannot be reached ({type(error).__name__}: {error})"


def check_emulator(service: Service, address: str, timeout: float) -> None:
    error = _bounded(lambda: _emulator_answers(address, timeout), timeout)
    if error is not None:
        raise ServiceUnreachable(
            f"the {service.name} emulator", f"{address} ({service.emulator_variable})", _describe(error),
            hint=LOCAL_HINT,
        )  # fmt: skip


def check_cloud(service: Service, timeout: float) -> None:
    """Credentials first (looking for them may probe the GCE metadata server: bounded too), then the API host."""
    error = _bounded(google.auth.default, timeout)
    if error is not None:
        problem = "has no Application Default Credentials to call it with"
        if not isinstance(error, DefaultCredentialsError):
            problem += f" ({_describe(error)})"
        raise ServiceUnreachable(service.name, service.api_host, problem, hint=CLOUD_HINT)
    error = _bounded(lambda: socket.create_connection((service.api_host, 443), timeout=timeout).close(), timeout)
    if error is not None:
        raise ServiceUnreachable(service.name, f"{service.api_host}:443", _describe(error), hint=CLOUD_HINT)


def check_reachable(services: Sequence[Service], environ: Mapping[str, str], *, timeout: float = 3.0) -> None:
    """Raise ServiceUnreachable (exit 4) naming the first service that cannot be reached, and what to do."""
    for service in services:
        address = environ.get(service.emulator_variable)
        if address:
            check_emulator(service, address, timeout)
        else:
            check_cloud(service, timeout)
