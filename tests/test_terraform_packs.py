"""Pack objects (shared/app/packs.py) are left in the bucket by the worker, which may create objects but not delete
them; the export bucket's lifecycle deletes them under `<root>/packs/`."""

from __future__ import annotations

from tests.test_terraform import resource, resources, variables


def test_the_worker_cannot_delete_objects_so_the_bucket_expires_packs() -> None:
    worker_roles = {
        body["role"]
        for body in resources("google_storage_bucket_iam_member").values()
        if body["member"] == "${google_service_account.worker.member}"
    }
    assert worker_roles == {"roles/storage.objectCreator", "roles/storage.objectViewer"}  # no storage.objects.delete
    rules = resource("google_storage_bucket", "exports")["lifecycle_rule"]
    packs = [r for r in rules if r["condition"][0].get("matches_prefix") == ["${var.pipeline.root}/packs/"]]
    assert len(packs) == 1
    assert packs[0]["condition"][0]["age"] == "${var.pack_retention_days}"
    assert packs[0]["action"][0]["type"] == "Delete"
    assert variables()["pack_retention_days"]["default"] == 7
