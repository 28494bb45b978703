"""Output files to S3 with aioboto3: ``s3://<bucket>/<kernel>/<run>/<path>``, with a URL."""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import aioboto3

from sorna.common.config import S3Settings

log = logging.getLogger(__name__)


class OutputStore:
    """One S3 client for the agent's life; uploads files and presigns their URLs."""

    def __init__(self, *, settings: S3Settings, url_expiry: int) -> None:
        self._settings = settings
        self._expiry = url_expiry
        self._stack = contextlib.AsyncExitStack()
        self._client: Any = None

    async def start(self) -> None:
        """Open the client."""
        s = self._settings
        session = aioboto3.Session(
            aws_access_key_id=s.access_key or None,
            aws_secret_access_key=s.secret_key or None,
            region_name=s.region,
        )
        self._client = await self._stack.enter_async_context(
            session.client("s3", endpoint_url=s.endpoint_url)
        )

    async def close(self) -> None:
        """Close the client."""
        self._client = None
        await self._stack.aclose()

    async def upload(self, data: bytes, key: str) -> str | None:
        """Store one file's bytes; return its presigned URL, or None if the upload failed.

        The caller reads the file (from a descriptor opened beneath the kernel's folder):
        handing this a path would open it again by name, through whatever link a kernel
        swapped in meanwhile.
        """
        if self._client is None:
            return None
        try:
            await self._client.put_object(Bucket=self._settings.bucket, Key=key, Body=data)
            url: str = await self._client.generate_presigned_url(
                "get_object",
                Params={"Bucket": self._settings.bucket, "Key": key},
                ExpiresIn=self._expiry,
            )
        except Exception as e:
            log.warning("uploading s3://%s/%s failed: %s", self._settings.bucket, key, e)
            return None
        return url
