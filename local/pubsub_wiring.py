"""Topics and subscriptions in the Pub/Sub emulator, through its REST interface.

The subscriptions mirror production (terraform/): push to the function with the topic in the URL (so
functions-framework builds the right CloudEvent source), a retry policy, a dead-letter topic with a
maximum number of delivery attempts, and a 600 s ack deadline. Only the backoff bounds are shorter here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from local.httpcall import HttpFailure, call

ACK_DEADLINE_SECONDS = 600
MIN_BACKOFF = "1s"
MAX_BACKOFF = "10s"
MAX_DELIVERY_ATTEMPTS = 5


@dataclass(frozen=True)
class PushSubscription:
    name: str
    topic: str
    endpoint: str
    dead_letter_topic: str | None
    max_delivery_attempts: int = MAX_DELIVERY_ATTEMPTS
    min_backoff: str = MIN_BACKOFF
    max_backoff: str = MAX_BACKOFF
    ack_deadline_seconds: int = ACK_DEADLINE_SECONDS


class PubSubAdmin:
    """Idempotent admin calls against one emulator (host:port) and one project."""

    def __init__(self, host: str, project: str) -> None:
        self.base = f"http://{host}/v1/projects/{project}"
        self.project = project

    def topic_path(self, topic: str) -> str:
        return f"projects/{self.project}/topics/{topic}"

    def ensure_topic(self, topic: str) -> None:
        try:
            call("PUT", f"{self.base}/topics/{topic}", {})
        except HttpFailure as exc:
            if exc.status != 409:
                raise

    def _ensure_subscription(self, name: str, body: dict[str, Any]) -> None:
        """Create the subscription; if one exists with other settings, replace it (dropping its backlog)."""
        try:
            call("PUT", f"{self.base}/subscriptions/{name}", body)
            return
        except HttpFailure as exc:
            if exc.status != 409:
                raise
        _, existing = call("GET", f"{self.base}/subscriptions/{name}")
        if all(existing.get(key) == value for key, value in body.items()):
            return
        self.delete_subscription(name)
        call("PUT", f"{self.base}/subscriptions/{name}", body)

    def ensure_push_subscription(self, sub: PushSubscription) -> None:
        body: dict[str, Any] = {
            "topic": self.topic_path(sub.topic),
            "pushConfig": {"pushEndpoint": sub.endpoint},
            "ackDeadlineSeconds": sub.ack_deadline_seconds,
            "retryPolicy": {"minimumBackoff": sub.min_backoff, "maximumBackoff": sub.max_backoff},
        }
        if sub.dead_letter_topic:
            body["deadLetterPolicy"] = {
                "deadLetterTopic": self.topic_path(sub.dead_letter_topic),
                "maxDeliveryAttempts": sub.max_delivery_attempts,
            }
        self._ensure_subscription(sub.name, body)

    def ensure_pull_subscription(self, name: str, topic: str) -> None:
        self._ensure_subscription(name, {"topic": self.topic_path(topic), "ackDeadlineSeconds": ACK_DEADLINE_SECONDS})

    def get_subscription(self, name: str) -> dict[str, Any]:
        return call("GET", f"{self.base}/subscriptions/{name}")[1]

    def delete_subscription(self, name: str) -> None:
        try:
            call("DELETE", f"{self.base}/subscriptions/{name}")
        except HttpFailure as exc:
            if exc.status != 404:
                raise

    def delete_topic(self, topic: str) -> None:
        try:
            call("DELETE", f"{self.base}/topics/{topic}")
        except HttpFailure as exc:
            if exc.status != 404:
                raise

    def list_subscriptions(self) -> list[str]:
        body = call("GET", f"{self.base}/subscriptions?pageSize=1000")[1] or {}
        return [s["name"].rsplit("/", 1)[-1] for s in body.get("subscriptions", [])]

    def list_topics(self) -> list[str]:
        body = call("GET", f"{self.base}/topics?pageSize=1000")[1] or {}
        return [t["name"].rsplit("/", 1)[-1] for t in body.get("topics", [])]


def shard_subscription(topic: str) -> str:
    """The worker's push subscription on one work-topic shard (Terraform: the same name, pubsub.tf)."""
    return f"{topic}-worker"


def push_endpoint(port: int, project: str, topic: str) -> str:
    """functions-framework reads the topic from the path to build the CloudEvent source."""
    return f"http://127.0.0.1:{port}/projects/{project}/topics/{topic}"
