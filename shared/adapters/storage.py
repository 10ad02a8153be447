"""The export bucket: object metadata, downloads, and manifest uploads. Errors map through `ERRORS`."""

from __future__ import annotations

import json
from typing import Any

import requests
from google.api_core import exceptions as gexc
from google.auth.exceptions import GoogleAuthError
from google.cloud import storage

from shared.adapters.errormap import ErrorTable, maps_errors
from shared.core.errors import StorageUnavailable

ERRORS: ErrorTable = (
    (
        (
            gexc.ServiceUnavailable,
            gexc.InternalServerError,
            gexc.BadGateway,
            gexc.GatewayTimeout,
            gexc.TooManyRequests,
            gexc.Forbidden,
            gexc.Unauthorized,
            requests.ConnectionError,
            requests.Timeout,
            GoogleAuthError,
        ),
        StorageUnavailable,
    ),
)


@maps_errors(ERRORS)
class ObjectStore:
    """Objects under one bucket, addressed by key (no gs:// prefix)."""

    def __init__(self, client: storage.Client, bucket: str) -> None:
        self._bucket = client.bucket(bucket)
        self.bucket_name = bucket

    def size(self, key: str) -> int | None:
        """The object's size in bytes, or None if it does not exist."""
        blob = self._bucket.get_blob(key)
        return None if blob is None else int(blob.size or 0)

    def exists(self, key: str) -> bool:
        return self._bucket.blob(key).exists()

    def download(self, key: str) -> bytes:
        return self._bucket.blob(key).download_as_bytes()

    def write_json(self, key: str, document: dict[str, Any]) -> None:
        """Write (or replace) a small JSON object such as a manifest."""
        body = json.dumps(document, indent=2, sort_keys=True, default=str)
        self._bucket.blob(key).upload_from_string(body, content_type="application/json")

    def key_of(self, uri: str) -> str:
        """`gs://bucket/key` -> `key` (only for this bucket)."""
        prefix = f"gs://{self.bucket_name}/"
        if not uri.startswith(prefix):
            raise gexc.NotFound(f"{uri} is not in bucket {self.bucket_name}")
        return uri[len(prefix) :]
