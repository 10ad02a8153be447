"""The chain's loop for one instance, holding its lease: one export at a time.

Poll the in-flight export. While it runs, the next ready task is chosen, rendered and, once the export's forecast
window opens, claimed under the lease fence (pending -> submitting: its uri reserved, as any claim). The moment the
export is DONE the successor's `instances.export` goes out, and only then is the finished one recorded (task done,
watermark, window manifest), while the new export runs: between one export's end and the next one's start the
instance idles for the poll that sees DONE and the export call. A successor claimed ahead that is not a live window
gives way to a live one queued meanwhile (one query at DONE); one that is not sent (the budget ends first, a live
window took its place) goes back to the queue with its attempt given back. Stops when the queue is empty or before
the invocation's time budget ends.
Recovery after a crash is shared/app/recovery.py; taking the lease and continuing in a new invocation is
shared/app/worker.py.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from shared.app import hooks, packs
from shared.app.bookkeeping import finalize
from shared.app.breaker import Breaker
from shared.app.budget import BudgetedServices, CallBudget
from shared.app.durations import ExportTimes, previous_uris, run_time
from shared.app.lease import LeaseKeeper
from shared.app.lost import VANISHED_CODE, VANISHED_STATUS, accepted_at, previous_export, run_seconds, stuck_limit
from shared.app.polling import PollPlan, predict, window_calls
from shared.app.ports import Services
from shared.app.requests import Prepared, prepare
from shared.core import logs
from shared.core.errors import (
    ExportRejected,
    InstanceBusy,
    InstanceUnavailable,
    LeaseLost,
    PermanentError,
    RetryableError,
    TemplateError,
    TransientApiError,
)
from shared.core.operations import Operation
from shared.core.tasks import LIVE_RANK, Task, claim_order, claim_rank, next_generation
from shared.core.templates import Templates
from shared.core.windows import latest_settled_window

BUSY_BACKOFF_FIRST_SECONDS = 1.0
BUSY_BACKOFF_MAX_SECONDS = 30.0


@dataclass
class ChainStats:
    submitted: int = 0
    done: int = 0
    retried: int = 0
    failed: int = 0
    busy: int = 0
    recovered: int = 0


class Chain:
    """One invocation's run of the chain for one instance."""

    def __init__(self, services: Services, templates: Templates, instance: str, lease: LeaseKeeper) -> None:
        # Every Admin API call of the chain draws on its share of the project's call budget.
        self.budget = CallBudget(services.state, services.clock, services.config.worker.api_calls_per_minute,
                                 instance=instance)  # fmt: skip
        self.services = BudgetedServices(services, self.budget)
        self.export_times = ExportTimes()
        self.config = services.config
        self.settings = self.config.worker
        self.state = services.state
        self.clock = services.clock
        self.templates = templates
        self.instance = instance
        self.project, self.instance_name = instance.split(":", 1)
        self.lease = lease
        self.breaker = Breaker(self.state, self.clock, instance)
        self._breaker_open = self.state.breaker(instance) is not None
        self._deadline = self.clock.monotonic() + self.settings.budget_seconds
        self._cancelled: set[str] = set()
        """Operations this invocation cancelled as stuck: their failure is retried on a new generation."""
        self._claimed: Prepared | None = None
        """The successor claimed while the current export runs (its task `submitting`), not sent yet."""
        self._owed: Callable[[], None] | None = None
        """The bookkeeping of the export that just ended, owed until its successor's export went out."""
        self._accepted: dict[str, Operation] = {}
        """The API's answer to each export this invocation submitted, by task id: its insertTime dates the export
        from its first poll on (a task claimed ahead was claimed well before its export was accepted). Confirmed from
        the Admin API reference: instances.export answers with an Operation resource, whose insertTime is when it
        was enqueued; that the answer always carries it is inferred (the reference says only the fields relevant to
        the operation are set), so without it the claim time stands in, as before."""
        self.stats = ChainStats()

    def remaining(self) -> float:
        return self._deadline - self.clock.monotonic()

    # ---- the loop ----------------------------------------------------------------------------------

    def run(self, current: Task | None) -> ChainStats:
        """Carry the chain on from `current` (the export recovery found in flight, if any)."""
        while self.remaining() > 0:
            if current is None:
                current = self.start_next(self.prepare_next())
                if current is None:
                    wait = self._seconds_until_ready()
                    if wait is None:
                        break
                    # Waiting out the budget (rather than exiting) keeps a far-off retry from spinning
                    # invocations: the continuation published at the end picks it up.
                    self.lease.pause(min(wait, self.remaining()))
                    continue
            polled = self._poll(current)
            if polled is None:
                self._release_claimed()
                break
            current = self.complete(current, *polled)
        return self.stats

    def _poll(self, task: Task) -> tuple[Operation, Prepared | None] | None:
        """Poll until DONE, preparing the next task meanwhile; None when the budget ends first.

        Polls follow the export's plan (shared/app/polling.py: sparse until the window in which its table's recent
        durations say it ends, dense inside it, growing after) and wait for the chain's share of the call budget
        (shared/app/budget.py). An export older than its stuck limit is cancelled (shared/app/lost.py) and polled
        on until the cancel shows.
        """
        started = self.clock.monotonic()
        limit: float | None = None  # looked up once the export is older than the floor
        operation: Operation | None = self._accepted.pop(task.id, None)
        prepared = self.prepare_next()
        plan = self._poll_plan(task, operation, started)
        polls = 0
        ahead = self._claimed is not None  # a successor is claimed ahead at most once per export
        while self.remaining() > 0:
            age = self._age(task, operation, started)
            # Without a forecast, polls leave half the bucket to the dense polls of forecast windows.
            keep = self.budget.capacity / 2 if plan.forecast is None else 0.0
            wait = max(plan.delay(age, first=polls == 0), self.budget.wait_seconds(keep=keep))
            if not ahead and plan.opens_by(age + wait):
                ahead = True
                if prepared is not None:
                    self._claimed = self._claim_ahead(prepared)
                    prepared = None if self._claimed is not None else prepared
                    continue  # the claim took a round trip: the wait is counted again
            self.lease.pause(min(wait, max(0.0, self.remaining())))
            operation, polls = self.read_operation(task) or operation, polls + 1
            hooks.reached("mid_poll")
            if operation is not None and operation.done:
                self._polled(task, operation, plan, polls)
                return operation, prepared
            age = self._age(task, operation, started)
            if (
                operation is not None
                and operation.name not in self._cancelled
                and age > self.settings.stuck_min_seconds
            ):
                limit = self._stuck_limit(task) if limit is None else limit
                if age > limit:
                    self._cancel_stuck(task, operation, limit, age)
            if prepared is None and not ahead:
                # Until the forecast window opens (a successor is claimed then); inside it, a poll waits for nothing
                # else: the queue is read again at DONE if nothing was claimed.
                prepared = self.prepare_next()
        return None

    def _poll_plan(self, task: Task, operation: Operation | None, started: float) -> PollPlan:
        """The export's polling plan: from its table's recent run times, else the instance's, else none; with as
        many polls in the forecast window as configured and affordable."""
        if not self.settings.poll_window_calls:
            return PollPlan(None, 0, self.settings)
        uris = previous_uris(self.state, task)
        if not self.export_times.listed and (not uris or any(self.export_times.of(u) is None for u in uris)):
            self._learn_export_times(task)
        table = [seconds for u in uris if (seconds := self.export_times.of(u)) is not None]
        others = self.export_times.recent(exclude=uris)
        predicted = predict(table, others, self.settings.poll_spread)
        calls = self.settings.poll_window_calls
        if predicted is not None:
            age = self._age(task, operation, started)
            affordable = self.budget.affordable(predicted.low - age, predicted.high - predicted.low)
            calls = window_calls(calls, affordable - 1)  # one call stays for the next export
        return PollPlan(predicted, calls, self.settings)

    def _learn_export_times(self, task: Task) -> None:
        """Read the instance's recent operations once per invocation, for their run times."""
        try:
            listed = self.services.sqladmin.list_operations(self.project, self.instance_name)
            self.lease.heartbeat()
        except LeaseLost:
            raise
        except RetryableError as exc:
            logs.warning("recent exports not listed; polling without them", **task.log_fields(), error=str(exc))
            listed = []
        self.export_times.learn(listed)

    def _polled(self, task: Task, operation: Operation, plan: PollPlan, polls: int) -> None:
        """Remember how long the export ran (it forecasts the chain's next exports) and log how the forecast did."""
        self.export_times.record(operation)
        f = plan.forecast
        logs.log(
            "DEBUG",
            "export polled",
            **task.log_fields(),
            ran_seconds=run_time(operation),
            polls=polls,
            basis=f.basis if f else None,
            forecast_low=round(f.low, 3) if f else None,
            forecast_high=round(f.high, 3) if f else None,
            window_calls=plan.calls,
            chains=self.budget.chains,
        )

    def read_operation(self, task: Task) -> Operation | None:
        """The task's operation; None if the API could not answer this time (a 429 also holds the budget back)."""
        try:
            operation = self.services.sqladmin.get_operation(self.project, task.operation or "")
            self.lease.heartbeat()  # fencing: a call that hung past the lease acts on nothing
            return operation
        except (TransientApiError, InstanceUnavailable) as exc:
            if isinstance(exc, InstanceUnavailable) and exc.condition == "quota":
                self.budget.refused()
            logs.warning("operation poll failed; retrying", **task.log_fields(), error=str(exc))
            return None
        except ExportRejected as exc:
            if exc.status == VANISHED_STATUS:
                return self._relocate(task, exc)
            # The operation is unreadable: its outcome is unknown, so the task is retried; a new generation
            # is used if an object appeared, so nothing is overwritten.
            return Operation.unknown(task.operation or "", task.uri, exc.status, str(exc))

    def _relocate(self, task: Task, exc: ExportRejected) -> Operation | None:
        """operations.get does not know the name: the list decides. The task's operation, if still listed, is
        followed; if not, it has vanished (DONE, outcome unknown: `VANISHED_CODE`)."""
        try:
            listed = self.services.sqladmin.list_operations(self.project, self.instance_name)
            self.lease.heartbeat()
        except LeaseLost:
            raise
        except RetryableError as error:
            logs.warning("operation not found and the list failed; retrying", **task.log_fields(), error=str(error))
            return None
        # By name: an earlier attempt of the task (failed, same uri) may still be listed.
        found = next((op for op in listed if op.name == task.operation), None)
        return found or Operation.unknown(task.operation or "", task.uri, exc.status, str(exc))

    def _age(self, task: Task, operation: Operation | None, started: float) -> float:
        """Seconds since the export was accepted (else since the claim; else since this poll began)."""
        since = (accepted_at(operation) if operation is not None else None) or task.submitted_at
        if since is None:
            return self.clock.monotonic() - started
        return (self.clock.now() - since).total_seconds()

    def _stuck_limit(self, task: Task) -> float:
        """The task's stuck limit, from how long its table's previous export ran (the operation list's times)."""
        previous = previous_export(self.state, task)
        ran = None
        if previous is not None and previous.export_uri:
            try:
                listed = self.services.sqladmin.list_operations(self.project, self.instance_name)
                self.lease.heartbeat()
            except LeaseLost:
                raise
            except RetryableError:
                listed = []
            ran = run_seconds(next((op for op in listed if op.uri == previous.export_uri and not op.failed), None))
            if ran is not None:  # a pack may run as long as its windows alone would
                ran = ran * packs.windows_of(task) / packs.windows_of(previous)
        return stuck_limit(self.settings, ran)

    def _cancel_stuck(self, task: Task, operation: Operation, limit: float, age: float) -> None:
        """Ask the API to cancel a stuck export; the poll sees it end (cancelled, or finished after all)."""
        try:
            self.services.sqladmin.cancel_operation(self.project, operation.name)
            self.lease.heartbeat()
        except LeaseLost:
            raise
        except RetryableError as exc:
            logs.warning("cancel of a stuck export failed; trying again", **task.log_fields(), error=str(exc))
            return
        except ExportRejected as exc:  # DONE meanwhile (or gone): the next poll tells which
            logs.warning("cancel of a stuck export refused", **task.log_fields(), error=str(exc))
        self._cancelled.add(operation.name)
        logs.error(
            "export stuck: cancelled; it is retried on a new generation",
            **task.log_fields(),
            status=operation.status,
            age_seconds=round(age, 1),
            limit_seconds=round(limit, 1),
        )

    def complete(
        self, task: Task, operation: Operation, prepared: Prepared | None, *, start_successor: bool = True
    ) -> Task | None:
        """Record a DONE operation; when it succeeded, the next export is submitted first (unless not
        `start_successor`: recovery records what it finds and leaves the next export to the chain's loop). Returns
        the running successor, if any."""
        if operation.error_code == VANISHED_CODE:
            if task.pack_uri:
                packs.retry_members(self, task, vanished=True)
            else:
                self.retry_vanished(task)
            return self._successor(None) if start_successor else None
        if operation.failed:
            error = {"code": operation.error_code, "message": operation.error_message}
            if task.pack_uri:  # every window retried, each on its own next time
                for member in packs.members_of(self, task):
                    failure = packs.failure_error(task, operation)
                    self._record_failure(member, failure, new_generation=operation.name in self._cancelled)
            else:
                self._record_failure(task, error, new_generation=operation.name in self._cancelled)
            return self._successor(None) if start_successor else None
        # Owed until the successor's export went out; paid earlier if that submit has to wait (busy, refused), or
        # fails. With the lease lost it stays owed: the new holder's recovery finds the export DONE and records it.
        self._owed = lambda: self._record_done(task)
        try:
            successor = self._successor(prepared) if start_successor else None
        except LeaseLost:
            raise
        except Exception:
            self._pay_owed()
            raise
        hooks.reached("after_successor")
        self._pay_owed()
        return successor

    def _record_done(self, task: Task) -> None:
        """The bookkeeping of a successful export: task (or pack) done, watermark, window manifest."""
        if task.pack_uri:
            packs.finish_pack(self, task)
            return
        done = self.state.mark_done(task, self.clock.now(), fence=self.lease.fence)
        hooks.reached("after_done")
        self.stats.done += 1
        logs.info("export done", **task.log_fields())
        if done is not None:
            finalize(self.services, self.templates, done)

    def _pay_owed(self) -> None:
        """Record the finished export whose bookkeeping waits behind its successor's submit, if any."""
        owed, self._owed = self._owed, None
        if owed is not None:
            owed()

    # ---- the successor ------------------------------------------------------------------------------

    def _successor(self, prepared: Prepared | None) -> Task | None:
        """Submit the next export the moment the current one is DONE: the one claimed ahead, unless it is not a
        live window and a task of a better rank was queued meanwhile (a live window must not wait behind a catch-up
        or backfill export, nor a tick's catch-up behind a backfill); else the best ready task, claimed now."""
        claimed = self._claimed
        if claimed is not None and self._rank(claimed.task) != LIVE_RANK:
            better = self._better_than(claimed.task)
            if better is not None:
                self._release_claimed()
                return self.start_next(better)
        if claimed is not None:
            return self._send_claimed()
        if prepared is None or self._rank(prepared.task) != LIVE_RANK:
            # A live window queued while we polled must not wait behind a prefetched catch-up or backfill task.
            prepared = self.prepare_next()
        return self.start_next(prepared)

    def _claim_ahead(self, prepared: Prepared) -> Prepared | None:
        """Claim the successor while the current export runs (under the lease fence, as every transition), so that
        only its export call is left for the moment the current one is DONE. None if the task changed meanwhile
        (it is chosen again at DONE), or if it is packed with other windows (a pack is claimed at DONE)."""
        if prepared.task.pack_uri or packs.plan_pack(self, prepared) is not None:
            return None
        claimed = self.state.claim(
            prepared.task, uri=prepared.uri, generation=prepared.generation, now=self.clock.now(),
            fence=self.lease.fence,
        )  # fmt: skip
        if claimed is None:
            return None
        logs.log("DEBUG", "next export claimed ahead", **claimed.log_fields())
        return replace(prepared, task=claimed)

    def _send_claimed(self) -> Task | None:
        """Submit the successor claimed ahead, if any."""
        claimed, self._claimed = self._claimed, None
        return None if claimed is None else self.submit(claimed.task, claimed.body)

    def _release_claimed(self) -> None:
        """The successor claimed ahead will not be sent by this invocation: back to the queue, its attempt given
        back (it was never sent, so nothing about the task changed)."""
        claimed, self._claimed = self._claimed, None
        if claimed is None:
            return
        task = claimed.task
        self.state.mark_retry(
            task, error=task.error, not_before=self.clock.now(), generation=task.generation, refund=True,
            fence=self.lease.fence,
        )  # fmt: skip
        logs.info("next export claimed ahead not sent; back in the queue", **task.log_fields())

    def _better_than(self, claimed: Task) -> Prepared | None:
        """The best ready task if it ranks before `claimed` (queued since it was chosen), rendered; else None."""
        rank = self._rank(claimed)
        while True:
            now = self.clock.now()
            task = next((t for t in self.candidates() if t.ready(now)), None)
            if task is None or self._rank(task) >= rank:
                return None
            try:
                return prepare(self.config, self.templates, task)
            except PermanentError as exc:
                self.fail_permanently(task, exc)

    # ---- choosing and submitting -------------------------------------------------------------------

    def _live_lows(self) -> dict[str, Any]:
        """Per source of this instance, the start of its latest settled window: where live work begins now."""
        now = self.clock.now()
        sources = self.config.sources_for_instance(self.instance)
        return {s.name: latest_settled_window(s.schedule, now, s.settle).low for s in sources}

    def _rank(self, task: Task) -> int:
        return claim_rank(task, self._live_lows().get(task.source))

    def candidates(self) -> list[Task]:
        """Pending tasks in claim order (shared/core/tasks.claim_rank): the head of the stored queue, plus the live
        windows wherever they were queued (a backfill, a forced re-export may have written them behind others)."""
        lows = self._live_lows()
        live = self.state.pending_from(self.instance, min(lows.values())) if lows else []
        return claim_order([*live, *self.state.next_pending(self.instance)], lows)

    def prepare_next(self) -> Prepared | None:
        """The next ready task with its request rendered; tasks that cannot render fail here."""
        while True:
            now = self.clock.now()
            task = next((t for t in self.candidates() if t.ready(now)), None)
            if task is None:
                return None
            try:
                return prepare(self.config, self.templates, task)
            except PermanentError as exc:
                self.fail_permanently(task, exc)

    def start_next(self, prepared: Prepared | None) -> Task | None:
        """Claim and submit; returns the running task, or None if nothing could be started now."""
        while prepared is not None:
            if (pack := packs.plan_pack(self, prepared)) is not None:
                if (leader := packs.claim_pack(self, pack)) is not None:
                    return self.submit(leader, pack.body)
                prepared = self.prepare_next()
                continue
            if prepared.task.pack_uri:  # left by a pack that failed: claimed alone, the pack's fields cleared
                alone = self.state.claim_pack(
                    [prepared.task], uris=[prepared.uri], generations=[prepared.generation], pack_uri=None,
                    now=self.clock.now(), fence=self.lease.fence,
                )  # fmt: skip
                claimed = alone[0] if alone else None
            else:
                claimed = self.state.claim(
                    prepared.task,
                    uri=prepared.uri,
                    generation=prepared.generation,
                    now=self.clock.now(),
                    fence=self.lease.fence,
                )
            if claimed is not None:
                return self.submit(claimed, prepared.body)
            prepared = self.prepare_next()
        return None

    def submit(self, task: Task, body: dict[str, Any]) -> Task | None:
        """Submit the export of a claimed task, backing off while the instance is busy."""
        delay = BUSY_BACKOFF_FIRST_SECONDS
        paused = False
        while True:
            # After a pause, an export of this uri may exist: a holder that lost the lease meanwhile ran it.
            if paused and (adopted := self.find_operation(task.export_uri)) is not None:
                operation = adopted
                break
            paused = True
            try:
                operation = self.services.sqladmin.export(self.project, self.instance_name, body)
                self.lease.heartbeat()  # fencing: if this call hung past the lease, the new holder adopts it
                break
            except (InstanceBusy, TransientApiError) as exc:
                adopted = self.find_operation(task.export_uri)
                if adopted is not None:
                    operation = adopted
                    break
                self.stats.busy += isinstance(exc, InstanceBusy)
                if delay >= self.remaining():
                    logs.warning("instance still busy at the end of the budget", **task.log_fields(), error=str(exc))
                    return None
                pause = delay * random.uniform(0.5, 1.5)
                logs.info("instance busy; backing off", **task.log_fields(), seconds=round(pause, 2), error=str(exc))
                self._pay_owed()  # the finished export's bookkeeping does not wait for the instance
                self.lease.pause(pause)
                delay = min(delay * 2, BUSY_BACKOFF_MAX_SECONDS)
            except InstanceUnavailable as exc:
                # Nothing is wrong with the task: keep its claim (no attempt is spent) and pause the instance.
                adopted = self.find_operation(task.export_uri)
                if adopted is not None:
                    operation = adopted
                    break
                self._breaker_open = True
                pause = self.breaker.trip(exc)
                if pause >= self.remaining():
                    logs.warning("instance still unavailable at the end of the budget", **task.log_fields())
                    return None
                self._pay_owed()  # the finished export's bookkeeping does not wait for the instance
                self.lease.pause(pause)
            except ExportRejected as exc:
                self.fail_permanently(task, exc)
                return None
        if self._breaker_open:
            self.breaker.reset()
            self._breaker_open = False
        hooks.reached("after_submit")
        running = self.state.mark_running(task, operation.name, fence=self.lease.fence)
        self._accepted[task.id] = operation
        self.stats.submitted += 1
        logs.info("export submitted", **{**task.log_fields(), "operation": operation.name, "attempt": task.attempts})
        return running

    def find_operation(self, uri: str | None, *, must_know: bool = False) -> Operation | None:
        """The export operation already writing to `uri`, if one exists (crash or lost response).

        With `must_know`, a listing that fails raises instead of answering "none": recovery must not
        submit a second export to a uri whose first one may exist (it would end as a second object).
        """
        if uri is None:
            return None
        try:
            operations = self.services.sqladmin.list_operations(self.project, self.instance_name)
            self.lease.heartbeat()
        except LeaseLost:
            raise
        except RetryableError:
            if must_know:
                raise
            return None
        return next((op for op in operations if op.uri == uri and not op.failed), None)

    def _seconds_until_ready(self) -> float | None:
        pending = self.state.next_pending(self.instance)
        if not pending:
            return None
        now = self.clock.now()
        return max(0.0, min((t.not_before - now).total_seconds() if t.not_before else 0.0 for t in pending))

    # ---- failures -----------------------------------------------------------------------------------

    def retry_vanished(self, task: Task) -> None:
        """The export's operation vanished: its outcome is unknown, so retry on a new generation, no attempt spent."""
        generation = next_generation(task)
        not_before = self.clock.now().add(seconds=self.settings.retry_base_seconds * random.uniform(0.8, 1.2))
        error = {"code": VANISHED_CODE, "message": "the export's operation vanished", "operation": task.operation}
        self.state.mark_retry(
            task, error=error, not_before=not_before, generation=generation, refund=True, fence=self.lease.fence
        )
        self.stats.retried += 1
        logs.warning(
            "export's operation vanished; retried on a new generation, no attempt spent",
            **task.log_fields(),
            generation=generation,
        )

    def _record_failure(self, task: Task, error: dict[str, Any], *, new_generation: bool = False) -> None:
        error = {**error, "operation": task.operation, "uri": task.uri, "attempt": task.attempts}
        if task.attempts >= self.settings.max_attempts:
            self.state.mark_failed(task, error, fence=self.lease.fence)
            self.stats.failed += 1
            logs.error(
                "export failed for good; the watermark stops before this window", **task.log_fields(), error=error
            )
            return
        objects = self.services.objects
        left_an_object = bool(task.uri) and objects.exists(objects.key_of(task.uri or ""))
        generation = next_generation(task) if left_an_object or new_generation else task.generation
        delay = min(self.settings.retry_max_seconds, self.settings.retry_base_seconds * 2 ** (task.attempts - 1))
        not_before = self.clock.now().add(seconds=delay * random.uniform(0.8, 1.2))
        self.state.mark_retry(task, error=error, not_before=not_before, generation=generation, fence=self.lease.fence)
        self.stats.retried += 1
        logs.warning("export failed; will retry", **task.log_fields(), error=error, not_before=not_before)

    def fail_permanently(self, task: Task, exc: Exception) -> None:
        error: dict[str, Any] = {"code": type(exc).__name__, "message": str(exc)}
        if isinstance(exc, TemplateError):
            error["template"] = exc.template
        self.state.mark_failed(task, error, fence=self.lease.fence)
        self.stats.failed += 1
        logs.error("task cannot run; marked failed", **task.log_fields(), error=error)
