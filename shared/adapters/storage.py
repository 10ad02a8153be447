"""The export bucket: object metadata, downloads, and manifest uploads. Errors map through `ERRORS`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import requests
from google.api_core import exceptions as gexc
from google.auth.exceptions import GoogleAuthError
from google.cloud import storage

from shared.adapters.errormap import ErrorTable, maps_errors
from shared.app.ports import ObjectStat
from shared.core.errors import StorageUnavailable

STREAM_CHUNK_BYTES = 1024 * 1024

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

    def exists(self, key: str) -> bool:
        return self._bucket.blob(key).exists()

    def stat(self, key: str) -> ObjectStat | None:
        """The object's size and checksums, or None if it does not exist."""
        blob = self._bucket.get_blob(key)
        if blob is None:
            return None
        return ObjectStat(int(blob.size or 0), blob.crc32c, blob.md5_hash, blob.content_encoding)

    def stream(self, key: str) -> Iterator[bytes]:
        """The object's stored bytes in chunks (no decompressive transcoding: a gzip object stays gzip)."""
        with self._bucket.blob(key).open("rb", chunk_size=STREAM_CHUNK_BYTES, raw_download=True) as reader:
            while chunk := reader.read(STREAM_CHUNK_BYTES):
                yield chunk

    def create_json(self, key: str, document: dict[str, Any]) -> bool:
        """Create a small JSON object such as a manifest; False if the key exists already (it is never replaced,
        so the identity needs `storage.objects.create` only)."""
        body = json.dumps(document, indent=2, sort_keys=True, default=str)
        try:
            self._bucket.blob(key).upload_from_string(body, content_type="application/json", if_generation_match=0)
        except gexc.PreconditionFailed:
            return False
        return True

    def create_bytes(self, key: str, data: bytes, content_type: str) -> ObjectStat | None:
        """Create an object such as a window split out of a pack; None if the key exists already (create-only, as
        the export API writes: the identity needs `storage.objects.create` only).

        Returns the object's size and checksums from the upload's answer: objects.insert returns the object
        resource it stored (size, md5Hash, crc32c; documented for the JSON API), which the client library sets on
        the blob, so nothing is read back."""
        blob = self._bucket.blob(key)
        try:
            blob.upload_from_string(data, content_type=content_type, if_generation_match=0)
        except gexc.PreconditionFailed:
            return None
        return ObjectStat(int(blob.size or 0), blob.crc32c, blob.md5_hash, blob.content_encoding)

    def key_of(self, uri: str) -> str:
        """`gs://bucket/key` -> `key` (only for this bucket)."""
        prefix = f"gs://{self.bucket_name}/"
        if not uri.startswith(prefix):
            raise gexc.NotFound(f"{uri} is not in bucket {self.bucket_name}")
        return uri[len(prefix) :]
