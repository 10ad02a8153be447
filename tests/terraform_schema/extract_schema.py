"""Extract the schema subset that tests/test_terraform.py checks terraform/ against.

`terraform validate` needs the provider plugins, which cannot be downloaded on the machines this
project is checked on. The CDK for Terraform packages `@cdktf/provider-google`, `@cdktf/provider-google-beta`,
`@cdktf/provider-archive` and `@cdktf/provider-time` are generated from the providers' schemas and ship them as a jsii
assembly (`.jsii`, JSON): for every resource and data source a Config struct whose properties are
the arguments and blocks, with required/optional, and enum values in the docs ("Possible values").

This script reads those assemblies (from npm, or from local .tgz/.jsii files), keeps only the
resource and data source types terraform/*.tf uses, and writes schema.json next to itself:

    {"providers": {...versions...},
     "resource": {"google_pubsub_topic": {"attributes": {...}, "blocks": {...}}, ...},
     "data": {...}}

attribute: {"required": bool, "type": "string|number|bool|list|map", "enum": [...]?}
block:     {"required": bool, "max_one": bool, "attributes": {...}, "blocks": {...}}

Run it again after adding a resource type to terraform/:  python3 tests/terraform_schema/extract_schema.py
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
TERRAFORM_DIR = HERE.parent.parent / "terraform"
OUTPUT = HERE / "schema.json"
# In this order: a type found in an earlier provider is taken from it (google before google-beta).
PACKAGES = {
    "google": "@cdktf/provider-google@16",
    "google-beta": "@cdktf/provider-google-beta@16",
    "archive": "@cdktf/provider-archive@10",
    "time": "@cdktf/provider-time@10",
}

_DECL = re.compile(r'^\s*(resource|data)\s+"([a-z0-9_]+)"\s+"', re.MULTILINE)
_TYPE_LINK = re.compile(
    r"registry\.terraform\.io/providers/hashicorp/([\w-]+)/([\d.]+)/docs/(resources|data-sources)/\w+ (\w+)\}"
)
_ARG_LINK = re.compile(r"#([a-z0-9_]+) \w+#\1\}")
_ENUM = re.compile(r"Possible values: \[([^\]]*)\]")
_META = {"count", "dependsOn", "forEach", "lifecycle", "provider", "connection", "provisioners"}


def used_types(terraform_dir: Path) -> dict[str, set[str]]:
    """Resource and data source types declared in terraform/*.tf."""
    found: dict[str, set[str]] = {"resource": set(), "data": set()}
    for tf in sorted(terraform_dir.glob("*.tf")):
        for kind, type_name in _DECL.findall(tf.read_text()):
            found[kind].add(type_name)
    return found


def fetch_assembly(spec: str, workdir: Path) -> dict:
    """`npm pack` one package and read its .jsii (a local .tgz or .jsii path is accepted too)."""
    path = Path(spec)
    if path.suffix == ".jsii" or path.name == ".jsii":
        return json.loads(path.read_text())
    if not path.exists():
        out = subprocess.run(["npm", "pack", spec, "--silent"], cwd=workdir, check=True, capture_output=True, text=True)
        path = workdir / out.stdout.strip().splitlines()[-1]
    with tarfile.open(path) as tar:
        member = tar.extractfile("package/.jsii")
        if member is None:
            raise SystemExit(f"{path}: no package/.jsii")
        return json.load(member)


def _tf_name(prop: dict) -> str:
    docs = prop.get("docs", {})
    match = _ARG_LINK.search(docs.get("remarks", "") + " " + docs.get("summary", ""))
    if match:
        return match.group(1)
    return re.sub(r"(?<!^)([A-Z])", r"_\1", prop["name"]).lower()


def _struct_fqn(type_ref: dict, types: dict) -> tuple[str | None, bool]:
    """(struct fqn, max_one) when the property is a nested block, else (None, False)."""
    candidates = type_ref.get("union", {}).get("types", [type_ref])
    for candidate in candidates:
        fqn = candidate.get("fqn")
        if fqn and types.get(fqn, {}).get("datatype"):
            return fqn, True
        element = candidate.get("collection", {}).get("elementtype", {}).get("fqn")
        if element and types.get(element, {}).get("datatype"):
            return element, False
    return None, False


def _value_type(type_ref: dict) -> str:
    candidates = type_ref.get("union", {}).get("types", [type_ref])
    for candidate in candidates:
        if "primitive" in candidate:
            return {"boolean": "bool"}.get(candidate["primitive"], candidate["primitive"])
        if "collection" in candidate:
            return "map" if candidate["collection"]["kind"] == "map" else "list"
    return "any"


def struct_schema(fqn: str, types: dict) -> dict:
    attributes: dict[str, dict] = {}
    blocks: dict[str, dict] = {}
    for prop in types[fqn].get("properties", []):
        if prop["name"] in _META:
            continue
        name = _tf_name(prop)
        required = not prop.get("optional", False)
        nested, max_one = _struct_fqn(prop["type"], types)
        if nested:
            blocks[name] = {"required": required, "max_one": max_one, **struct_schema(nested, types)}
            continue
        attribute: dict = {"required": required, "type": _value_type(prop["type"])}
        docs = prop.get("docs", {})
        enum = _ENUM.search(docs.get("summary", "") + " " + docs.get("remarks", ""))
        if enum:
            attribute["enum"] = re.findall(r'"([^"]*)"', enum.group(1))
        attributes[name] = attribute
    return {"attributes": dict(sorted(attributes.items())), "blocks": dict(sorted(blocks.items()))}


def index_types(assembly: dict) -> dict[tuple[str, str], tuple[str, str]]:
    """(kind, terraform type) -> (config struct fqn, provider version) for every class in the assembly."""
    types = assembly["types"]
    found = {}
    for cls in types.values():
        if cls.get("kind") != "class" or "initializer" not in cls:
            continue
        match = _TYPE_LINK.search(cls.get("docs", {}).get("summary", ""))
        if not match:
            continue
        _provider, version, section, tf_type = match.groups()
        params = {p["name"]: p["type"].get("fqn") for p in cls["initializer"].get("parameters", [])}
        if params.get("config"):
            kind = "resource" if section == "resources" else "data"
            found[(kind, tf_type)] = (params["config"], version)
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for provider, spec in PACKAGES.items():
        parser.add_argument(f"--{provider}", default=spec, help="npm spec, .tgz or .jsii")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args(argv)

    wanted = used_types(TERRAFORM_DIR)
    result: dict = {"providers": {}, "resource": {}, "data": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for provider in PACKAGES:
            assembly = fetch_assembly(getattr(args, provider.replace("-", "_")), Path(tmp))
            index = index_types(assembly)
            result["providers"][provider] = {"package": f"{assembly['name']}@{assembly['version']}"}
            for (kind, tf_type), (config_fqn, version) in sorted(index.items()):
                if tf_type in wanted[kind] and tf_type not in result[kind]:
                    result["providers"][provider]["terraform_provider_version"] = version
                    result[kind][tf_type] = struct_schema(config_fqn, assembly["types"])

    missing = [f"{kind} {t}" for kind, names in wanted.items() for t in sorted(names) if t not in result[kind]]
    if missing:
        print("not found in the assemblies: " + ", ".join(missing), file=sys.stderr)
        return 1
    for kind in ("resource", "data"):
        result[kind] = dict(sorted(result[kind].items()))
    args.output.write_text(json.dumps(result, indent=1, sort_keys=False) + "\n")
    print(f"wrote {args.output} ({len(result['resource'])} resources, {len(result['data'])} data sources)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
