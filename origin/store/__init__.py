"""The content store: the `ContentStore` interface, its backends, and `open_store` to pick one."""

from pathlib import Path

from core.config import StoreConfig
from origin.store.base import (
    ContentStore,
    InvalidKey,
    ObjectInfo,
    ObjectNotFound,
    StoreError,
)
from origin.store.fs import FilesystemStore
from origin.store.s3 import S3Store


def open_store(config: StoreConfig, default_root: Path) -> ContentStore:
    """The backend `config` names; the filesystem one lives at `default_root` unless set.

    The S3 backend checks its bucket here, so a bad endpoint, bucket or credential fails now
    with `StoreError`. Empty strings in `[store.s3]` mean "not set" (boto3's defaults).
    """
    if config.backend == "fs":
        return FilesystemStore(Path(config.path).expanduser() if config.path else default_root)
    if config.backend == "s3":
        s3 = config.s3
        return S3Store(
            bucket=s3.bucket,
            prefix=s3.prefix,
            endpoint_url=s3.endpoint_url or None,
            region=s3.region,
            access_key_id=s3.access_key_id or None,
            secret_access_key=s3.secret_access_key or None,
            create_bucket=s3.create_bucket,
        )
    raise StoreError(f"unknown store backend {config.backend!r} (expected 'fs' or 's3')")


__all__ = [
    "ContentStore",
    "FilesystemStore",
    "InvalidKey",
    "ObjectInfo",
    "ObjectNotFound",
    "S3Store",
    "StoreError",
    "open_store",
]
