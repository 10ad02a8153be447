"""Offline IAM proof: terraform/'s grants cover every call in shared/ops/iam.py, and nothing more.

Roles are expanded to permissions with the committed snapshot tests/terraform_schema/predefined_roles.json
(predefined roles) and with terraform/'s own google_project_iam_custom_role definitions (custom roles).
"""

from __future__ import annotations

import dataclasses
import json
import re
from functools import cache
from pathlib import Path

from shared.ops import iam
from tests.test_terraform import INSTANCE_MEMBER, PUBSUB_AGENT, iam_grants, resource

SNAPSHOT = Path(__file__).resolve().parent / "terraform_schema" / "predefined_roles.json"

# iam.py's identity names -> the member strings terraform/ grants to.
MEMBERS = {
    "planner": "${google_service_account.planner.member}",
    "worker": "${google_service_account.worker.member}",
    "scheduler": "${google_service_account.scheduler.member}",
    "push": "${google_service_account.push.member}",
    "build": "${google_service_account.build.member}",
    "sql_instance": INSTANCE_MEMBER,
    "pubsub_agent": PUBSUB_AGENT,
}


@cache
def snapshot() -> dict[str, list[str]]:
    doc = json.loads(SNAPSHOT.read_text())
    assert doc["_retrieved"] and "roles-permissions" in doc["_about"]
    return {name: body["permissions"] for name, body in doc["roles"].items()}


def role_permissions(role: str) -> set[str]:
    custom = re.fullmatch(r"\$\{google_project_iam_custom_role\.(\w+)\[each\.value\]\.id\}", role)
    if custom:
        return set(resource("google_project_iam_custom_role", custom.group(1))["permissions"])
    assert role in snapshot(), f"{role} is not in {SNAPSHOT.name}: add it from Google's predefined roles reference"
    return set(snapshot()[role])


def roles_of(identity: str) -> set[str]:
    if identity == "operator":
        return set(iam.OPERATOR_ROLES)
    return {role for role, _target, _condition in iam_grants()[MEMBERS[identity]]}


def uncovered(calls: tuple[iam.Call, ...]) -> list[str]:
    """Calls whose permission no role of their identity holds."""
    problems = []
    for identity in sorted(iam.identities(calls)):
        granted = set().union(*(role_permissions(r) for r in roles_of(identity)))
        for call in calls:
            if call.identity == identity and call.permission not in granted:
                problems.append(f"{identity}: {call.method} needs {call.permission}, which none of its roles grants")
    return problems


def unused_roles(calls: tuple[iam.Call, ...]) -> list[str]:
    """Roles an identity holds although none of its calls needs any of their permissions."""
    problems = []
    for identity in sorted(iam.identities(calls)):
        needed = iam.permissions_of(identity, calls)
        for role in sorted(roles_of(identity)):
            if not role_permissions(role) & needed:
                problems.append(f"{identity}: {role} is granted but none of its calls uses it")
    return problems


def test_every_call_is_granted() -> None:
    assert not uncovered(iam.CALLS), "\n".join(uncovered(iam.CALLS))


def test_no_identity_holds_a_role_it_never_uses() -> None:
    assert not unused_roles(iam.CALLS), "\n".join(unused_roles(iam.CALLS))


def test_every_granted_member_is_an_identity_of_the_table() -> None:
    assert set(iam_grants()) == set(MEMBERS.values())
    assert iam.identities() == set(MEMBERS) | {"operator"}


def test_a_call_without_its_grant_fails_the_proof() -> None:
    # The planner starts reading objects: nothing grants it storage.objects.get.
    added = (*iam.CALLS, iam.Call("planner", "storage.objects.get", "storage.objects.get", "shared/app/planner.py"))
    assert uncovered(added) == [
        "planner: storage.objects.get needs storage.objects.get, which none of its roles grants"
    ]
    # The worker stops publishing: its publisher role on cdc-work becomes unused.
    dropped = tuple(c for c in iam.CALLS if not (c.identity == "worker" and c.permission == "pubsub.topics.publish"))
    assert unused_roles(dropped) == ["worker: roles/pubsub.publisher is granted but none of its calls uses it"]
    # A call that needs a permission no snapshot role has at all.
    renamed = tuple(
        dataclasses.replace(c, permission="cloudsql.instances.update") if c.method == "sql.instances.export" else c
        for c in iam.CALLS
    )
    assert any("cloudsql.instances.update" in p for p in uncovered(renamed))


def test_the_instance_service_account_can_create_and_delete_exports() -> None:
    needed = iam.permissions_of("sql_instance")
    assert {"storage.objects.create", "storage.objects.delete"} <= needed
    assert roles_of("sql_instance") == {"roles/storage.objectAdmin"}


def test_manifests_need_no_delete() -> None:
    assert "storage.objects.delete" not in iam.permissions_of("worker")
