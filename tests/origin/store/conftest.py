"""Store fixtures: each test gets an empty store of its own."""

import secrets
from collections.abc import Iterator

import pytest

from origin.store.s3 import S3Store
from tests.support import S3Endpoint


@pytest.fixture
def s3_store(seaweedfs: S3Endpoint) -> Iterator[S3Store]:
    """An S3 store under a fresh key prefix of the shared test bucket: empty, and isolated."""
    store = S3Store(
        bucket=seaweedfs.bucket,
        prefix=f"test-{secrets.token_hex(6)}/",
        endpoint_url=seaweedfs.url,
        region=seaweedfs.region,
        access_key_id=seaweedfs.access_key_id,
        secret_access_key=seaweedfs.secret_access_key,
    )
    yield store
    store.close()
