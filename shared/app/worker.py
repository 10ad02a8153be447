"""One `work` message for one instance: take the lease, recover, run the chain, hand over or continue.

1. takes the instance lease (shared/app/lease.py); if another live worker holds it, acknowledges and exits
   (if that holder's heartbeat looks dead, asks Pub/Sub to redeliver instead);
2. if this is a redelivery that took over its own dead invocation's lease, hands the chain to a fresh work
   message (bounded), so crashes cannot use up the message's delivery attempts;
3. recovers (shared/app/recovery.py) and runs the chain (shared/app/chain.py) until its budget ends;
4. releases the lease, and publishes a continuation if work remains.
"""

from __future__ import annotations

from dataclasses import asdict

from shared.app import hooks
from shared.app.chain import Chain, ChainStats
from shared.app.lease import LeaseKeeper, LeasePolicy, new_holder, started_by, take_lease
from shared.app.ports import Services
from shared.app.recovery import recover
from shared.core import logs
from shared.core.errors import LeaseLost
from shared.core.messages import Work
from shared.core.templates import Templates

MAX_HANDOVERS = 3
"""Deaths in a row (each before the first heartbeat) after which the chain is left to Pub/Sub's dead letters."""


def run_work(work: Work, services: Services, templates: Templates) -> ChainStats | None:
    """Handle one `work` message. Returns None when another live worker already runs the chain."""
    state, clock, instance = services.state, services.clock, work.instance
    policy = LeasePolicy(services.config.worker.lease_seconds)
    holder = new_holder(work.message_id)
    lease = take_lease(state, clock, instance, work.message_id, holder, policy)
    if lease is None:
        return None
    keeper = LeaseKeeper(state, clock, instance, holder, policy, lease.epoch)
    if started_by(lease.previous_holder) == work.message_id and lease.takeovers <= MAX_HANDOVERS:
        # This redelivery replaces an invocation that died: every death costs the message one delivery
        # attempt, and after the last one Pub/Sub dead-letters it and the chain sleeps until the next
        # tick. A fresh message starts a fresh count. Past the limit (deaths in a row, each before its
        # first heartbeat) the chain is left to Pub/Sub, so a chain that always crashes is dead-lettered.
        keeper.hand_over()
        services.bus.publish_work(instance)
        logs.warning("chain handed to a fresh work message", instance=instance, takeovers=lease.takeovers)
        return None
    hooks.reached("with_lease")
    chain = Chain(services, templates, instance, keeper)
    try:
        stats = chain.run(recover(chain))
    except LeaseLost as exc:
        logs.warning("lease lost; the new holder carries the chain", instance=instance, error=str(exc))
        return None
    except BaseException:
        keeper.release()
        raise
    keeper.release()
    if state.has_open_tasks(instance):
        services.bus.publish_work(instance)
        logs.info("chain continues in a new invocation", instance=instance)
    logs.info("chain step finished", instance=instance, **asdict(stats))
    return stats
