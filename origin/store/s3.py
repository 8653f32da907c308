"""The S3 backend: objects in one bucket under an optional key prefix, through boto3.

It talks to AWS or to any S3-compatible server (SeaweedFS, MinIO, Ceph...) at `endpoint_url`,
with path-style addressing (`http://host/bucket/key`): every such server accepts it, and it
needs no wildcard DNS for bucket subdomains.

Errors: a missing object is `ObjectNotFound`; anything else the server or the network gets wrong
(unreachable endpoint, bad credentials, missing bucket, failed upload) is `StoreError`, with a
message naming the endpoint, bucket and key. Opening the store checks the bucket, so a
misconfiguration fails at start rather than on the first request.
"""

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Literal, cast

import boto3
from boto3.exceptions import Boto3Error
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from origin.store.base import (
    ContentStore,
    InvalidKey,
    ObjectInfo,
    ObjectNotFound,
    StoreError,
    check_range,
    is_valid_key,
    validate_key,
    validate_prefix,
)

if TYPE_CHECKING:
    from mypy_boto3_s3.literals import BucketLocationConstraintType

# Files from this size go up in parts of this size (`put_file`). 8 MiB is boto3's default and
# above S3's 5 MiB minimum part size. HLS segments (a few MB) stay single PUTs with plain MD5
# ETags; bigger files go up as parallel parts, and a failed part is retried alone.
MULTIPART_THRESHOLD = 8 * 1024 * 1024
MULTIPART_CHUNKSIZE = 8 * 1024 * 1024
# The origin reads from `asyncio.to_thread`, whose default pool has up to 32 threads; one
# connection each avoids the "connection pool is full" churn of boto3's default of 10.
MAX_POOL_CONNECTIONS = 32
# How a missing object is reported: HEAD has no body, so only its status code ("404").
_MISSING_CODES = frozenset({"404", "NoSuchKey", "NotFound"})


# Building a client loads the S3 service model, ~0.1 s per session; one shared session loads it
# once. Sessions are not thread-safe, so clients are built under a lock (clients themselves are).
_SESSION_LOCK = threading.Lock()


@cache
def _shared_session() -> boto3.session.Session:
    return boto3.session.Session()


def _error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def _describe(error: Exception) -> str:
    if isinstance(error, ClientError):
        message = error.response.get("Error", {}).get("Message", "")
        return f"{_error_code(error)} {message}".rstrip()
    return str(error)


class S3Store(ContentStore):
    """Objects in `bucket` under `prefix` ('' or ending in '/'; a missing '/' is added).

    Credentials are either both given or both None (boto3's chain: environment, config files,
    instance roles). Raises `StoreError` when the bucket cannot be reached or does not exist
    and `create_bucket` is false.
    """

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        endpoint_url: str | None = None,
        region: str = "us-east-1",
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        create_bucket: bool = False,
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix if prefix == "" or prefix.endswith("/") else prefix + "/"
        where = f"bucket {bucket!r} at {endpoint_url or 'the AWS endpoint'}"
        try:
            validate_prefix(self.prefix)
        except InvalidKey as error:
            raise StoreError(f"invalid key prefix {prefix!r} for {where}: {error}") from None
        if (access_key_id is None) != (secret_access_key is None):
            raise StoreError(
                f"give both access_key_id and secret_access_key for {where}, or neither"
            )
        # Third-party servers lag behind the CRC checksums boto3 sends by default since 1.36
        # (aws-chunked uploads some reject or store wrongly): with an explicit endpoint, send
        # checksums only where the API requires them. AWS keeps boto3's defaults.
        checksums: Literal["when_required", "when_supported"] = (
            "when_required" if endpoint_url else "when_supported"
        )
        config = Config(
            s3={"addressing_style": "path"},
            retries={"mode": "standard", "max_attempts": 3},
            connect_timeout=5,
            read_timeout=30,
            max_pool_connections=MAX_POOL_CONNECTIONS,
            request_checksum_calculation=checksums,
            response_checksum_validation=checksums,
        )
        with _SESSION_LOCK:
            self._client = _shared_session().client(
                "s3",
                endpoint_url=endpoint_url,
                region_name=region,
                aws_access_key_id=access_key_id,
                aws_secret_access_key=secret_access_key,
                config=config,
            )
        self.endpoint_url: str = self._client.meta.endpoint_url
        self._transfer = TransferConfig(
            multipart_threshold=MULTIPART_THRESHOLD, multipart_chunksize=MULTIPART_CHUNKSIZE
        )
        try:
            self._check_bucket(region, create_bucket)
        except BaseException:
            self._client.close()
            raise

    def __repr__(self) -> str:
        return f"S3Store({self.endpoint_url}/{self.bucket}/{self.prefix})"

    def _failure(self, operation: str, key: str, error: Exception) -> StoreError:
        where = f"s3://{self.bucket}/{self.prefix}{key} at {self.endpoint_url}"
        return StoreError(f"S3 {operation} of {where} failed: {_describe(error)}")

    @contextmanager
    def _translate_errors(self, operation: str, key: str | None = None) -> Iterator[None]:
        """Turn boto3's exceptions into `StoreError`, or `ObjectNotFound` for a given `key`."""
        try:
            yield
        except ClientError as error:
            if key is not None and _error_code(error) in _MISSING_CODES:
                raise ObjectNotFound(key) from None
            raise self._failure(operation, key or "", error) from error
        except (BotoCoreError, Boto3Error) as error:
            raise self._failure(operation, key or "", error) from error

    def _check_bucket(self, region: str, create_bucket: bool) -> None:
        try:
            self._client.head_bucket(Bucket=self.bucket)
            return
        except ClientError as error:
            if _error_code(error) not in _MISSING_CODES:
                raise self._failure("HEAD bucket", "", error) from error
        except (BotoCoreError, Boto3Error) as error:
            raise self._failure("HEAD bucket", "", error) from error
        if not create_bucket:
            raise StoreError(
                f"bucket {self.bucket!r} does not exist at {self.endpoint_url}: create it, "
                "or set store.s3.create_bucket = true"
            )
        with self._translate_errors("CREATE bucket"):
            try:
                if region == "us-east-1":  # AWS refuses an explicit constraint for its default
                    self._client.create_bucket(Bucket=self.bucket)
                else:
                    # Any name goes on S3-compatible servers; the stubs list only AWS's regions.
                    constraint = cast("BucketLocationConstraintType", region)
                    self._client.create_bucket(
                        Bucket=self.bucket,
                        CreateBucketConfiguration={"LocationConstraint": constraint},
                    )
            except self._client.exceptions.BucketAlreadyOwnedByYou:
                pass  # another node created it first

    def _object_key(self, key: str) -> str:
        return self.prefix + validate_key(key)

    def stat(self, key: str) -> ObjectInfo:
        object_key = self._object_key(key)
        with self._translate_errors("HEAD", key):
            response = self._client.head_object(Bucket=self.bucket, Key=object_key)
        return ObjectInfo(
            key=key,
            size=response["ContentLength"],
            etag=response["ETag"],
            last_modified=response["LastModified"].timestamp(),
        )

    def read(self, key: str, start: int = 0, length: int | None = None) -> bytes:
        object_key = self._object_key(key)
        check_range(start, length)
        if length == 0:
            self.stat(key)  # nothing to fetch, but a missing object must still say so
            return b""
        with self._translate_errors("GET", key):
            try:
                if start == 0 and length is None:
                    response = self._client.get_object(Bucket=self.bucket, Key=object_key)
                else:
                    end = "" if length is None else start + length - 1
                    response = self._client.get_object(
                        Bucket=self.bucket, Key=object_key, Range=f"bytes={start}-{end}"
                    )
            except ClientError as error:
                # 416: the object exists but `start` is at or past its end (or it is empty).
                if _error_code(error) == "InvalidRange":
                    return b""
                raise
            with response["Body"] as body:
                return body.read()

    def put_bytes(self, key: str, data: bytes) -> ObjectInfo:
        object_key = self._object_key(key)
        with self._translate_errors("PUT", key):
            self._client.put_object(Bucket=self.bucket, Key=object_key, Body=data)
        return self.stat(key)

    def put_file(self, key: str, path: Path) -> ObjectInfo:
        object_key = self._object_key(key)
        with self._translate_errors("upload", key):
            self._client.upload_file(str(path), self.bucket, object_key, Config=self._transfer)
        return self.stat(key)

    def delete(self, key: str) -> None:
        object_key = self._object_key(key)
        with self._translate_errors("DELETE", key):
            self._client.delete_object(Bucket=self.bucket, Key=object_key)

    def list(self, prefix: str = "") -> Iterator[str]:
        validate_prefix(prefix)
        keys = []
        with self._translate_errors("LIST"):
            pages = self._client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=self.prefix + prefix
            )
            for page in pages:
                for item in page.get("Contents", ()):
                    key = item["Key"][len(self.prefix) :]
                    # Objects written by other tools may have names no key can address.
                    if is_valid_key(key):
                        keys.append(key)
        # S3 promises byte order, but SeaweedFS (4.48) lists directory by directory, giving
        # "a/b" before "a-c"; sorting here makes every server keep the interface's promise.
        keys.sort()
        return iter(keys)

    def close(self) -> None:
        self._client.close()
