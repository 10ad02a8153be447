"""Offline checks of terraform/: a stand-in for `terraform validate`, plus wiring and least-privilege tests.

The provider plugins cannot be downloaded here, so the module is parsed with python-hcl2 and every
resource / data source is checked against tests/terraform_schema/schema.json (extracted from the
`@cdktf/provider-*` packages by tests/terraform_schema/extract_schema.py).
"""

from __future__ import annotations

import json
import math
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
    "resource": re.compile(r"(?<![\w.])((?:google|archive|time)_\w+)\.(\w+)"),
}


def _expressions() -> Iterator[str]:
    """Every interpolated string, except in `moved` blocks (their `from` names an address that is gone)."""
    for doc in terraform_files().values():
        for text in strings({k: v for k, v in doc.items() if k != "moved"}):
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


def test_versions_pin_google_6_and_the_module_configures_no_provider() -> None:
    (terraform,) = terraform_files()["versions.tf"]["terraform"]
    providers = terraform["required_providers"][0]
    assert providers["google"] == {"source": "hashicorp/google", "version": ">= 6.0, < 7.0"}
    assert providers["google-beta"] == {"source": "hashicorp/google-beta", "version": ">= 6.0, < 7.0"}
    assert providers["time"]["source"] == "hashicorp/time"
    for name, doc in terraform_files().items():
        assert "provider" not in doc, f"{name}: a module never configures its providers (examples/ do)"


def test_moved_blocks_keep_existing_state() -> None:
    moved = {m["from"]: m["to"] for doc in terraform_files().values() for m in doc.get("moved", [])}
    for name in ("planner", "worker"):
        assert (
            moved[f"${{google_cloudfunctions2_function.{name}}}"]
            == f'${{google_cloudfunctions2_function.function["{name}"]}}'
        )
        assert moved[f"${{google_pubsub_subscription.{name}}}"] == f'${{google_pubsub_subscription.push["{name}"]}}'
    for target in moved.values():
        type_name, name = re.fullmatch(r"\$\{(\w+)\.(\w+)\[.*\]\}", target).groups()
        assert (type_name, name) in declarations("resource"), target


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
    assert resource("google_pubsub_subscription", "push")["name"] == "${local.subscription_names[each.key]}"
    assert resource("google_pubsub_subscription", "dead_letter")["name"] == "${local.subscription_names.dead_letter}"
    assert set(functions()) <= set(subscriptions)


def test_scheduler_publishes_a_tick_to_the_ticks_topic_as_its_own_account() -> None:
    (job,) = resources("google_cloud_scheduler_job").values()
    target = block(job, "http_target")
    assert target["uri"] == "https://pubsub.googleapis.com/v1/${google_pubsub_topic.ticks.id}:publish"
    assert target["http_method"] == "POST"
    assert 'kind = "tick"' in target["body"]
    assert block(target, "oauth_token")["service_account_email"] == "${google_service_account.scheduler.email}"
    assert job["paused"] == "${var.paused}"
    assert job["schedule"] == "${var.tick_schedule}"


def functions() -> dict[str, dict[str, Any]]:
    """local.functions: the one map both functions, their subscriptions and their invoker grants iterate."""
    return locals_()["functions"]


def test_functions_and_push_subscriptions_are_one_resource_each() -> None:
    assert list(resources("google_cloudfunctions2_function")) == ["function"]
    assert set(resources("google_pubsub_subscription")) == {"push", "work_shard", "dead_letter"}
    for type_name, name in [
        ("google_cloudfunctions2_function", "function"),
        ("google_pubsub_subscription", "push"),
        ("google_cloud_run_v2_service_iam_member", "push_invokes"),
        ("google_pubsub_subscription_iam_member", "pubsub_agent_acks"),
    ]:
        assert resource(type_name, name)["for_each"] == "${local.functions}", f"{type_name}.{name}"
    assert {k: v["topic"] for k, v in functions().items()} == {"planner": "ticks", "worker": "work"}


@pytest.mark.parametrize(("function", "topic"), [("planner", "ticks"), ("worker", "work")])
def test_function_is_pushed_its_topic_with_retry_and_dead_letter(function: str, topic: str) -> None:
    fn = resource("google_cloudfunctions2_function", "function")
    entry = functions()[function]
    assert "event_trigger" not in fn, "delivery goes through our own push subscription (dead letters)"
    assert fn["name"] == "${var.name_prefix}-${each.key}"
    assert block(fn, "build_config")["entry_point"] == "${each.key}"
    service = block(fn, "service_config")
    assert service["service_account_email"] == "${each.value.account}"
    assert entry["account"] == f"${{google_service_account.{function}.email}}"
    assert service["ingress_settings"] == "ALLOW_INTERNAL_ONLY"
    assert service["min_instance_count"] == 0
    assert service["max_instance_count"] == "${each.value.max_instances}"
    threads = "{THREADS = tostring(each.value.concurrency)}"
    assert service["environment_variables"] == f"${{merge(local.function_env, {threads})}}"
    assert service["max_instance_request_concurrency"] == "${each.value.concurrency}"
    assert service["available_cpu"] == "${each.value.cpu}"
    assert entry["topic"] == topic

    sub = resource("google_pubsub_subscription", "push")
    assert sub["topic"] == "${local.push_topics[each.value.topic].id}"
    assert f"google_pubsub_topic.{topic}.id" in locals_()["push_topics"][topic]["id"]
    push = block(sub, "push_config")
    uri = "google_cloudfunctions2_function.function[each.key].service_config[0].uri"
    assert push["push_endpoint"].startswith(f"${{{uri}}}/projects/${{var.project_id}}/topics/")
    assert push["push_endpoint"].endswith("${local.push_topics[each.value.topic].name}")
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
    timeout_var = re.fullmatch(r"\$\{var\.(\w+)\}", entry["timeout"]).group(1)
    assert variables()[timeout_var]["default"] < sub["ack_deadline_seconds"]
    assert block(sub, "expiration_policy")["ttl"] == ""


def test_worker_timeout_and_size_match_the_design() -> None:
    assert variables()["worker_timeout_seconds"]["default"] == 540
    # Derived from the configured instances and the per-instance concurrency unless set.
    worker = variables()["worker_max_instances"]
    assert worker["default"] is None
    assert "Trade-off" in worker["validation"][0]["error_message"]
    assert locals_()["worker_requests_needed"] == "${2 * length(local.instances)}"
    assert locals_()["worker_max_instances"] == (
        "${coalesce(var.worker_max_instances, ceil(local.worker_requests_needed / var.worker_concurrency) + 1)}"
    )
    assert functions()["worker"]["max_instances"] == "${local.worker_max_instances}"
    assert functions()["worker"]["concurrency"] == "${var.worker_concurrency}"
    assert functions()["planner"]["concurrency"] == 1


def _worker_size(instances: int, concurrency: int, max_instances: int | None = None) -> tuple[int, str | None]:
    """functions.tf's sizing locals, evaluated (max instances, vCPU)."""
    derived = math.ceil(2 * instances / concurrency) + 1
    return (max_instances if max_instances is not None else derived), ("1" if concurrency > 1 else None)


@pytest.mark.parametrize("instances", [1, 2, 6, 50, 199])
@pytest.mark.parametrize("concurrency", [1, 4, 8, 80])
def test_the_derived_worker_serves_two_requests_per_cloud_sql_instance(instances: int, concurrency: int) -> None:
    """Defect (before): concurrency 1 and instances + 1 workers; with more instances than that, pushes got 429."""
    max_instances, cpu = _worker_size(instances, concurrency)
    assert max_instances * concurrency >= 2 * instances
    assert (cpu == "1") == (concurrency > 1), "concurrency above 1 needs 1 vCPU"


def test_undersizing_and_a_cpu_without_its_memory_are_checked_at_plan_time() -> None:
    checks = {name: body for doc in terraform_files().values() for entry in doc.get("check", []) for name, body in
              entry.items()}  # fmt: skip
    capacity = checks["worker_capacity_covers_source_instances"]["assert"][0]
    assert capacity["condition"] == (
        "${local.worker_max_instances * var.worker_concurrency >= local.worker_requests_needed}"
    )
    assert "429" in capacity["error_message"] and "dead-letter" in capacity["error_message"]
    memory = checks["worker_memory_fits_its_cpu"]["assert"][0]
    assert "512" in memory["condition"] and "local.worker_cpu == null" in memory["condition"]
    # What the capacity check would say with the sizes an operator may set: 6 instances need 12 requests at once.
    assert _worker_size(6, 8, max_instances=1)[0] * 8 < 12
    assert _worker_size(6, 8, max_instances=2)[0] * 8 >= 12
    concurrency = variables()["worker_concurrency"]
    assert concurrency["default"] == 8
    assert "1 to 80" in concurrency["validation"][0]["error_message"]


def test_each_cloud_sql_instance_has_its_own_work_topic_pushed_to_the_worker() -> None:
    """The local stack's emulator pushes 2 requests at a time per subscription: one shard per instance, the same
    topology in production and locally (shared/core/sharding.py computes the same names)."""
    shards = locals_()["work_shards"]
    assert "sort(keys(local.instances))" in shards
    assert "${local.topic_names.work}-s${n}" in shards and "${local.topic_names.work}-s${n}-worker" in shards
    topic = resource("google_pubsub_topic", "work_shard")
    assert topic["for_each"] == "${local.work_shards}" and topic["name"] == "${each.value.topic}"
    sub = resource("google_pubsub_subscription", "work_shard")
    assert sub["for_each"] == "${local.work_shards}"
    assert sub["topic"] == "${google_pubsub_topic.work_shard[each.key].id}"
    push = block(sub, "push_config")
    uri = 'google_cloudfunctions2_function.function["worker"].service_config[0].uri'
    assert push["push_endpoint"].startswith(f"${{{uri}}}/projects/${{var.project_id}}/topics/")
    assert block(push, "oidc_token")["audience"] == f"${{{uri}}}"
    main = resource("google_pubsub_subscription", "push")
    for key in ("ack_deadline_seconds", "message_retention_duration"):
        assert sub[key] == main[key], key
    for name in ("retry_policy", "dead_letter_policy", "expiration_policy"):
        assert block(sub, name) == block(main, name), name
    for grant in ("planner_publishes_work_shards", "worker_publishes_work_shards"):
        body = resource("google_pubsub_topic_iam_member", grant)
        assert body["for_each"] == "${local.work_shards}"
        assert body["topic"] == "${google_pubsub_topic.work_shard[each.key].name}"
        assert body["role"] == "roles/pubsub.publisher"
    acks = resource("google_pubsub_subscription_iam_member", "pubsub_agent_acks_work_shards")
    assert acks["subscription"] == "${google_pubsub_subscription.work_shard[each.key].name}"


def test_shard_names_match_the_code() -> None:
    from shared.core.sharding import work_shard_topics

    topics = work_shard_topics("cdc-work", ["p:b", "p:a", "p:b", "q:a"])
    assert topics == {"p:a": "cdc-work-s0", "p:b": "cdc-work-s1", "q:a": "cdc-work-s2"}


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
        ("roles/pubsub.subscriber", "subscription:${local.subscription_names[each.key]}", None),
        ("roles/pubsub.subscriber", "subscription:${google_pubsub_subscription.work_shard[each.key].name}", None),
        ("roles/iam.serviceAccountTokenCreator", "service_account:${google_service_account.push.name}", None),
    }
    # The agent is created explicitly, not spelled by hand.
    assert locals_()["pubsub_service_agent"] == "${google_project_service_identity.pubsub.member}"
    identity = resource("google_project_service_identity", "pubsub")
    assert identity["service"] == "pubsub.googleapis.com"
    assert identity["provider"] == "google-beta"


def test_functions_build_the_entry_module_from_the_uploaded_archive() -> None:
    assert locals_()["function_entry_source"] == "functions/main.py"
    build = block(resource("google_cloudfunctions2_function", "function"), "build_config")
    assert build["environment_variables"] == {"GOOGLE_FUNCTION_SOURCE": "${local.function_entry_source}"}
    assert build["runtime"] == "${var.runtime}"
    assert build["service_account"] == "${google_service_account.build.id}"
    assert build["docker_repository"] == "${google_artifact_registry_repository.functions.id}"
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


def test_firestore_indexes_are_on_the_tasks_collection_of_the_pipelines_database() -> None:
    """Which fields each index has is tests/test_firestore_indexes.py's (against the queries the code issues)."""
    (index,) = resources("google_firestore_index").values()
    assert index["collection"] == "${var.pipeline.firestore_prefix}tasks"
    assert index["database"] == "${local.firestore_database}"
    assert index["for_each"] == "${local.task_indexes}"
    (fields,) = index["dynamic"]
    assert fields["fields"]["content"] == [{"field_path": "${fields.value}", "order": "ASCENDING"}]
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
    "google_artifact_registry_repository_iam_member": "repository",
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
    project = "project:${var.project_id}"
    exports = "bucket:${local.export_bucket_name}"
    root = "${local.root_prefix_condition.title}"
    assert grants["${google_service_account.planner.member}"] == {
        ("roles/datastore.user", project, "${local.firestore_condition.title}"),
        ("roles/pubsub.publisher", "topic:${google_pubsub_topic.work.name}", None),
        ("roles/pubsub.publisher", "topic:${google_pubsub_topic.work_shard[each.key].name}", None),
    }
    assert grants["${google_service_account.worker.member}"] == {
        ("${google_project_iam_custom_role.exporter[each.value].id}", "project:${each.value}", "cdc-source-instances"),
        (
            "${google_project_iam_custom_role.operations_reader[each.value].id}",
            "project:${each.value}",
            "cdc-source-instances-and-operations",
        ),
        ("roles/datastore.user", project, "${local.firestore_condition.title}"),
        ("roles/storage.objectCreator", exports, root),
        ("roles/storage.objectViewer", exports, "cdc-root-prefix-and-listing"),
        ("roles/pubsub.publisher", "topic:${google_pubsub_topic.work.name}", None),
        ("roles/pubsub.publisher", "topic:${google_pubsub_topic.work_shard[each.key].name}", None),
    }
    assert grants["${google_service_account.scheduler.member}"] == {
        ("roles/pubsub.publisher", "topic:${google_pubsub_topic.ticks.name}", None),
    }
    assert grants["${google_service_account.push.member}"] == {
        (
            "roles/run.invoker",
            "run_service:${google_cloudfunctions2_function.function[each.key].service_config[0].service}",
            None,
        ),
    }
    assert grants["${google_service_account.build.member}"] == {
        ("roles/logging.logWriter", project, None),
        ("roles/artifactregistry.writer", "repository:${google_artifact_registry_repository.functions.name}", None),
        ("roles/storage.objectViewer", project, "gcf-v2-sources-only"),
        ("roles/storage.objectViewer", "bucket:${google_storage_bucket.source.name}", None),
    }
    assert grants[INSTANCE_MEMBER] == {("roles/storage.objectAdmin", exports, root)}
    expected_members = {
        "${google_service_account.planner.member}",
        "${google_service_account.worker.member}",
        "${google_service_account.scheduler.member}",
        "${google_service_account.push.member}",
        "${google_service_account.build.member}",
        INSTANCE_MEMBER,
        PUBSUB_AGENT,
    }
    assert set(grants) == expected_members


INSTANCE_MEMBER = "serviceAccount:${data.google_sql_database_instance.source[each.key].service_account_email_address}"


def test_worker_export_role_is_export_on_the_named_instances_only() -> None:
    assert resource("google_project_iam_custom_role", "exporter")["permissions"] == ["cloudsql.instances.export"]
    reader = resource("google_project_iam_custom_role", "operations_reader")
    assert reader["permissions"] == ["cloudsql.instances.get"]
    names = locals_()["instance_names"]
    assert 'resource.name == \\"projects/${i.project}/instances/${i.name}\\"' in names
    exports = block(resource("google_project_iam_member", "worker_exports"), "condition")["expression"]
    assert exports.startswith('resource.type == "sqladmin.googleapis.com/Instance" && (')
    assert "${local.instance_names[each.value]}" in exports
    # Polling: the named instances, or a check that is not on an instance (the project); no other instance.
    polls = block(resource("google_project_iam_member", "worker_polls_operations"), "condition")["expression"]
    assert polls.startswith('resource.type != "sqladmin.googleapis.com/Instance" || (')
    assert "${local.instance_names[each.value]}" in polls


def test_bucket_grants_are_limited_to_the_root_prefix() -> None:
    prefix = locals_()["export_objects_prefix"]
    assert prefix == "projects/_/buckets/${local.export_bucket_name}/objects/${var.pipeline.root}/"
    root = locals_()["root_prefix_condition"]
    assert root["expression"] == 'resource.name.startsWith("${local.export_objects_prefix}")'
    for name in ("worker_creates_objects", "instance_writes_exports"):
        condition = block(resource("google_storage_bucket_iam_member", name), "condition")
        assert condition["expression"] == "${local.root_prefix_condition.expression}"
    reads = block(resource("google_storage_bucket_iam_member", "worker_reads_objects"), "condition")["expression"]
    assert 'resource.name.startsWith("${local.export_objects_prefix}")' in reads


def test_first_apply_waits_for_iam_and_log_metrics() -> None:
    fn = resource("google_cloudfunctions2_function", "function")
    assert "${time_sleep.build_grants_propagate}" in fn["depends_on"]
    sleep = resource("time_sleep", "build_grants_propagate")
    assert "${google_project_iam_member.build}" in sleep["depends_on"]
    assert "${time_sleep.pubsub_agent_grants_propagate}" in resource("google_pubsub_subscription", "push")["depends_on"]
    for name, body in resources("google_monitoring_alert_policy").items():
        uses_log_metric = any("logging.googleapis.com/user/" in t for t in strings(body))
        if uses_log_metric:
            assert "${time_sleep.log_metrics_propagate}" in body["depends_on"], name
    triggers = resource("time_sleep", "log_metrics_propagate")["triggers"]
    assert set(triggers) == set(resources("google_logging_metric"))
    for (type_name, name), body in declarations("data").items():
        if type_name.startswith("google_"):
            assert body.get("depends_on") == ["${google_project_service.enabled}"], (
                f"{type_name}.{name} reads before APIs"
            )


def test_alerts_can_be_switched_off_one_by_one() -> None:
    alerts = variables()["alerts"]
    assert "$1.50 per condition per month" in alerts["description"]
    switches = {
        "function_errors": "errors",
        "dead_letters": "dead_letters",
        "table_lag": "lag",
        "table_lag_absent": "absent",
        "verification_repairs": "repairs",
        "schema_drift": "schema_drift",
    }
    policies = resources("google_monitoring_alert_policy")
    assert set(policies) == set(switches)
    for name, body in policies.items():
        assert body["count"] == f"${{var.alerts.{switches[name]} ? 1 : 0}}"
        assert len(body["conditions"]) == 1, "the cost table counts one condition per policy"


def test_error_metric_counts_only_our_structured_error_records() -> None:
    filter_ = resource("google_logging_metric", "function_errors")["filter"]
    assert 'logName=\\"projects/${var.project_id}/logs/run.googleapis.com%2Fstdout\\"' in filter_
    assert '"severity>=ERROR"' in filter_
    assert '"jsonPayload.message:*"' in filter_
    assert 'NOT jsonPayload.message=\\"table lag over threshold\\"' in filter_
    assert "requests" not in filter_


def test_teardown_semantics_match_the_readme() -> None:
    db = resource("google_firestore_database", "cdc")
    assert db["deletion_policy"] == "ABANDON"
    assert db["delete_protection_state"] == "DELETE_PROTECTION_ENABLED"
    assert resource("google_storage_bucket", "exports")["force_destroy"] == "${var.bucket_force_destroy}"
    assert variables()["bucket_force_destroy"]["default"] is False
    readme = (TERRAFORM / "README.md").read_text()
    assert "import {" in readme and "google_firestore_database.cdc[0]" in readme
    assert "bucket_force_destroy" in readme


def test_labels_come_from_a_variable() -> None:
    assert variables()["labels"]["default"] == {}
    assert "var.labels" in locals_()["labels"]


def test_function_images_have_a_cleanup_policy() -> None:
    repo = resource("google_artifact_registry_repository", "functions")
    assert repo["format"] == "DOCKER"
    assert repo["cleanup_policy_dry_run"] is False
    actions = {p["id"]: p["action"] for p in repo["cleanup_policies"]}
    assert actions == {"keep-recent": "KEEP", "delete-old": "DELETE"}


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
