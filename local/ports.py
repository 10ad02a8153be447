"""Port layout of a local stack: one base port, one fixed offset per service, all on 127.0.0.1."""

from __future__ import annotations

import socket
import time
from dataclasses import asdict, dataclass

HOST = "127.0.0.1"
DEFAULT_PORT_BASE = 17100

# Offsets from the base port. Fixed, so that two stacks with different bases never overlap
# as long as their bases are at least len(OFFSETS) apart.
OFFSETS: dict[str, int] = {
    "firestore": 0,
    "pubsub": 1,
    "gcs": 2,
    "postgres": 3,
    "sqladmin": 4,
    "planner": 5,
    "worker": 6,
}


@dataclass(frozen=True)
class PortLayout:
    firestore: int
    pubsub: int
    gcs: int
    postgres: int
    sqladmin: int
    planner: int
    worker: int

    @classmethod
    def from_base(cls, base: int) -> PortLayout:
        if not 1024 <= base <= 65535 - max(OFFSETS.values()):
            raise ValueError(f"port base {base} is out of range (1024..{65535 - max(OFFSETS.values())})")
        return cls(**{name: base + offset for name, offset in OFFSETS.items()})

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def port_free(port: int, host: str = HOST) -> bool:
    """True when nothing listens on host:port (SO_REUSEADDR so TIME_WAIT sockets do not count)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def wait_ports_free(ports: list[int], timeout: float = 5.0) -> list[int]:
    """Wait until every port is free; return the ones still bound when the timeout ends."""
    deadline = time.monotonic() + timeout
    busy = [p for p in ports if not port_free(p)]
    while busy and time.monotonic() < deadline:
        time.sleep(0.05)
        busy = [p for p in busy if not port_free(p)]
    return busy
