"""Disk tier records: atomic, self-checking, found again after a restart, safe across processes."""

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edge.disk import ABANDONED_TEMP_SECONDS, MAGIC, CorruptRecord, DiskTier

META = {"key": "/v/abc/360p/seg_00001.m4s", "status": 200, "headers": {"etag": '"a"'}}
BODY = bytes(range(256)) * 4096  # 1 MiB


def test_a_record_round_trips(tmp_path: Path) -> None:
    tier = DiskTier(tmp_path)
    written = tier.write("7:/v/abc/360p/seg_00001.m4s", META, BODY)
    record = tier.open("7:/v/abc/360p/seg_00001.m4s")
    assert record is not None
    try:
        assert record.info.metadata == META
        assert record.info.body_length == len(BODY) == written.body_length
        assert record.read_body() == BODY
        # The offset is where the body starts in the file: what sendfile needs.
        with open(record.info.path, "rb") as file:
            file.seek(record.info.body_offset)
            assert file.read(16) == BODY[:16]
    finally:
        record.close()
    assert tier.open("missing") is None


def test_a_restarted_tier_finds_its_records(tmp_path: Path) -> None:
    first = DiskTier(tmp_path)
    for i in range(5):
        first.write(f"{i}:/v/x/{i}.m4s", {"n": i}, BODY[: 1000 * (i + 1)])
    found = {r.object_id: r for r in DiskTier(tmp_path).scan()}
    assert sorted(found) == [f"{i}:/v/x/{i}.m4s" for i in range(5)]
    assert found["3:/v/x/3.m4s"].metadata == {"n": 3}
    assert found["3:/v/x/3.m4s"].body_length == 4000


@pytest.mark.parametrize("damage", ["truncate", "append", "header"])
def test_records_whose_size_lies_are_dropped_on_open(tmp_path: Path, damage: str) -> None:
    tier = DiskTier(tmp_path)
    info = tier.write("obj", META, BODY)
    data = info.path.read_bytes()
    damaged = {
        "truncate": data[: len(data) - 1000],
        "append": data + b"extra",
        "header": b"XXXX" + data[4:],
    }[damage]
    info.path.write_bytes(damaged)
    with pytest.raises(CorruptRecord):
        tier.open("obj")
    assert not info.path.exists()
    assert tier.open("obj") is None  # gone: the next request refetches


def test_same_size_corruption_is_caught_by_the_checksum(tmp_path: Path) -> None:
    tier = DiskTier(tmp_path)
    info = tier.write("obj", META, BODY)
    tier.write("good", META, BODY)
    with open(info.path, "r+b") as file:
        file.seek(info.body_offset + 500_000)
        file.write(b"\x00\xff")
    record = tier.open("obj")  # the cheap check (sizes) passes
    assert record is not None
    record.close()
    with pytest.raises(CorruptRecord, match="checksum"):
        tier.open("obj", verify=True)
    tier.write("obj", META, BODY)
    with open(tier.path_of("obj"), "r+b") as file:
        file.seek(info.body_offset + 10)
        file.write(b"\x01")
    assert [r.object_id for r in DiskTier(tmp_path).scan()] == ["good"]
    assert not tier.path_of("obj").exists()


def test_unfinished_writes_are_cleaned_up_and_never_read(tmp_path: Path) -> None:
    tier = DiskTier(tmp_path)
    info = tier.write("obj", META, BODY)
    abandoned = info.path.with_name(".tmp-deadbeef")
    abandoned.write_bytes(MAGIC + b"half")
    old = time.time() - ABANDONED_TEMP_SECONDS - 1
    os.utime(abandoned, (old, old))
    # A recent one may be another worker's write in progress: it is left alone.
    in_progress = info.path.with_name(".tmp-cafebabe")
    in_progress.write_bytes(MAGIC + b"half")
    assert [r.object_id for r in tier.scan()] == ["obj"]
    assert not abandoned.exists()
    assert in_progress.exists()


def test_workers_share_out_the_records_each_to_exactly_one(tmp_path: Path) -> None:
    tier = DiskTier(tmp_path)
    ids = {f"object-{n}" for n in range(60)}
    for object_id in ids:
        tier.write(object_id, META, BODY)
    shares = [{r.object_id for r in tier.scan(share, 3)} for share in range(3)]
    assert set().union(*shares) == ids
    assert sum(len(share) for share in shares) == len(ids)
    assert all(share for share in shares)  # 60 records: each worker gets some


def test_an_open_record_keeps_its_bytes_when_replaced(tmp_path: Path) -> None:
    tier = DiskTier(tmp_path)
    tier.write("obj", META, b"a" * 1000)
    record = tier.open("obj")
    assert record is not None
    tier.write("obj", META, b"b" * 2000)
    assert record.read_body() == b"a" * 1000  # a reader mid-response is not disturbed
    record.close()
    fresh = tier.open("obj")
    assert fresh is not None and fresh.read_body() == b"b" * 2000
    fresh.close()


_WRITER = """
import sys, time
from pathlib import Path
from edge.disk import DiskTier
tier = DiskTier(Path(sys.argv[1]))
marker = sys.argv[2].encode()
deadline = time.monotonic() + float(sys.argv[3])
n = 0
while time.monotonic() < deadline:
    n += 1
    tier.write("shared", {"writer": sys.argv[2], "n": n}, marker * (200_000 + n % 7 * 1000))
"""


def test_two_workers_writing_never_expose_a_half_written_record(tmp_path: Path) -> None:
    seconds = 1.5
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", _WRITER, str(tmp_path), marker, str(seconds)], env=env
        )
        for marker in ("A", "B")
    ]
    tier = DiskTier(tmp_path)
    reads = 0
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            record = tier.open("shared", verify=True)  # raises if ever not whole
            if record is None:
                continue
            body = record.read_body()
            record.close()
            marker = record.info.metadata["writer"].encode()
            assert body == marker * len(body), "a record mixed two writers' bytes"
            assert hashlib.sha256(body).digest()  # read fully
            reads += 1
    finally:
        for writer in writers:
            writer.wait(timeout=30)
    assert all(w.returncode == 0 for w in writers)
    assert reads > 10
