"""Finishing what a crashed predecessor left, before the chain moves on: bookkeeping of exports that were done,
then the exports in flight (found through operations.list by their uri if an operation name was never saved):
those DONE are recorded, the one still running is handed to the chain to poll. The chain sends its export before
recording the one that just finished, and claims that next task while the current export runs, so a crash may
leave two in flight: a DONE one whose bookkeeping is owed and a successor running (or claimed, never sent).
Never resubmits blindly: if the listing fails, the invocation fails and Pub/Sub redelivers it."""

from __future__ import annotations

from shared.app import packs
from shared.app.bookkeeping import finalize
from shared.app.chain import Chain
from shared.app.requests import prepare
from shared.core import logs
from shared.core.errors import PermanentError
from shared.core.tasks import IN_FLIGHT_STATES, Task


def recover(chain: Chain) -> Task | None:
    """Returns the task whose export is in flight, for the chain to poll, if any."""
    state = chain.state
    for task in state.unfinalized(chain.instance):
        finalize(chain.services, chain.templates, task)
        chain.stats.recovered += 1
    # Exports already sent first: a task claimed but never sent must not be submitted while one of them
    # still runs (it would back off behind it for the whole budget, and the running one would go unpolled).
    in_flight = sorted(
        (t for s in IN_FLIGHT_STATES for t in state.tasks_in_state(s, instance=chain.instance)),
        key=lambda t: (t.operation is None, t.order_key),
    )
    current = None
    packs_seen: set[str] = set()
    for task in in_flight:
        if task.pack_uri:  # a pack is resumed once, through its first task (the one with the operation, if any)
            if task.pack_uri in packs_seen:
                continue
            packs_seen.add(task.pack_uri)
        chain.stats.recovered += 1
        resumed = _resume(chain, task, busy=current is not None)
        if resumed is None:
            continue
        operation = chain.read_operation(resumed)
        if operation is not None and operation.done:
            # Only recorded: the chain submits the next export itself once recovery is over. Two exports may be in
            # flight here (one DONE, its successor submitted before the crash let the first be recorded): a third
            # submitted now would back off behind the successor's 409 while nobody polls it.
            chain.complete(resumed, operation, None, start_successor=False)
        else:
            current = resumed
    return current


def _resume(chain: Chain, task: Task, *, busy: bool) -> Task | None:
    """The in-flight task with its operation name; a `submitting` task whose export cannot be found is
    submitted (it was never sent; back to the queue if another export is running), and one that can no longer
    render fails instead of killing the chain.
    Unless its object exists: then an export ran whose operation vanished, and the task moves to a new
    generation (resubmitting under the same name would be refused as an overwrite)."""
    if task.operation is not None:
        return task
    adopted = chain.find_operation(task.export_uri, must_know=True)
    if adopted is not None:
        return chain.state.mark_running(task, adopted.name, fence=chain.lease.fence)
    objects = chain.services.objects
    if task.export_uri and objects.exists(objects.key_of(task.export_uri)):
        if task.pack_uri:
            packs.retry_members(chain, task, vanished=True)
        else:
            chain.retry_vanished(task)
        return None
    if busy:  # never sent, and another export runs: back to the queue, its attempt given back
        if task.pack_uri:
            packs.retry_members(chain, task)
        else:
            chain.state.mark_retry(
                task,
                error=task.error,
                not_before=chain.clock.now(),
                generation=task.generation,
                refund=True,
                fence=chain.lease.fence,
            )
        logs.info("claimed task never sent; back in the queue behind the running export", **task.log_fields())
        return None
    try:
        body = packs.resume_body(chain, task) if task.pack_uri else prepare(chain.config, chain.templates, task).body
    except PermanentError as exc:
        if task.pack_uri:  # one window cannot render any more: every window back to the queue, each on its own
            packs.retry_members(chain, task, solo=True)
            return None
        chain.fail_permanently(task, exc)
        return None
    return chain.submit(task, body)
