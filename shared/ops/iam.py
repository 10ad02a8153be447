"""Every Google API call the project makes, the permission it needs, and the identity that makes it.

tests/test_iam.py proves offline that terraform/ grants each identity what its calls need and no role
that none of its calls uses. Add a row here with every new call; a call without its grant fails that test.
Identities are the names of terraform/'s service accounts (planner, worker, scheduler, push, build), plus
the Google-managed ones: `sql_instance` (each Cloud SQL instance's own service account), `pubsub_agent`
(the Pub/Sub service agent) and `operator` (a person running the `cdc` command, not granted by Terraform).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Call:
    identity: str
    method: str  # API method (or the platform action made on the identity's behalf)
    permission: str
    where: str  # the code (or platform step) that makes the call


CALLS: tuple[Call, ...] = (
    # --- worker: Cloud SQL Admin API (shared/adapters/sqladmin.py, googleapiclient sqladmin v1) ---------
    Call("worker", "sql.instances.export", "cloudsql.instances.export", "shared/adapters/sqladmin.py"),
    Call("worker", "sql.operations.get", "cloudsql.instances.get", "shared/adapters/sqladmin.py"),
    Call("worker", "sql.operations.list", "cloudsql.instances.get", "shared/adapters/sqladmin.py"),
    # --- worker: Cloud Storage (shared/adapters/storage.py) ---------------------------------------------
    # get_blob / exists / stat / stream: objects.get (metadata and media: schema snapshots, row counts of every
    # exported object, verification results); objects.list on the bucket turns "missing" into 404, not 403.
    Call(
        "worker",
        "storage.objects.get (get_blob, exists, stat, stream)",
        "storage.objects.get",
        "shared/adapters/storage.py",
    ),
    Call(
        "worker",
        "storage.objects.get of a missing object (404, not 403)",
        "storage.objects.list",
        "shared/adapters/storage.py",
    ),
    # Manifests go to new, versioned keys only (ifGenerationMatch=0: never replacing an object): create, no delete.
    Call(
        "worker",
        "storage.objects.insert (manifest, create_json)",
        "storage.objects.create",
        "shared/adapters/storage.py",
    ),
    # Windows split out of a pack (shared/app/packs.py): create-only too; the pack object is left to the bucket's
    # lifecycle rule, since deleting it would need storage.objects.delete.
    Call(
        "worker",
        "storage.objects.insert (window split out of a pack, create_bytes)",
        "storage.objects.create",
        "shared/adapters/storage.py",
    ),
    # --- worker and planner: Pub/Sub (shared/adapters/pubsub.py) ----------------------------------------
    Call("worker", "pubsub.projects.topics.publish (work)", "pubsub.topics.publish", "shared/adapters/pubsub.py"),
    Call("planner", "pubsub.projects.topics.publish (work)", "pubsub.topics.publish", "shared/adapters/pubsub.py"),
    # --- worker and planner: Firestore (shared/adapters/firestore_state.py) -----------------------------
    *(
        Call(who, method, permission, "shared/adapters/firestore_state.py")
        for who in ("planner", "worker")
        for method, permission in (
            ("firestore.documents.get / batchGet (get, get_all)", "datastore.entities.get"),
            ("firestore.documents.runQuery (where/stream)", "datastore.entities.list"),
            ("firestore.documents.commit (batch/document create)", "datastore.entities.create"),
            ("firestore.documents.commit (update with preconditions)", "datastore.entities.update"),
            ("firestore.documents.commit (transaction delete)", "datastore.entities.delete"),
            ("firestore.documents.beginTransaction / rollback", "datastore.databases.get"),
        )
    ),
    # --- scheduler: the tick job's HTTP target (terraform/scheduler.tf) ---------------------------------
    Call("scheduler", "pubsub.projects.topics.publish (ticks)", "pubsub.topics.publish", "terraform/scheduler.tf"),
    # --- push identity: Pub/Sub pushes to the functions with its OIDC token -----------------------------
    Call("push", "Cloud Run invoke (push to the function URI)", "run.routes.invoke", "terraform/pubsub.tf"),
    # --- Pub/Sub service agent: OIDC tokens, dead-lettering ---------------------------------------------
    Call("pubsub_agent", "iamcredentials generateIdToken (push OIDC)", "iam.serviceAccounts.getOpenIdToken", "Pub/Sub"),
    Call("pubsub_agent", "publish to the dead-letter topic", "pubsub.topics.publish", "Pub/Sub"),
    Call(
        "pubsub_agent", "ack the dead-lettered message on its subscription", "pubsub.subscriptions.consume", "Pub/Sub"
    ),
    # --- each Cloud SQL instance's service account: writes the export (since 2024 also deletes) --------
    Call("sql_instance", "write the export object", "storage.objects.create", "Cloud SQL export"),
    Call("sql_instance", "replace/clean up the export object", "storage.objects.delete", "Cloud SQL export"),
    # --- build account: Cloud Build steps of the function deploys ---------------------------------------
    Call("build", "read the source archive", "storage.objects.get", "Cloud Build"),
    Call("build", "write build logs", "logging.logEntries.create", "Cloud Build"),
    Call("build", "push the function image", "artifactregistry.repositories.uploadArtifacts", "Cloud Build"),
    # --- operator: the `cdc` command (shared/ops/backfill.py, requeue.py, status.py, report.py) ---------
    Call(
        "operator",
        "pubsub.projects.topics.publish (ticks: backfill, verify)",
        "pubsub.topics.publish",
        "shared/ops/backfill.py",
    ),
    Call(
        "operator", "pubsub.projects.topics.publish (work: requeue)", "pubsub.topics.publish", "shared/ops/requeue.py"
    ),
    Call("operator", "firestore get / runQuery (status, report)", "datastore.entities.get", "shared/ops/status.py"),
    Call("operator", "firestore runQuery (status, report)", "datastore.entities.list", "shared/ops/report.py"),
    Call("operator", "firestore commit (requeue: update)", "datastore.entities.update", "shared/ops/requeue.py"),
    Call("operator", "firestore beginTransaction", "datastore.databases.get", "shared/ops/requeue.py"),
)

# Not granted by Terraform: what to give a person who runs `cdc` (documented in docs/operations.md).
OPERATOR_ROLES: tuple[str, ...] = ("roles/datastore.user", "roles/pubsub.publisher")


def permissions_of(identity: str, calls: tuple[Call, ...] = CALLS) -> set[str]:
    """The permissions an identity's calls need."""
    return {c.permission for c in calls if c.identity == identity}


def identities(calls: tuple[Call, ...] = CALLS) -> set[str]:
    return {c.identity for c in calls}
