"""Where the configuration comes from: the only reader of the environment.

In order of precedence:
1. `CDC_CONFIG`: the JSON document itself (inline), or
2. `CDC_CONFIG_FILE`: a path to it. Setting both is an error (no silent precedence).
`CDC_SQLADMIN_ENDPOINT` optionally overrides the Cloud SQL Admin API root (local stack: http://127.0.0.1:PORT/).
`CDC_TEMPLATES_DIR` optionally overrides the template root (default: templates/ of the deployed archive); the fault
suite serves a copy it can break and repair while the functions run.

The document is validated by shared/core/config.py, then every template it names is rendered once.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from shared.core import logs
from shared.core.config import Config, parse_config
from shared.core.errors import ConfigError, TemplateError
from shared.core.templates import TEMPLATES_DIR, Templates


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ConfigError("(config)", key, "appears twice in one JSON object")
        result[key] = value
    return result


def _read_json(text: str, origin: str, origin_value: str) -> dict[str, Any]:
    try:
        return json.loads(text, object_pairs_hook=_no_duplicate_keys)
    except json.JSONDecodeError as e:
        raise ConfigError(
            origin, origin_value, f"is not valid JSON: {e.msg} at line {e.lineno} column {e.colno}"
        ) from e


def templates_root(environ: Mapping[str, str] = os.environ) -> Path:
    """The template root: `CDC_TEMPLATES_DIR` if set (it must be a folder), else the archive's templates/."""
    value = environ.get("CDC_TEMPLATES_DIR")
    if not value:
        return TEMPLATES_DIR
    if not Path(value).is_dir():
        raise ConfigError("CDC_TEMPLATES_DIR", value, "is not a folder", hint="unset it to use templates/")
    return Path(value)


def load_config(environ: Mapping[str, str] = os.environ) -> Config:
    """Read, validate and check the templates of the configuration named by the environment (see top)."""
    inline = environ.get("CDC_CONFIG")
    path = environ.get("CDC_CONFIG_FILE")
    if inline and path:
        raise ConfigError("CDC_CONFIG_FILE", path, "is set together with CDC_CONFIG; set only one of them")
    if inline:
        doc = _read_json(inline, "CDC_CONFIG", inline[:60])
    elif path:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as e:
            raise ConfigError("CDC_CONFIG_FILE", path, f"cannot be read ({e.strerror})") from e
        doc = _read_json(text, "CDC_CONFIG_FILE", path)
    else:
        raise ConfigError(
            "CDC_CONFIG",
            None,
            "is not set",
            hint="set CDC_CONFIG to the JSON document or CDC_CONFIG_FILE to its path",
        )
    config = parse_config(doc, sqladmin_endpoint=environ.get("CDC_SQLADMIN_ENDPOINT") or None)
    try:
        Templates(templates_root(environ)).validate(config)
    except TemplateError as exc:
        # Not fatal: the tasks of that template fail with its name while every other table exports.
        logs.error("a template cannot render; its tasks will fail", template=exc.template, error=str(exc))
    return config
