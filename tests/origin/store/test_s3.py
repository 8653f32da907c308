"""The S3 backend beyond the shared contract, against a real SeaweedFS: configuration errors,
prefixes, multipart uploads, and foreign objects in the bucket."""

import hashlib
import os
import secrets
from pathlib import Path

import pytest

from core.config import S3Config, StoreConfig
from origin.store import InvalidKey, ObjectNotFound, S3Store, StoreError, open_store
from origin.store.s3 import MULTIPART_THRESHOLD
from tests.support import USES_SEAWEEDFS, S3Endpoint, free_port

pytestmark = USES_SEAWEEDFS


def open_s3_store(
    endpoint: S3Endpoint,
    *,
    bucket: str | None = None,
    prefix: str = "",
    region: str = "us-east-1",
    secret_access_key: str | None = None,
    create_bucket: bool = False,
) -> S3Store:
    """A store on the test server, with the test bucket and credentials unless told otherwise."""
    return S3Store(
        bucket=bucket or endpoint.bucket,
        prefix=prefix,
        endpoint_url=endpoint.url,
        region=region,
        access_key_id=endpoint.access_key_id,
        secret_access_key=secret_access_key or endpoint.secret_access_key,
        create_bucket=create_bucket,
    )


def new_bucket_name() -> str:
    return f"shoal-{secrets.token_hex(6)}"


def test_a_missing_bucket_is_a_store_error_naming_endpoint_and_bucket(
    seaweedfs: S3Endpoint,
) -> None:
    bucket = new_bucket_name()
    with pytest.raises(StoreError) as raised:
        open_s3_store(seaweedfs, bucket=bucket)
    message = str(raised.value)
    assert f"bucket {bucket!r} does not exist at {seaweedfs.url}" in message
    assert "create_bucket" in message


@pytest.mark.parametrize("region", ["us-east-1", "eu-west-1"])
def test_create_bucket_creates_a_missing_bucket(seaweedfs: S3Endpoint, region: str) -> None:
    bucket = new_bucket_name()
    store = open_s3_store(seaweedfs, bucket=bucket, region=region, create_bucket=True)
    store.put_bytes("videos/v1/master.m3u8", b"#EXTM3U\n")
    again = open_s3_store(seaweedfs, bucket=bucket, region=region, create_bucket=True)
    assert again.read("videos/v1/master.m3u8") == b"#EXTM3U\n"
    store.close()
    again.close()


def test_an_unreachable_endpoint_is_a_store_error_naming_it() -> None:
    endpoint = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with pytest.raises(StoreError) as raised:
        S3Store(bucket="shoal", endpoint_url=endpoint, access_key_id="a", secret_access_key="b")
    assert f"s3://shoal/ at {endpoint}" in str(raised.value)


def test_wrong_credentials_are_a_store_error(seaweedfs: S3Endpoint) -> None:
    with pytest.raises(StoreError, match="HEAD bucket of s3://shoal-tests/"):
        open_s3_store(seaweedfs, secret_access_key="not-the-secret")


@pytest.mark.parametrize(
    ("access_key_id", "secret_access_key"),
    [("AKIA", None), (None, "secret")],
    ids=["key-only", "secret-only"],
)
def test_half_a_credential_is_a_store_error(
    access_key_id: str | None, secret_access_key: str | None
) -> None:
    with pytest.raises(StoreError, match="both access_key_id and secret_access_key"):
        S3Store(
            bucket="shoal",
            endpoint_url="http://127.0.0.1:1",
            access_key_id=access_key_id,
            secret_access_key=secret_access_key,
        )


@pytest.mark.parametrize("prefix", ["/prod/", "../", "prod//", "pr od/"])
def test_an_invalid_prefix_is_a_store_error(prefix: str) -> None:
    with pytest.raises(StoreError, match="invalid key prefix"):
        S3Store(bucket="shoal", prefix=prefix, endpoint_url="http://127.0.0.1:1")


def test_objects_live_under_the_prefix(seaweedfs: S3Endpoint) -> None:
    parent = f"test-{secrets.token_hex(6)}"
    store = open_s3_store(seaweedfs, prefix=f"{parent}/prod")  # the "/" is added
    assert store.prefix == f"{parent}/prod/"
    store.put_bytes("videos/v1/master.m3u8", b"#EXTM3U\n")
    whole_bucket = open_s3_store(seaweedfs)
    assert list(whole_bucket.list(f"{parent}/")) == [f"{parent}/prod/videos/v1/master.m3u8"]
    sibling = open_s3_store(seaweedfs, prefix=f"{parent}/staging/")
    assert list(sibling.list()) == []
    assert not sibling.exists("videos/v1/master.m3u8")
    for opened in (store, whole_bucket, sibling):
        opened.close()


def test_objects_whose_names_are_not_keys_are_not_listed(
    seaweedfs: S3Endpoint, s3_store: S3Store
) -> None:
    client = seaweedfs.client()
    # ("videos//double" would do too on AWS, but SeaweedFS stores it as "videos/double".)
    for name in ("videos/my video.mp4", "videos/.hidden", "videos/-dash", "videos/dir/"):
        client.put_object(Bucket=s3_store.bucket, Key=s3_store.prefix + name, Body=b"foreign")
    client.close()
    s3_store.put_bytes("videos/v1/master.m3u8", b"#EXTM3U\n")
    assert list(s3_store.list()) == ["videos/v1/master.m3u8"]


def test_small_objects_get_md5_etags(s3_store: S3Store) -> None:
    info = s3_store.put_bytes("videos/v1/seg_00001.m4s", b"segment")
    assert info.etag == f'"{hashlib.md5(b"segment").hexdigest()}"'


def test_put_file_above_the_threshold_uploads_in_parts(s3_store: S3Store, tmp_path: Path) -> None:
    data = os.urandom(MULTIPART_THRESHOLD + 1)
    source = tmp_path / "source.mp4"
    source.write_bytes(data)
    info = s3_store.put_file("videos/big/source.mp4", source)
    assert info.etag.endswith('-2"')  # S3's multipart ETag: digest of the part digests, "-parts"
    assert s3_store.read("videos/big/source.mp4") == data


def test_a_bucket_deleted_under_the_store_is_a_store_error(
    seaweedfs: S3Endpoint,
) -> None:
    bucket = new_bucket_name()
    store = open_s3_store(seaweedfs, bucket=bucket, create_bucket=True)
    client = seaweedfs.client()
    client.delete_bucket(Bucket=bucket)
    client.close()
    with pytest.raises(StoreError, match="NoSuchBucket"):
        store.read("videos/v1/master.m3u8")
    with pytest.raises(StoreError, match="NoSuchBucket"):
        store.put_bytes("videos/v1/master.m3u8", b"#EXTM3U\n")
    with pytest.raises(StoreError, match="NoSuchBucket"):
        list(store.list())
    # Keys are checked before any request: the broken bucket is never reached.
    with pytest.raises(InvalidKey):
        store.read("../videos/v1/master.m3u8")
    with pytest.raises(InvalidKey):
        store.put_bytes("/videos/v1/master.m3u8", b"")
    store.close()


def test_open_store_reads_the_s3_section(
    seaweedfs: S3Endpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Empty credentials mean boto3's chain, here the environment.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", seaweedfs.access_key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", seaweedfs.secret_access_key)
    config = StoreConfig(
        backend="s3",
        s3=S3Config(endpoint_url=seaweedfs.url, bucket=seaweedfs.bucket, prefix="cfg/"),
    )
    store = open_store(config, Path("/unused"))
    assert isinstance(store, S3Store)
    assert (store.bucket, store.prefix, store.endpoint_url) == (
        seaweedfs.bucket,
        "cfg/",
        seaweedfs.url,
    )
    with pytest.raises(ObjectNotFound):
        store.stat("videos/none/master.m3u8")
    store.close()
