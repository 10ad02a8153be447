"""Pack objects (shared/app/packs.py) are left in the bucket by the worker, which may create objects but not delete
them; the export bucket's lifecycle deletes them under `<root>/packs/`."""

from __future__ import annotations

from tests.test_terraform import resource, resources, terraform_files, variables


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


def test_pack_settings_reach_the_config_as_worker_pack() -> None:
    """`pipeline.pack` (typed, since `pipeline.worker` is a map of numbers) becomes the config's `worker.pack`."""
    pipeline_type = variables()["pipeline"]["type"]
    for name in ("max_windows", "target_bytes", "op_overhead_seconds", "export_bytes_per_second", "overhead_share"):
        assert f"{name} = optional(number)" in " ".join(pipeline_type.split())
    locals_ = {k: v for doc in terraform_files().values() for block in doc.get("locals", []) for k, v in block.items()}
    assert "pack = {for k, v in var.pipeline.pack" in " ".join(locals_["pipeline_worker"].split()).replace("{ ", "{")
    assert "worker = local.pipeline_worker" in str(locals_["pipeline_optional"])
