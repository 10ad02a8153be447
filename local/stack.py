"""The local stack: real Google emulators, fake-gcs-server, a throwaway PostgreSQL, the Cloud SQL Admin API
emulator and functions-framework serving the planner and the worker, wired like production.

    python -m local.stack up|down|status|env [--state-dir DIR] [--port-base N] [--config PATH]

Everything lives under one state folder (default `.stack/`, ignored by git): `stack.json` (ports, PIDs,
process groups, endpoints, client env), `env` (shell exports), `logs/<service>.log`, and the PostgreSQL
cluster (`pg/`). The postgres user must be able to traverse every parent folder of the cluster; when it
cannot, the cluster goes to `/tmp/cdc-stack-pg-<hash>/` instead and `stack.json` records where.

`up` reuses services that are still running and healthy (same PID, command line and port), so running
it twice is harmless. `down` stops exactly the process groups recorded in `stack.json` and deletes the
PostgreSQL cluster (it is throwaway: every cold `up` starts from empty emulators and an empty database).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import pwd
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from local import processes
from local.httpcall import HttpFailure, answers, call
from local.ports import DEFAULT_PORT_BASE, HOST, PortLayout, port_free, wait_ports_free
from local.prereqs import MissingPrerequisite, Prerequisites, find_prerequisites
from local.pubsub_wiring import PubSubAdmin, PushSubscription, push_endpoint, shard_subscription
from shared.core.sharding import work_shard_topics

REPO = Path(__file__).resolve().parent.parent
DEFAULT_STATE_DIR = REPO / ".stack"
DEFAULT_CONFIG = REPO / "local" / "demo_config.json"
FUNCTIONS_SOURCE = REPO / "functions" / "main.py"
# Served instead when CDC_FAILPOINTS is set: the same functions with the crash-test failpoints hooked in.
FAILPOINTS_SOURCE = REPO / "local" / "functions_entry.py"
SQLADMIN_PACKAGE = REPO / "local" / "sqladmin_emulator" / "__main__.py"

DEFAULT_PROJECT = "cdc-local"
DEFAULT_BUCKET = "cdc-exports"
DEAD_LETTER_TOPIC = "cdc-dead-letter"
DEAD_LETTER_KEEP = "cdc-dead-letter-keep"
PLANNER_SUBSCRIPTION = "cdc-ticks-planner"
WORKER_SUBSCRIPTION = "cdc-work-worker"

# Start order (also the order status lists them in); down stops them in reverse.
SERVICES = ("firestore", "pubsub", "gcs", "postgres", "sqladmin", "planner", "worker")
FUNCTIONS = ("planner", "worker")
# Signal that shuts each service down quickly: PostgreSQL's "fast" shutdown is SIGINT (SIGTERM waits
# for clients), gunicorn's quick shutdown is SIGINT (SIGTERM waits for in-flight requests).
STOP_SIGNALS = {"postgres": signal.SIGINT, "planner": signal.SIGINT, "worker": signal.SIGINT}
# Client variables the stack sets; never inherited from the caller's environment into a service.
CLIENT_VARS = (
    "FIRESTORE_EMULATOR_HOST",
    "PUBSUB_EMULATOR_HOST",
    "STORAGE_EMULATOR_HOST",
    "CDC_SQLADMIN_ENDPOINT",
    "CDC_CONFIG_FILE",
    "CDC_CONFIG",
    "GOOGLE_CLOUD_PROJECT",
)
# Requests one worker process serves at once: Terraform's worker_concurrency default, as the same variable
# (THREADS: functions-framework's gunicorn threads) gives it in production. The worker runs the chains of several
# Cloud SQL instances at once in one process, as a deployed worker instance does.
WORKER_THREADS = 8
HEALTH_TIMEOUT_SECONDS = 30.0
# Measured on 2 cores: C1 only and a small initial heap start both emulators in ~1.1 s instead of ~1.6 s and
# halve their RSS (~90 MB each instead of ~150); emulator workloads never need C2's peak speed.
JAVA_OPTS = (
    "-Duser.language=en", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-Xms16m",
    *os.environ.get("CDC_STACK_JAVA_OPTS", "-Xmx1g").split(),
)  # fmt: skip


class StackError(RuntimeError):
    """The stack could not be started, found or changed."""


@dataclass
class ServiceRecord:
    name: str
    pid: int
    pgid: int
    port: int
    cmd: list[str]
    log: str
    started_at: float


@dataclass
class StackInfo:
    """What `up` started, as written to `<state>/stack.json`."""

    state_dir: str
    project: str
    bucket: str
    config_path: str
    port_base: int
    ports: dict[str, int]
    endpoints: dict[str, str]
    env: dict[str, str]
    pg_dir: str
    services: dict[str, ServiceRecord]
    functions_config_path: str
    functions_extra_env: dict[str, str] = field(default_factory=dict)
    started: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    missing: dict[str, str] = field(default_factory=dict)
    startup_seconds: float = 0.0
    rss_bytes: int = 0
    pss_bytes: int = 0

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> StackInfo:
        services = {name: ServiceRecord(**rec) for name, rec in doc.pop("services").items()}
        return cls(services=services, **doc)


def _read_config(path: Path) -> dict[str, Any]:
    """Only the few keys the stack needs; full validation is shared.core.config's job (and the functions')."""
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise StackError(f"config {path} is not valid JSON: {exc}") from exc


def _traversable_by(path: Path, uid: int, gids: set[int]) -> bool:
    """True when a user (uid, groups) may search every directory from / down to path (which must exist)."""
    for directory in [path, *path.parents]:
        st = directory.stat()
        if st.st_uid == uid:
            ok = st.st_mode & 0o100
        elif st.st_gid in gids:
            ok = st.st_mode & 0o010
        else:
            ok = st.st_mode & 0o001
        if not ok:
            return False
    return True


def _tail(path: str, lines: int = 20) -> str:
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


class Stack:
    """One local stack: a state folder, a port base and the config whose project and bucket it serves."""

    def __init__(
        self,
        state_dir: str | Path | None = None,
        port_base: int | None = None,
        config_path: str | Path | None = None,
        *,
        functions: bool | None = None,
    ) -> None:
        """functions=False (or env CDC_STACK_FUNCTIONS=0) leaves planner and worker out even when
        functions/main.py exists; restart_functions() still starts them on demand."""
        self.state_dir = Path(state_dir or os.environ.get("CDC_STACK_DIR") or DEFAULT_STATE_DIR).resolve()
        self.info_path = self.state_dir / "stack.json"
        self.logs_dir = self.state_dir / "logs"
        # A running stack's own port base and config win over the defaults (not over explicit values),
        # so `status`, `env` and `down` find the stack that `up --port-base N` started.
        recorded = json.loads(self.info_path.read_text()) if self.info_path.is_file() else {}
        self.port_base = int(
            port_base or os.environ.get("CDC_STACK_PORT_BASE") or recorded.get("port_base") or DEFAULT_PORT_BASE
        )
        self.ports = PortLayout.from_base(self.port_base)
        self.config_path = Path(
            config_path or os.environ.get("CDC_STACK_CONFIG") or recorded.get("config_path") or DEFAULT_CONFIG
        ).resolve()
        self.with_functions = os.environ.get("CDC_STACK_FUNCTIONS", "1") != "0" if functions is None else functions
        config = _read_config(self.config_path)
        self.project: str = config.get("project", DEFAULT_PROJECT)
        self.bucket: str = config.get("bucket", DEFAULT_BUCKET)
        self.firestore_database: str = config.get("firestore", {}).get("database", "(default)")
        topics = config.get("topics", {})
        self.ticks_topic: str = topics.get("ticks", "cdc-ticks")
        self.work_topic: str = topics.get("work", "cdc-work")

    # ----- addresses -------------------------------------------------------------------------------

    def _endpoints(self) -> dict[str, str]:
        p = self.ports
        return {
            "firestore": f"{HOST}:{p.firestore}",
            "pubsub": f"{HOST}:{p.pubsub}",
            "gcs": f"http://{HOST}:{p.gcs}",
            "postgres": self.pg_dsn("postgres"),
            "sqladmin": f"http://{HOST}:{p.sqladmin}/",
            "planner": f"http://{HOST}:{p.planner}/",
            "worker": f"http://{HOST}:{p.worker}/",
        }

    def env(self) -> dict[str, str]:
        """Environment variables a client (test, demo, `cdc`, the functions) needs to use this stack."""
        return {
            "FIRESTORE_EMULATOR_HOST": f"{HOST}:{self.ports.firestore}",
            "PUBSUB_EMULATOR_HOST": f"{HOST}:{self.ports.pubsub}",
            "STORAGE_EMULATOR_HOST": f"http://{HOST}:{self.ports.gcs}",
            "CDC_SQLADMIN_ENDPOINT": f"http://{HOST}:{self.ports.sqladmin}/",
            "CDC_CONFIG_FILE": str(self.config_path),
            "GOOGLE_CLOUD_PROJECT": self.project,
        }

    def pg_dsn(self, database: str = "postgres") -> str:
        return f"host={HOST} port={self.ports.postgres} user=postgres dbname={database}"

    def _pg_dir(self) -> Path:
        """Where the cluster lives: in the state folder if the postgres user can reach it, else under /tmp."""
        preferred = self.state_dir / "pg"
        if os.geteuid() != 0:
            return preferred
        user = self._pg_user()
        gids = {user.pw_gid, *os.getgrouplist(user.pw_name, user.pw_gid)}
        if _traversable_by(self.state_dir, user.pw_uid, gids):
            return preferred
        digest = hashlib.sha256(str(self.state_dir).encode()).hexdigest()[:10]
        return Path(f"/tmp/cdc-stack-pg-{digest}")

    @staticmethod
    def _pg_user() -> pwd.struct_passwd:
        try:
            return pwd.getpwnam("postgres")
        except KeyError:
            raise MissingPrerequisite("the postgres system user", "postgresql", "getpwnam('postgres')") from None

    # ----- state file ------------------------------------------------------------------------------

    def _load(self) -> StackInfo | None:
        if not self.info_path.is_file():
            return None
        return StackInfo.from_json(json.loads(self.info_path.read_text()))

    def _save(self, info: StackInfo) -> None:
        tmp = self.info_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(info), indent=2) + "\n")
        tmp.replace(self.info_path)
        exports = "".join(f"export {k}={shlex.quote(v)}\n" for k, v in sorted(info.env.items()))
        (self.state_dir / "env").write_text(exports)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Serialise up/down/reset/restart on one state folder (two `make up` at once would race)."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with open(self.state_dir / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def info(self) -> StackInfo:
        info = self._load()
        if info is None:
            raise StackError(f"no stack is running in {self.state_dir} (run `make up`)")
        return info

    # ----- services --------------------------------------------------------------------------------

    def _base_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in CLIENT_VARS}
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def _functions_env(self, config_path: Path, extra_env: Mapping[str, str]) -> dict[str, str]:
        env = {
            **self._base_env(), **self.env(), "CDC_CONFIG_FILE": str(config_path), "THREADS": str(WORKER_THREADS),
            **extra_env,
        }  # fmt: skip
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
        return env

    def _command(self, name: str, pre: Prerequisites, pg_dir: Path, env: Mapping[str, str]) -> list[str]:
        p = self.ports
        if name == "firestore":
            return [
                pre.java, *JAVA_OPTS, "-cp", pre.firestore_jar,
                "com.google.cloud.datastore.emulator.firestore.CloudFirestore", "start",
                f"--host={HOST}", f"--port={p.firestore}", "--database-mode=firestore-native",
            ]  # fmt: skip
        if name == "pubsub":
            return [pre.java, *JAVA_OPTS, "-jar", pre.pubsub_jar,
                    f"--host={HOST}", f"--port={p.pubsub}"]  # fmt: skip
        if name == "gcs":
            return [
                pre.fake_gcs, "-scheme", "http", "-backend", "memory", "-host", HOST, "-port", str(p.gcs),
                "-external-url", f"http://{HOST}:{p.gcs}", "-log-level", "warn",
            ]  # fmt: skip
        if name == "postgres":
            return [
                str(pre.pg_bin / "postgres"), "-D", str(pg_dir / "data"), "-p", str(p.postgres),
                "-k", str(pg_dir), "-c", f"listen_addresses={HOST}", "-c", "fsync=off",
                "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
            ]  # fmt: skip
        if name == "sqladmin":
            return [
                sys.executable, "-m", "local.sqladmin_emulator", "--host", HOST, "--port", str(p.sqladmin),
                "--pg", f"host={HOST} port={p.postgres} user=postgres", "--storage-endpoint",
                f"http://{HOST}:{p.gcs}",
            ]  # fmt: skip
        port = p.planner if name == "planner" else p.worker
        source = FAILPOINTS_SOURCE if env.get("CDC_FAILPOINTS") else FUNCTIONS_SOURCE
        return [
            sys.executable, "-m", "functions_framework", "--source", str(source), "--target", name,
            "--signature-type", "cloudevent", "--host", HOST, "--port", str(port),
        ]  # fmt: skip

    def _healthy(self, name: str) -> bool:
        port = getattr(self.ports, name)
        if name in ("firestore", "pubsub"):
            return answers(f"http://{HOST}:{port}/", expect="Ok")
        if name == "gcs":
            return answers(f"http://{HOST}:{port}/_internal/healthcheck", expect="")
        if name == "postgres":
            return self._pg_ready()
        if name == "sqladmin":
            try:
                return call("GET", f"http://{HOST}:{port}/_emulator/healthz", timeout=1.0)[0] == 200
            except (HttpFailure, OSError, ValueError):
                return False
        return answers(f"http://{HOST}:{port}/")  # functions-framework: any answer means the app loaded

    def _pg_ready(self) -> bool:
        import psycopg  # slow import, needed only once PostgreSQL is up

        try:
            with psycopg.connect(self.pg_dsn("postgres"), connect_timeout=1):
                return True
        except psycopg.OperationalError:
            return False

    def _reusable(self, rec: ServiceRecord) -> bool:
        return (
            rec.port == getattr(self.ports, rec.name)
            and processes.alive(rec.pid)
            and processes.cmdline(rec.pid) == rec.cmd
            and self._healthy(rec.name)
        )

    def _stop(self, rec: ServiceRecord) -> None:
        """Stop one recorded service's process group, unless its PID now belongs to someone else."""
        if processes.alive(rec.pid) and processes.cmdline(rec.pid) != rec.cmd:
            return
        processes.stop_group(rec.pgid, STOP_SIGNALS.get(rec.name, signal.SIGTERM))

    def _init_pg(self, pre: Prerequisites, pg_dir: Path) -> None:
        if (pg_dir / "data" / "PG_VERSION").is_file():
            return
        pg_dir.mkdir(parents=True, exist_ok=True)
        user = None
        if os.geteuid() == 0:
            user = "postgres"
            pg_user = self._pg_user()
            os.chown(pg_dir, pg_user.pw_uid, pg_user.pw_gid)
        pg_dir.chmod(0o700)
        result = subprocess.run(
            [str(pre.pg_bin / "initdb"), "-D", str(pg_dir / "data"), "-U", "postgres", "--auth=trust",
             "-E", "UTF8", "--locale=C.UTF-8", "--no-sync", "--no-instructions"],
            user=user, group=user, extra_groups=[] if user else None, cwd=pg_dir,
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        (self.logs_dir / "initdb.log").write_text(result.stdout + result.stderr)
        if result.returncode != 0:
            raise StackError(f"initdb failed ({result.returncode}):\n{result.stdout}{result.stderr}")

    def _spawn(self, name: str, pre: Prerequisites, pg_dir: Path, env: Mapping[str, str]) -> ServiceRecord:
        port = getattr(self.ports, name)
        if not port_free(port):
            raise StackError(
                f"port {port} for {name} is already in use by another process; "
                f"choose another base with --port-base or CDC_STACK_PORT_BASE (now {self.port_base})"
            )
        cmd = self._command(name, pre, pg_dir, env)
        log = self.logs_dir / f"{name}.log"
        user = "postgres" if name == "postgres" and os.geteuid() == 0 else None
        cwd = pg_dir if name == "postgres" else (REPO if name not in ("firestore", "pubsub") else self.state_dir)
        spawned = processes.spawn(cmd, log_path=log, env=env, cwd=cwd, user=user)
        return ServiceRecord(name, spawned.pid, spawned.pgid, port, cmd, str(log), time.time())

    def _wait_healthy(self, records: Mapping[str, ServiceRecord], names: list[str]) -> None:
        pending = list(names)
        deadline = time.monotonic() + HEALTH_TIMEOUT_SECONDS
        while pending:
            for name in list(pending):
                rec = records[name]
                if not processes.alive(rec.pid):
                    raise StackError(f"{name} exited during start-up; last lines of {rec.log}:\n{_tail(rec.log)}")
                if self._healthy(name):
                    pending.remove(name)
            if pending and time.monotonic() > deadline:
                logs = "\n".join(f"--- {n}: {records[n].log}\n{_tail(records[n].log)}" for n in pending)
                raise StackError(f"not healthy after {HEALTH_TIMEOUT_SECONDS:.0f} s: {pending}\n{logs}")
            if pending:
                time.sleep(0.05)

    def _wanted(self) -> tuple[list[str], dict[str, str]]:
        """Services to run, and the ones skipped because their code does not exist yet (with why)."""
        missing = {}
        if not SQLADMIN_PACKAGE.is_file():
            missing["sqladmin"] = f"{SQLADMIN_PACKAGE.relative_to(REPO)} does not exist yet"
        if not FUNCTIONS_SOURCE.is_file():
            missing["planner"] = missing["worker"] = f"{FUNCTIONS_SOURCE.relative_to(REPO)} does not exist yet"
        elif not self.with_functions:
            missing["planner"] = missing["worker"] = "left out (CDC_STACK_FUNCTIONS=0)"
        return [s for s in SERVICES if s not in missing], missing

    # ----- wiring ----------------------------------------------------------------------------------

    def _pubsub(self) -> PubSubAdmin:
        return PubSubAdmin(f"{HOST}:{self.ports.pubsub}", self.project)

    def _wire(self, functions_config: Path) -> None:
        """Topics, subscriptions and the bucket; idempotent."""
        admin = self._pubsub()
        for topic in (self.ticks_topic, self.work_topic, DEAD_LETTER_TOPIC):
            admin.ensure_topic(topic)
        admin.ensure_pull_subscription(DEAD_LETTER_KEEP, DEAD_LETTER_TOPIC)
        for name, topic, port in (
            (PLANNER_SUBSCRIPTION, self.ticks_topic, self.ports.planner),
            (WORKER_SUBSCRIPTION, self.work_topic, self.ports.worker),
        ):
            admin.ensure_push_subscription(
                PushSubscription(name, topic, push_endpoint(port, self.project, topic), DEAD_LETTER_TOPIC)
            )
        self._wire_work_shards(functions_config)
        self._ensure_bucket()

    def _wire_work_shards(self, functions_config: Path) -> None:
        """One work topic per Cloud SQL instance of the functions' config, each pushed to the worker by a
        subscription of its own (shared/core/sharding.py: the emulator pushes 2 requests at a time per
        subscription, so one subscription for every instance would queue their chains)."""
        admin = self._pubsub()
        instances = [s.get("instance", "") for s in _read_config(functions_config).get("sources", [])]
        for topic in work_shard_topics(self.work_topic, filter(None, instances)).values():
            admin.ensure_topic(topic)
            admin.ensure_push_subscription(
                PushSubscription(
                    shard_subscription(topic), topic, push_endpoint(self.ports.worker, self.project, topic),
                    DEAD_LETTER_TOPIC,
                )
            )  # fmt: skip

    def _ensure_bucket(self) -> None:
        base = f"http://{HOST}:{self.ports.gcs}/storage/v1/b"
        try:
            call("POST", f"{base}?project={self.project}", {"name": self.bucket})
        except HttpFailure as exc:
            if exc.status != 409:
                raise

    # ----- lifecycle -------------------------------------------------------------------------------

    def up(self) -> StackInfo:
        """Start (or reuse) every service, wait until all are healthy, wire them, record the stack."""
        t0 = time.monotonic()
        pre = find_prerequisites()
        with self._locked():
            self.logs_dir.mkdir(parents=True, exist_ok=True)
            previous = self._load()
            pg_dir = Path(previous.pg_dir) if previous else self._pg_dir()
            wanted, missing = self._wanted()
            functions_config = Path(previous.functions_config_path) if previous else self.config_path
            functions_extra = previous.functions_extra_env if previous else {}
            info = StackInfo(
                state_dir=str(self.state_dir), project=self.project, bucket=self.bucket,
                config_path=str(self.config_path), port_base=self.port_base, ports=self.ports.as_dict(),
                endpoints=self._endpoints(), env=self.env(), pg_dir=str(pg_dir), services={},
                functions_config_path=str(functions_config), functions_extra_env=functions_extra,
                missing=missing,
            )  # fmt: skip
            try:
                self._start(info, previous, wanted, pre, pg_dir)
                self._wait_healthy(info.services, info.started)
                self._wire(functions_config)
            except BaseException:
                self._save(info)
                self._down_locked()
                raise
            info.startup_seconds = round(time.monotonic() - t0, 3)
            roots = [r.pid for r in info.services.values()]
            info.rss_bytes = processes.tree_rss_bytes(roots)
            info.pss_bytes = processes.tree_pss_bytes(roots)
            self._save(info)
            return info

    def _start(
        self, info: StackInfo, previous: StackInfo | None, wanted: list[str], pre: Prerequisites, pg_dir: Path
    ) -> None:
        old = previous.services if previous else {}
        for name, rec in old.items():
            if name in wanted and self._reusable(rec):
                info.services[name] = rec
                info.reused.append(name)
            else:
                self._stop(rec)
        base_env = self._base_env()
        functions_env = self._functions_env(Path(info.functions_config_path), info.functions_extra_env)
        for name in wanted:
            if name in info.services:
                continue
            if name == "postgres":
                self._init_pg(pre, pg_dir)
            env = functions_env if name in FUNCTIONS else {**base_env, **self.env()}
            info.services[name] = self._spawn(name, pre, pg_dir, env)
            info.started.append(name)
            self._save(info)  # so that `down` finds it even if start-up fails later

    def down(self) -> None:
        """Stop every process group the stack recorded, free its ports, delete the throwaway cluster."""
        with self._locked():
            self._down_locked()

    def _down_locked(self) -> None:
        info = self._load()
        if info is None:
            return
        for name in reversed(SERVICES):
            if name in info.services:
                self._stop(info.services[name])
        busy = wait_ports_free([rec.port for rec in info.services.values()])
        shutil.rmtree(info.pg_dir, ignore_errors=True)
        self.info_path.unlink(missing_ok=True)
        (self.state_dir / "env").unlink(missing_ok=True)
        if busy:
            raise StackError(f"stopped the stack but ports {busy} are still bound by another process")

    def status(self) -> dict[str, dict[str, Any]]:
        """Per service: pid, port, alive, healthy (plus `missing` for services whose code is absent)."""
        info = self._load()
        if info is None:
            return {}
        result: dict[str, dict[str, Any]] = {}
        for name in SERVICES:
            rec = info.services.get(name)
            if rec is None:
                if name in info.missing:
                    result[name] = {"healthy": True, "alive": False, "missing": info.missing[name]}
                continue
            alive = processes.alive(rec.pid) and processes.cmdline(rec.pid) == rec.cmd
            result[name] = {
                "pid": rec.pid,
                "port": rec.port,
                "alive": alive,
                "healthy": alive and self._healthy(name),
                "log": rec.log,
            }
        return result

    def reset(self) -> None:
        """Empty every emulator between tests: Firestore documents, bucket objects, queued Pub/Sub messages
        (subscriptions are recreated; topics other than the stack's are deleted), Admin API operations."""
        with self._locked():
            info = self.info()
            database = self.firestore_database
            call(
                "DELETE",
                f"http://{HOST}:{self.ports.firestore}/emulator/v1/projects/{self.project}"
                f"/databases/{database}/documents",
            )
            call("POST", f"http://{HOST}:{self.ports.gcs}/_internal/delete_all")
            admin = self._pubsub()
            for sub in admin.list_subscriptions():
                admin.delete_subscription(sub)
            keep = {self.ticks_topic, self.work_topic, DEAD_LETTER_TOPIC}
            for topic in admin.list_topics():
                if topic not in keep:
                    admin.delete_topic(topic)
            if "sqladmin" in info.services:
                call("POST", f"http://{HOST}:{self.ports.sqladmin}/_emulator/reset", {})
            self._wire(Path(info.functions_config_path))

    def restart_functions(
        self, config_path: str | Path | None = None, extra_env: Mapping[str, str] | None = None
    ) -> StackInfo:
        """Restart only planner and worker, with another config and/or extra env (None: the stack's own)."""
        with self._locked():
            info = self.info()
            if not FUNCTIONS_SOURCE.is_file():
                raise StackError(f"{FUNCTIONS_SOURCE} does not exist: nothing to restart")
            pre = find_prerequisites()
            for name in FUNCTIONS:
                if name in info.services:
                    self._stop(info.services.pop(name))
            wait_ports_free([self.ports.planner, self.ports.worker])
            info.functions_config_path = str(Path(config_path).resolve() if config_path else self.config_path)
            info.functions_extra_env = dict(extra_env or {})
            env = self._functions_env(Path(info.functions_config_path), info.functions_extra_env)
            for name in FUNCTIONS:
                info.services[name] = self._spawn(name, pre, Path(info.pg_dir), env)
                info.missing.pop(name, None)
            self._save(info)
            self._wait_healthy(info.services, list(FUNCTIONS))
            self._wire_work_shards(Path(info.functions_config_path))
            return info

    def create_database(self, name: str) -> str:
        """Create a database in the stack's PostgreSQL (if absent); return its DSN."""
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.pg_dsn("postgres"), autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
            if not exists:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.pg_dsn(name)


# ----- CLI -----------------------------------------------------------------------------------------


def _print_up(info: StackInfo) -> None:
    for name in SERVICES:
        rec = info.services.get(name)
        if rec is None:
            if name in info.missing:
                print(f"  {name:<10} skipped: {info.missing[name]}")
            continue
        how = "reused" if name in info.reused else "started"
        print(f"  {name:<10} {how:<8} pid {rec.pid:<7} {info.endpoints[name]}")
    print(f"state: {info.state_dir}   env: {info.state_dir}/env   logs: {info.state_dir}/logs/")
    print(
        f"up in {info.startup_seconds:.2f} s; stack memory: RSS {info.rss_bytes / 2**20:.0f} MiB "
        f"(sum over its process trees), PSS {info.pss_bytes / 2**20:.0f} MiB"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local.stack", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["up", "down", "status", "env"])
    parser.add_argument("--state-dir", help="state folder (default .stack/, env CDC_STACK_DIR)")
    parser.add_argument(
        "--port-base", type=int, help=f"first port (default {DEFAULT_PORT_BASE}, env CDC_STACK_PORT_BASE)"
    )
    parser.add_argument("--config", help="config JSON (default local/demo_config.json, env CDC_STACK_CONFIG)")
    args = parser.parse_args(argv)
    stack = Stack(args.state_dir, args.port_base, args.config)
    try:
        if args.command == "up":
            _print_up(stack.up())
        elif args.command == "down":
            stack.down()
            print(f"stack in {stack.state_dir} stopped")
        elif args.command == "env":
            for key, value in sorted(stack.env().items()):
                print(f"export {key}={shlex.quote(value)}")
        else:
            status = stack.status()
            if not status:
                print(f"no stack running in {stack.state_dir}")
                return 1
            for name, st in status.items():
                if "missing" in st:
                    print(f"  {name:<10} skipped   ({st['missing']})")
                else:
                    word = "healthy" if st["healthy"] else ("UNHEALTHY" if st["alive"] else "DOWN")
                    print(f"  {name:<10} {word:<9} pid {st['pid']:<7} port {st['port']}")
            return 0 if all(st["healthy"] for st in status.values()) else 1
    except (MissingPrerequisite, StackError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
