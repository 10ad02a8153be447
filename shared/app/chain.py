"""The worker chain: one export at a time per Cloud SQL instance, re-triggering itself.

One invocation (a `work` message for one instance):

1. takes the instance lease; if another live worker holds it, acknowledges and exits (if that holder's
   heartbeat looks dead, asks Pub/Sub to redeliver instead, so the chain resumes once the lease expires);
2. recovers: finishes bookkeeping for exports that completed before a crash, adopts the in-flight export
   (finding it through operations.list by its uri if the operation name was never saved);
3. loops: poll the in-flight export; the moment it is DONE, claim and submit the next ready task (prepared
   while polling, so the instance idles for two round trips only), then record the finished one
   (task done, watermark, window manifest);
4. stops before its time budget, releases the lease, and publishes a continuation if work remains.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import pendulum

from shared import logs
from shared.clients import Clients
from shared.config import Config, SourceConfig
from shared.errors import (
    ExportRejected,
    InstanceBusy,
    PermanentError,
    RetryableError,
    TemplateError,
    TransientApiError,
)
from shared.failpoints import failpoint
from shared.manifests import build_manifest, parse_schema_csv
from shared.messages import Work
from shared.sqladmin import Operation
from shared.state import LIVE_PRIORITY, Lease, StateStore, Task, task_id
from shared.templates import Templates, export_request_body, export_uri

_BUSY_BACKOFF_MAX_SECONDS = 30.0
_MAX_HANDOVERS = 3


class LeaseLost(RetryableError):
    """Another worker took the lease (ours expired): stop at once, touch nothing more."""


class LeaseSuspect(RetryableError):
    """The lease is held by a worker whose heartbeat is stale: retry once it has expired."""

    hint = "Pub/Sub redelivers this message; the chain resumes when the stale lease expires"


def utcnow() -> pendulum.DateTime:
    return pendulum.now("UTC")


@dataclass
class Prepared:
    """A task ready to submit: its claimed uri and the request body."""

    task: Task
    uri: str
    generation: int
    body: dict[str, Any]


@dataclass
class ChainStats:
    submitted: int = 0
    done: int = 0
    retried: int = 0
    failed: int = 0
    busy: int = 0
    recovered: int = 0


class Chain:
    """One invocation's run of the chain for one instance, holding its lease."""

    def __init__(
        self,
        clients: Clients,
        templates: Templates,
        instance: str,
        holder: str,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.config: Config = clients.config
        self.settings = self.config.worker
        self.clients = clients
        self.state = clients.state
        self.templates = templates
        self.instance = instance
        self.project, self.instance_name = instance.split(":", 1)
        self.holder = holder
        self._monotonic = monotonic
        self._sleep = sleep
        self._deadline = monotonic() + self.settings.budget_seconds
        self._renewed_at = monotonic()
        self.stats = ChainStats()

    # ---- time and lease ----------------------------------------------------------------------------

    def remaining(self) -> float:
        return self._deadline - self._monotonic()

    def _heartbeat(self) -> None:
        if self._monotonic() - self._renewed_at < self.settings.lease_seconds / 3:
            return
        if not self.state.renew_lease(self.instance, self.holder, self.settings.lease_seconds, utcnow()):
            raise LeaseLost(f"lease on {self.instance} was taken over; stopping")
        self._renewed_at = self._monotonic()

    def _pause(self, seconds: float) -> None:
        """Sleep in slices short enough to keep the lease alive."""
        end = self._monotonic() + max(0.0, seconds)
        while (left := end - self._monotonic()) > 0:
            self._heartbeat()
            self._sleep(min(left, self.settings.lease_seconds / 4))

    # ---- the loop ----------------------------------------------------------------------------------

    def run(self) -> ChainStats:
        current = self._recover()
        while self.remaining() > 0:
            if current is None:
                current = self._start_next(self._prepare_next())
                if current is None:
                    wait = self._seconds_until_ready()
                    if wait is None:
                        break
                    # Waiting out the budget (rather than exiting) keeps a far-off retry from spinning
                    # invocations: the continuation published at the end picks it up.
                    self._pause(min(wait, self.remaining()))
                    continue
            polled = self._poll(current)
            if polled is None:
                break
            current = self._complete(current, *polled)
        return self.stats

    def _poll(self, task: Task) -> tuple[Operation, Prepared | None] | None:
        """Poll until DONE, preparing the next task meanwhile; None when the budget ends first.

        The interval grows with the export's age (a fraction of it), between the configured bounds, so a
        short export is noticed quickly and a long one does not spend API quota.
        """
        started = self._monotonic()
        prepared: Prepared | None = None
        while self.remaining() > 0:
            operation = self._read_operation(task)
            failpoint("mid_poll")
            if operation is not None and operation.done:
                return operation, prepared
            if prepared is None:
                prepared = self._prepare_next()
            elapsed = self._monotonic() - started
            interval = min(
                self.settings.poll_max_seconds,
                max(self.settings.poll_initial_seconds, elapsed * self.settings.poll_fraction),
            )
            self._pause(min(interval, max(0.0, self.remaining())))
        return None

    def _read_operation(self, task: Task) -> Operation | None:
        """The task's operation; None if the API could not answer this time."""
        try:
            return self.clients.sqladmin.get_operation(self.project, task.operation or "")
        except TransientApiError as exc:
            logs.warning("operation poll failed; retrying", task=task.id, error=str(exc))
            return None
        except ExportRejected as exc:
            # The operation is gone (or unreadable): its outcome is unknown, so the task is retried;
            # a new generation is used if an object appeared, so nothing is overwritten.
            return Operation.unknown(task.operation or "", task.uri, exc.status, str(exc))

    def _complete(self, task: Task, operation: Operation, prepared: Prepared | None) -> Task | None:
        """Record a DONE operation; submits the next export first when it succeeded."""
        if operation.failed:
            self._record_failure(task, {"code": operation.error_code, "message": operation.error_message})
            return None
        if prepared is None or prepared.task.priority != LIVE_PRIORITY:
            # A live window queued while we polled must not wait behind a prefetched backfill task.
            prepared = self._prepare_next()
        successor = self._start_next(prepared)
        done = self.state.mark_done(task, utcnow())
        failpoint("after_done")
        self.stats.done += 1
        logs.info("export done", **_task_fields(task))
        if done is not None:
            self._finalize(done)
        return successor

    # ---- choosing and submitting -------------------------------------------------------------------

    def _ready(self, tasks: list[Task]) -> Task | None:
        now = utcnow()
        return next((t for t in tasks if t.not_before is None or t.not_before <= now), None)

    def _prepare_next(self) -> Prepared | None:
        """The next ready task with its request rendered; tasks that cannot render fail here."""
        while True:
            task = self._ready(self.state.next_pending(self.instance))
            if task is None:
                return None
            try:
                return self._prepare(task)
            except (TemplateError, PermanentError) as exc:
                self._fail_permanently(task, exc)

    def _prepare(self, task: Task) -> Prepared:
        source = self._source(task)
        window = task.window
        if task.table is None:
            query = self.templates.render_schema_query(source, window)
        else:
            table = source.table(task.table)
            query = self.templates.render_query(source, table, window)
        generation = task.generation
        key = self.templates.object_key(self.config, source, task.table, window, generation)
        uri = export_uri(self.config, key)
        body = export_request_body(source, query, uri, task.offload)
        return Prepared(task, uri, generation, body)

    def _source(self, task: Task) -> SourceConfig:
        try:
            source = self.config.source(task.source)
            if task.table is not None:
                source.table(task.table)
        except (KeyError, PermanentError) as exc:
            raise TaskConfigMissing(task) from exc
        return source

    def _start_next(self, prepared: Prepared | None) -> Task | None:
        """Claim and submit; returns the running task, or None if nothing could be started now."""
        while prepared is not None:
            claimed = self.state.claim(prepared.task, uri=prepared.uri, generation=prepared.generation, now=utcnow())
            if claimed is not None:
                return self._submit(claimed, prepared.body)
            prepared = self._prepare_next()
        return None

    def _submit(self, task: Task, body: dict[str, Any]) -> Task | None:
        """Submit the export of a claimed task, backing off while the instance is busy."""
        delay = 1.0
        while True:
            try:
                operation = self.clients.sqladmin.export(self.project, self.instance_name, body)
                break
            except (InstanceBusy, TransientApiError) as exc:
                adopted = self._find_operation(task.uri)
                if adopted is not None:
                    operation = adopted
                    break
                self.stats.busy += isinstance(exc, InstanceBusy)
                if delay >= self.remaining():
                    logs.warning("instance still busy at the end of the budget", task=task.id, error=str(exc))
                    return None
                pause = delay * random.uniform(0.5, 1.5)
                logs.info("instance busy; backing off", task=task.id, seconds=round(pause, 2), error=str(exc))
                self._pause(pause)
                delay = min(delay * 2, _BUSY_BACKOFF_MAX_SECONDS)
            except ExportRejected as exc:
                self._fail_permanently(task, exc)
                return None
        failpoint("after_submit")
        running = self.state.mark_running(task, operation.name)
        self.stats.submitted += 1
        logs.info("export submitted", **{**_task_fields(task), "operation": operation.name, "attempt": task.attempts})
        return running

    def _find_operation(self, uri: str | None, *, must_know: bool = False) -> Operation | None:
        """The export operation already writing to `uri`, if one exists (crash or lost response).

        With `must_know`, a listing that fails raises instead of answering "none": recovery must not
        submit a second export to a uri whose first one may exist (it would end as a second object).
        """
        if uri is None:
            return None
        try:
            operations = self.clients.sqladmin.list_operations(self.project, self.instance_name)
        except RetryableError:
            if must_know:
                raise
            return None
        return next((op for op in operations if op.uri == uri and not op.failed), None)

    def _seconds_until_ready(self) -> float | None:
        pending = self.state.next_pending(self.instance)
        if not pending:
            return None
        now = utcnow()
        return max(0.0, min((t.not_before - now).total_seconds() if t.not_before else 0.0 for t in pending))

    # ---- failures -----------------------------------------------------------------------------------

    def _record_failure(self, task: Task, error: dict[str, Any]) -> None:
        error = {**error, "operation": task.operation, "uri": task.uri, "attempt": task.attempts}
        if task.attempts >= self.settings.max_attempts:
            self.state.mark_failed(task, error)
            self.stats.failed += 1
            logs.error("export failed for good; the watermark stops before this window", task=task.id, error=error)
            return
        generation = task.generation
        if task.uri and self.clients.objects.exists(self.clients.objects.key_of(task.uri)):
            generation += 1
        delay = min(self.settings.retry_max_seconds, self.settings.retry_base_seconds * 2 ** (task.attempts - 1))
        not_before = utcnow().add(seconds=delay * random.uniform(0.8, 1.2))
        self.state.mark_retry(task, error=error, not_before=not_before, generation=generation)
        self.stats.retried += 1
        logs.warning("export failed; will retry", task=task.id, error=error, not_before=not_before)

    def _fail_permanently(self, task: Task, exc: Exception) -> None:
        error: dict[str, Any] = {"code": type(exc).__name__, "message": str(exc)}
        if isinstance(exc, TemplateError):
            error["template"] = exc.template
        self.state.mark_failed(task, error)
        self.stats.failed += 1
        logs.error("task cannot run; marked failed", task=task.id, error=error)

    # ---- recovery and bookkeeping -------------------------------------------------------------------

    def _recover(self) -> Task | None:
        """Finish what a crashed predecessor left: bookkeeping, then the export still in flight."""
        for task in self.state.unfinalized(self.instance):
            self._finalize(task)
            self.stats.recovered += 1
        in_flight = sorted(
            self.state.tasks_in_state("running", instance=self.instance)
            + self.state.tasks_in_state("submitting", instance=self.instance),
            key=lambda t: t.order_key,
        )
        current = None
        for task in in_flight:
            self.stats.recovered += 1
            if task.operation is None:
                adopted = self._find_operation(task.uri, must_know=True)
                if adopted is None:
                    body = self._prepare(task).body
                    task = self._submit(task, body)
                else:
                    task = self.state.mark_running(task, adopted.name)
                if task is None:
                    continue
            operation = self._read_operation(task)
            if operation is not None and operation.done:
                if (successor := self._complete(task, operation, None)) is not None:
                    current = successor
            else:
                current = task
        return current

    def _finalize(self, task: Task) -> None:
        """After an export is DONE: advance the table's watermark and write the manifest if complete."""
        now = utcnow()
        if task.table is not None:
            moved = self.state.advance_watermark(task.source, task.table, now)
            if moved:
                logs.info("watermark advanced", source=task.source, table=task.table, old=moved[0], new=moved[1])
        self._write_manifest_if_complete(task, now)
        self.state.mark_finalized(task)

    def _write_manifest_if_complete(self, task: Task, now: pendulum.DateTime) -> None:
        source = self.config.source(task.source)
        ids = [task_id(source.name, task.low, None)] + [task_id(source.name, task.low, t.name) for t in source.tables]
        tasks = list(self.state.get_tasks(ids).values())
        if not tasks or any(t.state != "done" for t in tasks) or all(t.table is not None for t in tasks):
            return
        objects = self.clients.objects
        schema_task = next(t for t in tasks if t.table is None)
        columns = parse_schema_csv(objects.download(objects.key_of(schema_task.uri or "")))
        sizes = {t.uri or "": objects.size(objects.key_of(t.uri or "")) for t in tasks}
        manifest = build_manifest(source, task.window, tasks, columns, sizes, now)

        objects.write_json(self.templates.manifest_key(self.config, source, task.window), manifest)
        self.state.save_manifest(source.name, task.window, manifest)
        logs.info("window complete; manifest written", source=source.name, window_low=task.low, objects=len(tasks))


def _task_fields(task: Task) -> dict[str, Any]:
    """How a task appears in the logs: enough to find it, its window and its object."""
    return {
        "task": task.id,
        "instance": task.instance,
        "operation": task.operation,
        "uri": task.uri,
        "window_low": task.low,
        "window_high": task.high,
    }


class TaskConfigMissing(PermanentError):
    """A queued task names a source or table the configuration no longer has."""

    def __init__(self, task: Task) -> None:
        super().__init__(
            f"task {task.id} names source {task.source!r} table {task.table!r}, absent from the config",
            hint="restore it in the config, or leave the task failed",
        )


def _take_lease(state: StateStore, work: Work, holder: str, ttl: float) -> Lease | None:
    """Take the instance's lease; False when a live worker holds it (that worker carries the chain).

    Holders are named `<message id>/<random>`. If the holder was started by this very message, this is a
    redelivery after that invocation died (killed, out of memory): nothing else would wake the chain before
    the next tick, so wait, with plain reads, until the lease expires and take it over (or until its
    heartbeat moves: the holder is alive after all). Any other message is acknowledged while the holder's
    heartbeat is fresh, and retried through Pub/Sub once it is stale.
    """
    instance = work.instance
    lease = state.acquire_lease(instance, holder, ttl, utcnow())
    if lease.acquired:
        return lease
    seen = lease
    if seen.holder.split("/", 1)[0] != work.message_id:
        if (utcnow() - seen.heartbeat).total_seconds() > ttl / 2:
            raise LeaseSuspect(f"lease on {instance} held by {seen.holder} with a stale heartbeat")
        logs.info("chain already running; acknowledging", instance=instance, holder=seen.holder)
        return None
    deadline = time.monotonic() + ttl * 1.5
    while time.monotonic() < deadline:
        time.sleep(ttl / 12 * random.uniform(0.5, 1.5))
        current = state.get_lease(instance)
        if current is not None and (current.holder != seen.holder or current.heartbeat > seen.heartbeat):
            logs.info("chain already running; acknowledging", instance=instance, holder=current.holder)
            return None
        expired = current is None or current.expires <= utcnow()
        if expired and (taken := state.acquire_lease(instance, holder, ttl, utcnow())).acquired:
            logs.warning("lease of a dead invocation taken over", instance=instance, previous_holder=seen.holder)
            return taken
    raise LeaseSuspect(f"lease on {instance} held by {seen.holder}, neither renewed nor expired after {ttl * 1.5} s")


def run_work(work: Work, clients: Clients, templates: Templates) -> ChainStats | None:
    """Handle one `work` message. Returns None when another live worker already runs the chain."""
    settings = clients.config.worker
    holder = f"{work.message_id}/{uuid.uuid4().hex[:12]}"
    state = clients.state
    lease = _take_lease(state, work, holder, settings.lease_seconds)
    if lease is None:
        return None
    replaces_itself = (lease.previous_holder or "").split("/", 1)[0] == work.message_id
    if replaces_itself and lease.takeovers <= _MAX_HANDOVERS:
        # This redelivery replaces an invocation that died: every death costs the message one delivery
        # attempt, and after the last one Pub/Sub dead-letters it and the chain sleeps until the next
        # tick. A fresh message starts a fresh count. Past the limit (deaths in a row, each before its
        # first heartbeat) the chain is left to Pub/Sub, so a chain that always crashes is dead-lettered.
        state.hand_over_lease(work.instance, holder, utcnow())
        clients.bus.publish_work(work.instance)
        logs.warning("chain handed to a fresh work message", instance=work.instance, takeovers=lease.takeovers)
        return None
    failpoint("with_lease")
    chain = Chain(clients, templates, work.instance, holder)
    try:
        stats = chain.run()
    except LeaseLost as exc:
        logs.warning("lease lost; the new holder carries the chain", instance=work.instance, error=str(exc))
        return None
    except BaseException:
        state.release_lease(work.instance, holder)
        raise
    state.release_lease(work.instance, holder)
    if state.has_open_tasks(work.instance):
        clients.bus.publish_work(work.instance)
        logs.info("chain continues in a new invocation", instance=work.instance)
    logs.info("chain step finished", instance=work.instance, **asdict(stats))
    return stats
