"""Publishing the worker chain's `work` messages."""

from __future__ import annotations

from google.cloud import pubsub_v1

from shared.messages import work_message

_PUBLISH_TIMEOUT_SECONDS = 30


class Bus:
    """Publishes to the work topic and waits for the server's ack (a function may freeze once it returns)."""

    def __init__(self, publisher: pubsub_v1.PublisherClient, project: str, work_topic: str) -> None:
        self._publisher = publisher
        self._topic = publisher.topic_path(project, work_topic)

    def publish_work(self, instance: str) -> str:
        """Wake (or continue) the chain of `instance`; returns the message id."""
        future = self._publisher.publish(self._topic, work_message(instance))
        return future.result(timeout=_PUBLISH_TIMEOUT_SECONDS)
