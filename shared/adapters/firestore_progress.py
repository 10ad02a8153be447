"""Progress in Firestore: watermarks (and their audit log), the planner's cursors, and window manifests."""

from __future__ import annotations

from typing import Any

import pendulum
from google.api_core import exceptions as gexc
from google.cloud import firestore

from shared.adapters.firestore_tasks import utc
from shared.core.tasks import TaskState, walk_watermark
from shared.core.windows import Window, ts_nodash


class FirestoreProgress:
    """The `watermarks`, `watermark_log`, `cursors` and `manifests` collections."""

    client: firestore.Client
    _tasks: Any
    _watermarks: Any
    _watermark_log: Any
    _cursors: Any
    _manifests: Any

    def _watermark_ref(self, source: str, table: str) -> Any:
        return self._watermarks.document(f"{source}.{table}")

    def init_watermark(self, source: str, table: str, value: pendulum.DateTime) -> bool:
        """Create the table's watermark at the first window the planner queued; never overwrite."""
        try:
            self._watermark_ref(source, table).create(
                {"source": source, "table": table, "value": value, "updated_at": value}
            )
        except (gexc.AlreadyExists, gexc.Conflict):
            return False
        return True

    def get_watermark(self, source: str, table: str) -> pendulum.DateTime | None:
        snap = self._watermark_ref(source, table).get()
        return utc(snap.get("value")) if snap.exists else None

    def watermarks(self) -> dict[tuple[str, str], pendulum.DateTime]:
        return {(d.get("source"), d.get("table")): utc(d.get("value")) for d in self._watermarks.stream()}

    def advance_watermark(
        self, source: str, table: str, now: pendulum.DateTime
    ) -> tuple[pendulum.DateTime, pendulum.DateTime] | None:
        """Move the watermark across every consecutive done window; returns (old, new) if it moved.

        It only ever moves forward, and stops at the first window whose task is missing or not done.
        """
        ref = self._watermark_ref(source, table)
        tasks = self._tasks
        log = self._watermark_log

        @firestore.transactional
        def walk(transaction: Any) -> tuple[pendulum.DateTime, pendulum.DateTime] | None:
            snap = ref.get(transaction=transaction)
            if not snap.exists:
                return None
            start = utc(snap.get("value"))

            def read(tid: str) -> tuple[TaskState, pendulum.DateTime] | None:
                task_snap = tasks.document(tid).get(transaction=transaction)
                return (task_snap.get("state"), utc(task_snap.get("high"))) if task_snap.exists else None

            value = walk_watermark(source, table, start, read)
            if value <= start:
                return None
            transaction.update(ref, {"value": value, "updated_at": now})
            entry = {"source": source, "table": table, "from": start, "to": value, "at": now}
            transaction.set(log.document(f"{source}.{table}.{ts_nodash(value)}"), entry)
            return start, value

        return walk(self.client.transaction())

    def watermark_history(self) -> list[dict[str, Any]]:
        entries = [s.to_dict() for s in self._watermark_log.stream()]
        for entry in entries:
            for key in ("from", "to", "at"):
                entry[key] = utc(entry[key])
        return sorted(entries, key=lambda e: (e["source"], e["table"], e["at"], e["to"]))

    def get_cursor(self, source: str) -> pendulum.DateTime | None:
        snap = self._cursors.document(source).get()
        return utc(snap.get("planned_through")) if snap.exists else None

    def advance_cursor(self, source: str, planned_through: pendulum.DateTime) -> None:
        """Record what the planner queued; only moves forward (a late, redelivered tick cannot rewind it)."""
        ref = self._cursors.document(source)

        @firestore.transactional
        def advance(transaction: Any) -> None:
            snap = ref.get(transaction=transaction)
            current = utc(snap.get("planned_through")) if snap.exists else None
            if current is None or planned_through > current:
                transaction.set(ref, {"source": source, "planned_through": planned_through})

        advance(self.client.transaction())

    # manifests

    def save_manifest(self, source: str, window: Window, manifest: dict[str, Any]) -> None:
        self._manifests.document(f"{source}.{window.ts_nodash}").set(manifest)

    def get_manifest(self, source: str, window: Window) -> dict[str, Any] | None:
        snap = self._manifests.document(f"{source}.{window.ts_nodash}").get()
        return snap.to_dict() if snap.exists else None

    def manifests(self, source: str | None = None) -> list[dict[str, Any]]:
        docs = [s.to_dict() for s in self._manifests.stream()]
        return [d for d in docs if source is None or d.get("source") == source]
