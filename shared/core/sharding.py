"""Work-topic shards: one topic, and so one push subscription, per Cloud SQL instance.

Why: every instance's chain must be pushed to the worker while the other chains' invocations run. Pub/Sub's
emulator pushes at most 2 requests at a time per subscription, so with one subscription for every instance the
local chains queued behind each other while production ran them at once. One topic per shard, each with its own
push subscription to the worker, gives the local stack and production (terraform/pubsub.tf) the same topology.
Shards are topics rather than subscription filters on an attribute because the emulator accepts a `filter` but
does not apply it (measured, pubsub-emulator 0.8.20: two subscriptions filtered on different attribute values
each received every message).

An instance's shard is its position among the configuration's distinct instances, sorted (Terraform computes the
same with `sort(keys(local.instances))`). Every shard's subscription pushes to the same worker, which serves any
instance, so a message published on an instance's previous shard (while a deploy that adds an instance rolls
out) is still handled; the base work topic keeps its own subscription for the same reason.
"""

from __future__ import annotations

from collections.abc import Iterable


def work_shard_topics(work_topic: str, instances: Iterable[str]) -> dict[str, str]:
    """The work topic of each instance ("project:instance" -> "<work_topic>-s<N>")."""
    return {instance: f"{work_topic}-s{n}" for n, instance in enumerate(sorted(set(instances)))}
