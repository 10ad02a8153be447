"""Offline checks of terraform/: a stand-in for `terraform validate`, plus wiring and least-privilege tests.

The provider plugins cannot be downloaded here, so the module is parsed with python-hcl2 and every
resource / data source is checked against tests/terraform_schema/schema.json (extracted from the
`@cdktf/provider-*` packages by tests/terraform_schema/extract_schema.py).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import hcl2
import pytest

REPO = Path(__file__).resolve().parent.parent
TERRAFORM = REPO / "terraform"
SCHEMA = Path(__file__).resolve().parent / "terraform_schema" / "schema.json"

META_ARGUMENTS = {"count", "for_each", "depends_on", "provider", "lifecycle", "provisioner", "connection"}
PUBSUB_AGENT = "${local.pubsub_service_agent}"


@cache
def terraform_files() -> dict[str, dict[str, Any]]:
    """Every terraform/*.tf parsed to plain dicts (blocks are lists of dicts, attributes are values)."""
    options = hcl2.SerializationOptions(strip_string_quotes=True, explicit_blocks=False, with_comments=False)
    parsed = {}
    for path in sorted(TERRAFORM.glob("*.tf")):
        with path.open() as handle:
            parsed[path.name] = hcl2.load(handle, serialization_options=options)
    return parsed


def declarations(kind: str) -> dict[tuple[str, str], dict[str, Any]]:
    """(type, name) -> body for every `resource` or `data` block."""
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for doc in terraform_files().values():
        for entry in doc.get(kind, []):
            for type_name, named in entry.items():
                for name, body in named.items():
                    assert (type_name, name) not in found, f"{kind} {type_name}.{name} declared twice"
                    found[(type_name, name)] = body
    return found


def resources(type_name: str) -> dict[str, dict[str, Any]]:
    return {name: body for (t, name), body in declarations("resource").items() if t == type_name}


def resource(type_name: str, name: str) -> dict[str, Any]:
    return declarations("resource")[(type_name, name)]


@cache
def variables() -> dict[str, dict[str, Any]]:
    found = {}
    for doc in terraform_files().values():
        for entry in doc.get("variable", []):
            found.update(entry)
    return found


@cache
def locals_() -> dict[str, Any]:
    found: dict[str, Any] = {}
    for doc in terraform_files().values():
        for block in doc.get("locals", []):
            for key, value in block.items():
                assert key not in found, f"local.{key} declared twice"
                found[key] = value
    return found


def block(body: dict[str, Any], name: str) -> dict[str, Any]:
    """The single nested block `name` of a body."""
    blocks = body.get(name)
    assert isinstance(blocks, list) and len(blocks) == 1, f"expected one {name} block, got {blocks!r}"
    return blocks[0]


def strings(value: Any) -> Iterator[str]:
    """Every string anywhere in a parsed value, dict keys included."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)


def render_default(template: str) -> str:
    """Substitute variable defaults into a simple "${var.x}-suffix" template."""
    return re.sub(r"\$\{var\.(\w+)\}", lambda m: str(variables()[m.group(1)]["default"]), template)


# --- validate stand-in -------------------------------------------------------------------------------


@cache
def schema() -> dict[str, Any]:
    return json.loads(SCHEMA.read_text())


def _check_body(path: str, body: dict[str, Any], spec: dict[str, Any], top: bool) -> list[str]:
    problems = []
    attributes, blocks = spec["attributes"], spec["blocks"]
    present = set(body)
    for dynamic in body.get("dynamic", []):
        for name, dyn in dynamic.items():
            if name not in blocks:
                problems.append(f"{path}: dynamic block {name!r} is not a block of this type")
                continue
            present.add(name)
            for content in dyn.get("content", []):
                problems += _check_body(f"{path}.{name}", content, blocks[name], top=False)
    for key, value in body.items():
        if key == "dynamic" or (top and key in META_ARGUMENTS):
            continue
        where = f"{path}.{key}"
        if key in blocks:
            if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
                problems.append(f"{where}: {key} is a block, write `{key} {{ ... }}`")
                continue
            if blocks[key]["max_one"] and len(value) > 1:
                problems.append(f"{where}: at most one {key} block")
            for item in value:
                problems += _check_body(where, item, blocks[key], top=False)
        elif key in attributes:
            if (
                isinstance(value, list)
                and value
                and all(isinstance(item, dict) for item in value)
                and (attributes[key]["type"] not in ("list", "any"))
            ):
                problems.append(f"{where}: {key} is an argument, not a block")
            allowed = attributes[key].get("enum")
            literal = [value] if isinstance(value, str) else value if isinstance(value, list) else []
            for item in literal:
                if allowed and isinstance(item, str) and "${" not in item and item not in allowed:
                    problems.append(f"{where}: {item!r} is not one of {allowed}")
        else:
            problems.append(f"{where}: unknown argument or block")
    for name, attribute in attributes.items():
        if attribute["required"] and name not in present:
            problems.append(f"{path}: missing required argument {name!r}")
    for name, nested in blocks.items():
        if nested["required"] and name not in present:
            problems.append(f"{path}: missing required block {name!r}")
    return problems


def test_schema_subset_covers_every_type_used() -> None:
    for kind in ("resource", "data"):
        missing = {t for t, _ in declarations(kind)} - set(schema()[kind])
        assert not missing, (
            f"{kind} types {sorted(missing)} are not in {SCHEMA.name}; "
            "run python3 tests/terraform_schema/extract_schema.py"
        )


def test_every_argument_and_block_matches_the_provider_schema() -> None:
    problems = []
    for kind in ("resource", "data"):
        for (type_name, name), body in declarations(kind).items():
            spec = schema()[kind].get(type_name)
            if spec is not None:
                problems += _check_body(f"{kind}.{type_name}.{name}", body, spec, top=True)
    assert not problems, "\n".join(problems)


def test_schema_check_catches_typos_missing_arguments_and_bad_enums() -> None:
    spec = schema()["resource"]["google_cloudfunctions2_function"]
    body = {
        "name": "f",
        "service_config": [{"ingress_settings": "ALLOW_SOME", "timout_seconds": 60}],
        "bild_config": [{}],
    }
    problems = "\n".join(_check_body("f", body, spec, top=True))
    assert "missing required argument 'location'" in problems
    assert "'ALLOW_SOME' is not one of" in problems
    assert "timout_seconds: unknown argument" in problems
    assert "bild_config: unknown argument" in problems


_REFERENCE = {
    "var": re.compile(r"(?<![\w.])var\.(\w+)"),
    "local": re.compile(r"(?<![\w.])local\.(\w+)"),
    "data": re.compile(r"(?<![\w.])data\.(\w+)\.(\w+)"),
    "resource": re.compile(r"(?<![\w.])((?:google|archive)_\w+)\.(\w+)"),
}


def _expressions() -> Iterator[str]:
    for doc in terraform_files().values():
        for text in strings(doc):
            if "${" in text:
                yield text


def test_every_reference_is_declared() -> None:
    declared = {
        "var": set(variables()),
        "local": set(locals_()),
        "data": set(declarations("data")),
        "resource": set(declarations("resource")),
    }
    problems = set()
    for text in _expressions():
        for kind, pattern in _REFERENCE.items():
            for match in pattern.finditer(text):
                key = match.groups() if kind in ("data", "resource") else match.group(1)
                if key not in declared[kind]:
                    problems.add(f"{kind}.{'.'.join(match.groups())} in {text!r}")
    assert not problems, "undeclared references:\n" + "\n".join(sorted(problems))


def test_every_variable_is_used_and_documented() -> None:
    used = {m.group(1) for text in _expressions() for m in _REFERENCE["var"].finditer(text)}
    assert set(variables()) - used == set(), "unused variables"
    for name, body in variables().items():
        assert body.get("description"), f"variable {name} has no description"
        assert "type" in body, f"variable {name} has no type"


def test_versions_pin_google_6() -> None:
    (terraform,) = terraform_files()["versions.tf"]["terraform"]
    google = terraform["required_providers"][0]["google"]
    assert google["source"] == "hashicorp/google"
    assert google["version"] == ">= 6.0, < 7.0"


# --- wiring --------------------------------------------------------------------------------------------


def test_default_names_are_the_contract_names() -> None:
    assert variables()["name_prefix"]["default"] == "cdc"
    topics = {k: render_default(v) for k, v in locals_()["topic_names"].items()}
    subscriptions = {k: render_default(v) for k, v in locals_()["subscription_names"].items()}
    assert topics == {"ticks": "cdc-ticks", "work": "cdc-work", "dead_letter": "cdc-dead-letter"}
    assert subscriptions == {
        "planner": "cdc-ticks-planner",
        "worker": "cdc-work-worker",
        "dead_letter": "cdc-dead-letter-keep",
    }
    for name in ("ticks", "work", "dead_letter"):
        assert resource("google_pubsub_topic", name)["name"] == f"${{local.topic_names.{name}}}"
    for name in ("planner", "worker", "dead_letter"):
        assert resource("google_pubsub_subscription", name)["name"] == f"${{local.subscription_names.{name}}}"


def test_scheduler_publishes_a_tick_to_the_ticks_topic_as_its_own_account() -> None:
    (job,) = resources("google_cloud_scheduler_job").values()
    target = block(job, "http_target")
    assert target["uri"] == "https://pubsub.googleapis.com/v1/${google_pubsub_topic.ticks.id}:publish"
    assert target["http_method"] == "POST"
    assert 'kind = "tick"' in target["body"]
    assert block(target, "oauth_token")["service_account_email"] == "${google_service_account.scheduler.email}"
    assert job["paused"] == "${var.paused}"
    assert job["schedule"] == "${var.tick_schedule}"


@pytest.mark.parametrize(("function", "topic"), [("planner", "ticks"), ("worker", "work")])
def test_function_is_pushed_its_topic_with_retry_and_dead_letter(function: str, topic: str) -> None:
    fn = resource("google_cloudfunctions2_function", function)
    assert "event_trigger" not in fn, "delivery goes through our own push subscription (dead letters)"
    assert block(fn, "build_config")["entry_point"] == function
    service = block(fn, "service_config")
    assert service["service_account_email"] == f"${{google_service_account.{function}.email}}"
    assert service["ingress_settings"] == "ALLOW_INTERNAL_ONLY"
    assert service["min_instance_count"] == 0
    assert service["max_instance_count"] == f"${{var.{function}_max_instances}}"
    assert service["environment_variables"] == "${local.function_env}"

    sub = resource("google_pubsub_subscription", function)
    assert sub["topic"] == f"${{google_pubsub_topic.{topic}.id}}"
    push = block(sub, "push_config")
    uri = f"google_cloudfunctions2_function.{function}.service_config[0].uri"
    assert push["push_endpoint"].startswith(f"${{{uri}}}/projects/${{var.project}}/topics/")
    assert push["push_endpoint"].endswith(f"${{google_pubsub_topic.{topic}.name}}")
    oidc = block(push, "oidc_token")
    assert oidc["service_account_email"] == "${google_service_account.push.email}"
    assert oidc["audience"] == f"${{{uri}}}"
    retry = block(sub, "retry_policy")
    assert retry["minimum_backoff"] == "10s"
    assert retry["maximum_backoff"] == "600s"
    dead = block(sub, "dead_letter_policy")
    assert dead["dead_letter_topic"] == "${google_pubsub_topic.dead_letter.id}"
    assert dead["max_delivery_attempts"] == "${var.max_delivery_attempts}"
    # The ack deadline must outlast the function, or Pub/Sub redelivers while the function still runs.
    assert sub["ack_deadline_seconds"] == 600
    timeout_var = re.fullmatch(r"\$\{var\.(\w+)\}", service["timeout_seconds"]).group(1)
    assert variables()[timeout_var]["default"] < sub["ack_deadline_seconds"]
    assert block(sub, "expiration_policy")["ttl"] == ""


def test_worker_timeout_and_budget_match_the_design() -> None:
    assert variables()["worker_timeout_seconds"]["default"] == 540
    assert variables()["worker_max_instances"]["default"] <= 3


def test_dead_letters_are_kept_and_pubsub_may_forward_them() -> None:
    keep = resource("google_pubsub_subscription", "dead_letter")
    assert keep["topic"] == "${google_pubsub_topic.dead_letter.id}"
    assert "push_config" not in keep
    assert keep["message_retention_duration"] == "2678400s"
    assert block(keep, "expiration_policy")["ttl"] == ""

    grants = iam_grants()
    agent = grants[PUBSUB_AGENT]
    assert agent == {
        ("roles/pubsub.publisher", "topic:${google_pubsub_topic.dead_letter.name}", None),
        ("roles/pubsub.subscriber", "subscription:${google_pubsub_subscription.planner.name}", None),
        ("roles/pubsub.subscriber", "subscription:${google_pubsub_subscription.worker.name}", None),
        ("roles/iam.serviceAccountTokenCreator", "service_account:${google_service_account.push.name}", None),
    }
    assert "service-${data.google_project.this.number}@gcp-sa-pubsub" in locals_()["pubsub_service_agent"]


def test_functions_build_the_entry_module_from_the_uploaded_archive() -> None:
    assert locals_()["function_entry_source"] == "functions/main.py"
    for function in ("planner", "worker"):
        build = block(resource("google_cloudfunctions2_function", function), "build_config")
        assert build["environment_variables"] == {"GOOGLE_FUNCTION_SOURCE": "${local.function_entry_source}"}
        assert build["runtime"] == "${var.runtime}"
        assert build["service_account"] == "${google_service_account.build.id}"
        storage = block(block(build, "source"), "storage_source")
        assert storage["object"] == "${google_storage_bucket_object.function_source.name}"
    assert variables()["runtime"]["default"] in ("python311", "python312")
    obj = resource("google_storage_bucket_object", "function_source")
    assert obj["source"] == "${data.archive_file.function_source.output_path}"
    assert "output_md5" in obj["name"], "a new source must be a new object, or functions are not redeployed"


def test_config_reaches_the_functions_as_cdc_config() -> None:
    env = locals_()["function_env"]
    assert env["CDC_CONFIG"] == "${jsonencode(local.cdc_config)}"
    config = locals_()["cdc_config"]
    for key in ("project", "region", "bucket", "root", "firestore", "topics", "sources"):
        assert f"{key} = " in config or f"{key}=" in config, f"CDC_CONFIG lacks {key}"
    assert "ticks = google_pubsub_topic.ticks.name" in config
    assert "work = google_pubsub_topic.work.name" in config


def test_firestore_index_serves_the_workers_query() -> None:
    (index,) = resources("google_firestore_index").values()
    assert index["collection"] == "${var.pipeline.firestore_prefix}tasks"
    assert index["database"] == "${local.firestore_database}"
    fields = [(f["field_path"], f["order"]) for f in index["fields"]]
    assert fields == [("instance", "ASCENDING"), ("state", "ASCENDING"), ("order_key", "ASCENDING")]
    pipeline_type = variables()["pipeline"]["type"]
    assert 'firestore_prefix = optional(string, "cdc_")' in pipeline_type
    db = resource("google_firestore_database", "cdc")
    assert db["type"] == "FIRESTORE_NATIVE"


def test_export_bucket_is_private_versioned_and_uniform() -> None:
    for name in ("exports", "source"):
        bucket = resource("google_storage_bucket", name)
        assert bucket["uniform_bucket_level_access"] is True
        assert bucket["public_access_prevention"] == "enforced"
        assert block(bucket, "versioning")["enabled"] is True


# --- least privilege -----------------------------------------------------------------------------------

IAM_TYPES = {
    "google_project_iam_member": "project",
    "google_storage_bucket_iam_member": "bucket",
    "google_pubsub_topic_iam_member": "topic",
    "google_pubsub_subscription_iam_member": "subscription",
    "google_service_account_iam_member": "service_account",
    "google_cloud_run_v2_service_iam_member": "name",
}


def _grant_target(type_name: str, body: dict[str, Any]) -> str:
    key = IAM_TYPES[type_name]
    label = {"name": "run_service"}.get(key, key)
    return f"{label}:{body[{'service_account': 'service_account_id'}.get(key, key)]}"


def iam_grants() -> dict[str, set[tuple[str, str, str | None]]]:
    """member -> {(role, target, condition title or None)}; for_each over local maps is expanded."""
    grants: dict[str, set[tuple[str, str, str | None]]] = {}
    for type_name in IAM_TYPES:
        for body in resources(type_name).values():
            roles = [body["role"]]
            titles = [block(body, "condition")["title"] if "condition" in body else None]
            if body["role"] == "${each.key}":
                source = re.fullmatch(r"\$\{local\.(\w+)\}", body["for_each"]).group(1)
                roles = list(locals_()[source])
                titles = [None if v is None else v["title"] for v in locals_()[source].values()]
            for role, title in zip(roles, titles, strict=True):
                grants.setdefault(body["member"], set()).add((role, _grant_target(type_name, body), title))
    return grants


def test_each_account_has_exactly_its_roles() -> None:
    grants = iam_grants()
    project = "project:${var.project}"
    exports = "bucket:${local.export_bucket_name}"
    assert grants["${google_service_account.planner.member}"] == {
        ("roles/datastore.user", project, "${local.firestore_condition.title}"),
        ("roles/pubsub.publisher", "topic:${google_pubsub_topic.work.name}", None),
    }
    assert grants["${google_service_account.worker.member}"] == {
        ("${google_project_iam_custom_role.exporter[each.value].id}", "project:${each.value}", "cdc-source-instances"),
        ("roles/datastore.user", project, "${local.firestore_condition.title}"),
        ("roles/storage.objectCreator", exports, "cdc-root-prefix"),
        ("roles/storage.objectViewer", exports, "cdc-root-prefix-and-listing"),
        ("roles/pubsub.publisher", "topic:${google_pubsub_topic.work.name}", None),
    }
    assert grants["${google_service_account.scheduler.member}"] == {
        ("roles/pubsub.publisher", "topic:${google_pubsub_topic.ticks.name}", None),
    }
    assert grants["${google_service_account.push.member}"] == {
        ("roles/run.invoker", "run_service:${google_cloudfunctions2_function.planner.service_config[0].service}", None),
        ("roles/run.invoker", "run_service:${google_cloudfunctions2_function.worker.service_config[0].service}", None),
    }
    assert grants["${google_service_account.build.member}"] == {
        ("roles/logging.logWriter", project, None),
        ("roles/artifactregistry.writer", project, None),
        ("roles/storage.objectViewer", project, "gcf-v2-sources-only"),
        ("roles/storage.objectViewer", "bucket:${google_storage_bucket.source.name}", None),
    }
    instance_member = (
        "serviceAccount:${data.google_sql_database_instance.source[each.key].service_account_email_address}"
    )
    assert grants[instance_member] == {("roles/storage.objectCreator", exports, "cdc-root-prefix")}
    expected_members = {
        "${google_service_account.planner.member}",
        "${google_service_account.worker.member}",
        "${google_service_account.scheduler.member}",
        "${google_service_account.push.member}",
        "${google_service_account.build.member}",
        instance_member,
        PUBSUB_AGENT,
    }
    assert set(grants) == expected_members


def test_worker_export_role_is_export_and_get_on_the_named_instances_only() -> None:
    role = resource("google_project_iam_custom_role", "exporter")
    assert sorted(role["permissions"]) == ["cloudsql.instances.export", "cloudsql.instances.get"]
    binding = resource("google_project_iam_member", "worker_exports")
    expression = block(binding, "condition")["expression"]
    assert 'resource.type == \\"sqladmin.googleapis.com/Instance\\"' in expression
    assert 'resource.name == \\"projects/${i.project}/instances/${i.name}\\"' in expression


def test_bucket_grants_are_limited_to_the_root_prefix() -> None:
    prefix = locals_()["export_objects_prefix"]
    assert prefix == "projects/_/buckets/${local.export_bucket_name}/objects/${var.pipeline.root}/"
    for name in ("worker_creates_objects", "worker_reads_objects", "instance_writes_exports"):
        expression = block(resource("google_storage_bucket_iam_member", name), "condition")["expression"]
        assert 'resource.name.startsWith("${local.export_objects_prefix}")' in expression


def test_no_public_members_basic_roles_or_broad_impersonation() -> None:
    texts = [t for doc in terraform_files().values() for t in strings(doc)]
    for forbidden in ("allUsers", "allAuthenticatedUsers", "roles/owner", "roles/editor", "roles/viewer"):
        assert not [t for t in texts if forbidden in t], forbidden
    assert not [t for t in texts if "roles/iam.serviceAccountUser" in t]
    for type_name in declarations("resource"):
        type_ = type_name[0]
        assert not type_.endswith(("_iam_policy", "_iam_binding")), f"{type_} is authoritative: use _iam_member"
    for body in resources("google_project_iam_member").values():
        assert body["role"] != "roles/iam.serviceAccountTokenCreator"
    for body in resources("google_cloud_run_v2_service_iam_member").values():
        assert body["member"] == "${google_service_account.push.member}"
