"""Publishing to our topics (the worker chain's `work` messages, operators' ticks). Errors map through `ERRORS`."""

from __future__ import annotations

import concurrent.futures
from collections.abc import Mapping

from google.api_core import exceptions as gexc
from google.auth.exceptions import GoogleAuthError
from google.cloud import pubsub_v1

from shared.adapters.errormap import ErrorTable, maps_errors
from shared.core.errors import PublishFailed
from shared.core.messages import work_message

ERRORS: ErrorTable = ((
    (concurrent.futures.TimeoutError, gexc.GoogleAPICallError, gexc.RetryError, GoogleAuthError), PublishFailed
),)  # fmt: skip

_PUBLISH_TIMEOUT_SECONDS = 30


@maps_errors(ERRORS)
class Bus:
    """Publishes to our topics and waits for the server's ack (a function may freeze once it returns)."""

    def __init__(
        self,
        publisher: pubsub_v1.PublisherClient,
        project: str,
        work_topic: str,
        ticks_topic: str,
        shard_topics: Mapping[str, str] | None = None,
    ) -> None:
        """`shard_topics`: the work topic of each instance (shared.core.sharding); an instance not in it is
        published on `work_topic`."""
        self._publisher = publisher
        self._work_topic = publisher.topic_path(project, work_topic)
        self._ticks_topic = publisher.topic_path(project, ticks_topic)
        self._shards = {i: publisher.topic_path(project, t) for i, t in (shard_topics or {}).items()}

    def publish_work(self, instance: str) -> str:
        """Wake (or continue) the chain of `instance` on its shard's topic; returns the message id."""
        return self._publish(self._shards.get(instance, self._work_topic), work_message(instance))

    def publish_ticks(self, data: bytes) -> str:
        """Publish a tick or backfill to the planner's topic; returns the message id."""
        return self._publish(self._ticks_topic, data)

    def _publish(self, topic: str, data: bytes) -> str:
        return self._publisher.publish(topic, data).result(timeout=_PUBLISH_TIMEOUT_SECONDS)
