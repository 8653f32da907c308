"""Upload staging on a real directory: appends, claims, completion, expiry, and recovery.

Recovery is tested the hard way where it matters: a child process appends and dies with
`os._exit` (no commit, no cleanup), and a fresh `UploadStaging` loads what it left.
"""

import hashlib
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from origin.staging import (
    OffsetMismatch,
    StagingError,
    UploadBusy,
    UploadNotFound,
    UploadStaging,
    UploadState,
    UploadTooLarge,
    is_upload_id,
)

T0 = 1_700_000_000.0
DAY = 86_400.0
REPO = Path(__file__).resolve().parents[2]
HOSTILE_IDS = [
    "../../etc/passwd",
    "..",
    "",
    "0" * 31,
    "0" * 33,
    "A" * 32,
    "g" * 32,
    "0" * 31 + "/",
    "0" * 31 + "\x00",
    "/" + "0" * 31,
]


def create(staging: UploadStaging, length: int, user: str = "alice") -> UploadState:
    return staging.create(
        user_id=user,
        length=length,
        metadata={"filename": "clip.mp4", "flag": None},
        created_at=T0,
        expires_at=T0 + DAY,
    )


def append(staging: UploadStaging, upload_id: str, data: bytes) -> UploadState:
    with staging.claim(upload_id) as claimed:
        writer = claimed.begin_append(claimed.state.offset)
        writer.write(data)
        return writer.commit()


def test_upload_ids() -> None:
    assert is_upload_id("0123456789abcdef" * 2)
    for hostile in HOSTILE_IDS:
        assert not is_upload_id(hostile)


def test_create_append_and_reload(tmp_path: Path) -> None:
    staging = UploadStaging(tmp_path / "staging")
    state = create(staging, 10)
    assert is_upload_id(state.upload_id)
    assert (state.offset, state.finished, state.sha256) == (0, False, None)
    assert append(staging, state.upload_id, b"hello").offset == 5
    with staging.claim(state.upload_id) as claimed:
        writer = claimed.begin_append(5)
        writer.write(b"wor")
        writer.write(b"ld")
        assert (writer.start, writer.written) == (5, 5)
        assert writer.commit().offset == 10

    reloaded = UploadStaging(tmp_path / "staging")
    again = reloaded.get(state.upload_id)
    assert again == staging.get(state.upload_id)
    assert again.metadata == {"filename": "clip.mp4", "flag": None}
    assert again.finished
    assert reloaded.data_path(state.upload_id).read_bytes() == b"helloworld"
    assert [s.upload_id for s in reloaded.uploads()] == [state.upload_id]


def test_rollback_and_offset_mismatch(tmp_path: Path) -> None:
    staging = UploadStaging(tmp_path)
    state = create(staging, 10)
    append(staging, state.upload_id, b"abc")
    with staging.claim(state.upload_id) as claimed:
        with pytest.raises(OffsetMismatch) as mismatch:
            claimed.begin_append(0)
        assert (mismatch.value.expected, mismatch.value.actual) == (3, 0)
        writer = claimed.begin_append(3, tentative=True)
        writer.write(b"defg")
        assert writer.rollback().offset == 3
        with pytest.raises(StagingError):
            writer.write(b"x")
    assert staging.data_path(state.upload_id).read_bytes() == b"abc"
    assert UploadStaging(tmp_path).get(state.upload_id).offset == 3


def test_write_past_the_length_writes_nothing(tmp_path: Path) -> None:
    staging = UploadStaging(tmp_path)
    state = create(staging, 4)
    with staging.claim(state.upload_id) as claimed:
        writer = claimed.begin_append(0)
        writer.write(b"ab")
        with pytest.raises(UploadTooLarge):
            writer.write(b"cde")
        assert writer.written == 2
        assert writer.commit().offset == 2
    assert staging.data_path(state.upload_id).read_bytes() == b"ab"


def test_claims_are_exclusive_and_never_wait(tmp_path: Path) -> None:
    staging = UploadStaging(tmp_path)
    state = create(staging, 4)
    with staging.claim(state.upload_id) as claimed:
        with pytest.raises(UploadBusy), staging.claim(state.upload_id):
            pass
        with pytest.raises(UploadBusy):
            staging.discard(state.upload_id)
        assert not staging.expire(state.upload_id, T0 + 2 * DAY)
        writer = claimed.begin_append(0)
        writer.write(b"ab")
    # The claim ended with the append still open: it was rolled back, and the claim released.
    with staging.claim(state.upload_id) as claimed:
        assert claimed.state.offset == 0
    assert staging.data_path(state.upload_id).read_bytes() == b""
    with pytest.raises(StagingError):
        claimed.begin_append(0)


def test_complete_hand_off_and_discard(tmp_path: Path) -> None:
    staging = UploadStaging(tmp_path)
    data = bytes(range(256)) * 5000
    state = create(staging, len(data))
    upload_id = state.upload_id
    append(staging, upload_id, data)
    with staging.claim(upload_id) as claimed:
        with pytest.raises(StagingError):
            claimed.mark_handed_off()
        completed = claimed.complete()
        assert completed.sha256 == hashlib.sha256(data).hexdigest()
        with pytest.raises(StagingError):
            claimed.discard()
        assert claimed.mark_handed_off().handed_off
    staging.discard(upload_id)
    assert not staging.data_path(upload_id).exists()
    kept = UploadStaging(tmp_path).get(upload_id)
    assert (kept.discarded, kept.handed_off, kept.sha256) == (True, True, completed.sha256)
    assert kept.finished


def test_complete_needs_every_byte(tmp_path: Path) -> None:
    staging = UploadStaging(tmp_path)
    state = create(staging, 4)
    append(staging, state.upload_id, b"abc")
    with staging.claim(state.upload_id) as claimed, pytest.raises(StagingError):
        claimed.complete()


def test_terminate(tmp_path: Path) -> None:
    staging = UploadStaging(tmp_path)
    state = create(staging, 4)
    append(staging, state.upload_id, b"ab")
    with staging.claim(state.upload_id) as claimed:
        claimed.begin_append(2).write(b"c")
        claimed.terminate()
    with pytest.raises(UploadNotFound):
        staging.get(state.upload_id)
    assert list(tmp_path.iterdir()) == []
    assert UploadStaging(tmp_path).uploads() == []


def test_expire_and_sweep(tmp_path: Path) -> None:
    staging = UploadStaging(tmp_path)
    unfinished = create(staging, 4)
    finished = create(staging, 2)
    append(staging, finished.upload_id, b"ok")
    later = create(staging, 4)
    staging.create(user_id="bob", length=1, metadata={}, created_at=T0, expires_at=T0 + 3 * DAY)
    assert not staging.expire(unfinished.upload_id, T0 + DAY - 1)
    assert not staging.expire("f" * 32, T0 + DAY)
    assert staging.sweep(T0 + DAY - 1) == []

    assert sorted(staging.sweep(T0 + DAY)) == sorted([unfinished.upload_id, later.upload_id])
    assert len(staging.uploads()) == 2
    assert staging.get(finished.upload_id).finished
    assert not staging.data_path(unfinished.upload_id).exists()
    assert staging.sweep(T0 + 2 * DAY) == []


@pytest.mark.parametrize("hostile", HOSTILE_IDS)
def test_hostile_ids_name_no_file(tmp_path: Path, hostile: str) -> None:
    staging = UploadStaging(tmp_path / "staging")
    with pytest.raises(UploadNotFound):
        staging.get(hostile)
    with pytest.raises(UploadNotFound):
        staging.data_path(hostile)
    with pytest.raises(UploadNotFound), staging.claim(hostile):
        pass
    with pytest.raises(UploadNotFound):
        staging.discard(hostile)
    assert not staging.expire(hostile, T0)


def test_load_cleans_leftovers(tmp_path: Path) -> None:
    staging = UploadStaging(tmp_path)
    state = create(staging, 4)
    orphan = tmp_path / ("e" * 32 + ".bin")
    orphan.write_bytes(b"no state")
    temp = tmp_path / f"{state.upload_id}.0badcafe.tmp"
    temp.write_text("{")
    unrelated = tmp_path / "README"
    unrelated.write_text("operator notes")
    corrupt_state = tmp_path / ("d" * 32 + ".json")
    corrupt_state.write_text("{not json")
    corrupt_data = tmp_path / ("d" * 32 + ".bin")
    corrupt_data.write_bytes(b"keep for the operator")

    reloaded = UploadStaging(tmp_path)
    assert [s.upload_id for s in reloaded.uploads()] == [state.upload_id]
    assert not orphan.exists()
    assert not temp.exists()
    assert unrelated.exists() and corrupt_state.exists() and corrupt_data.exists()


def test_discarded_upload_loses_its_data_on_load(tmp_path: Path) -> None:
    # A crash between marking discarded and deleting the file leaves the file behind.
    staging = UploadStaging(tmp_path)
    state = create(staging, 1)
    append(staging, state.upload_id, b"x")
    with staging.claim(state.upload_id) as claimed:
        claimed.complete()
        claimed.mark_handed_off()
        claimed.discard()
    staging.data_path(state.upload_id).write_bytes(b"x")
    reloaded = UploadStaging(tmp_path)
    assert reloaded.get(state.upload_id).discarded
    assert not reloaded.data_path(state.upload_id).exists()


_CRASHING_APPEND = textwrap.dedent(
    """
    import os, sys
    from pathlib import Path
    from origin.staging import UploadStaging

    staging = UploadStaging(Path(sys.argv[1]))
    with staging.claim(sys.argv[2]) as claimed:
        writer = claimed.begin_append(int(sys.argv[3]), tentative=sys.argv[4] == "tentative")
        writer.write(b"y" * 1000)
        writer.write(b"z" * 500)
        os._exit(0)  # dies mid-append: no commit, no rollback, no cleanup
    """
)


def crash_during_append(root: Path, upload_id: str, offset: int, mode: str) -> None:
    child = subprocess.run(
        [sys.executable, "-c", _CRASHING_APPEND, str(root), upload_id, str(offset), mode],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert child.returncode == 0, child.stderr


def test_crash_keeps_the_bytes_of_a_plain_append(tmp_path: Path) -> None:
    state = create(UploadStaging(tmp_path), 4000)
    append(UploadStaging(tmp_path), state.upload_id, b"x" * 100)
    crash_during_append(tmp_path, state.upload_id, 100, "plain")

    reloaded = UploadStaging(tmp_path)
    assert reloaded.get(state.upload_id).offset == 1600
    expected = b"x" * 100 + b"y" * 1000 + b"z" * 500
    assert reloaded.data_path(state.upload_id).read_bytes() == expected
    # The adopted offset was recorded: a third load agrees without looking at the file.
    record = json.loads((tmp_path / f"{state.upload_id}.json").read_text())
    assert record["offset"] == 1600


def test_crash_drops_a_tentative_append_whole(tmp_path: Path) -> None:
    state = create(UploadStaging(tmp_path), 4000)
    append(UploadStaging(tmp_path), state.upload_id, b"x" * 100)
    crash_during_append(tmp_path, state.upload_id, 100, "tentative")
    assert (tmp_path / f"{state.upload_id}.bin").stat().st_size == 1600

    reloaded = UploadStaging(tmp_path)
    assert reloaded.get(state.upload_id).offset == 100
    assert reloaded.data_path(state.upload_id).read_bytes() == b"x" * 100
    record = json.loads((tmp_path / f"{state.upload_id}.json").read_text())
    assert record["tentative_from"] is None
