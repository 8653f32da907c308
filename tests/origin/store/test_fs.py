"""The filesystem backend beyond the shared contract: confinement, symlinks, atomic writes."""

import os
import stat
from pathlib import Path

import pytest

from core.config import StoreConfig
from origin.store import FilesystemStore, InvalidKey, ObjectNotFound, StoreError, open_store


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "store"


@pytest.fixture
def store(root: Path) -> FilesystemStore:
    return FilesystemStore(root)


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A directory beside the store holding a secret the store must never reveal or touch."""
    directory = tmp_path / "outside"
    (directory / "v1").mkdir(parents=True)
    (directory / "secret.txt").write_bytes(b"secret")
    (directory / "v1" / "master.m3u8").write_bytes(b"secret playlist")
    return directory


def files_under(directory: Path) -> list[str]:
    return sorted(str(path.relative_to(directory)) for path in directory.rglob("*"))


def test_the_root_is_created_and_resolved(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    store = FilesystemStore(tmp_path / "link" / "nested" / "store")
    assert store.root == tmp_path.resolve() / "real" / "nested" / "store"
    assert store.root.is_dir()
    store.put_bytes("videos/v1/master.m3u8", b"#EXTM3U\n")
    assert (store.root / "videos" / "v1" / "master.m3u8").read_bytes() == b"#EXTM3U\n"


@pytest.mark.parametrize(
    "key",
    [
        "../outside/secret.txt",
        "videos/../../outside/secret.txt",
        "/etc/passwd",
        "%2e%2e/outside/secret.txt",  # no URL decoding here: "%" is simply not a key character
        "..\\outside\\secret.txt",
        "outside\x00.txt",
    ],
)
def test_traversal_attempts_never_reach_the_filesystem(
    store: FilesystemStore, root: Path, outside: Path, key: str
) -> None:
    with pytest.raises(InvalidKey):
        store.read(key)
    with pytest.raises(InvalidKey):
        store.put_bytes(key, b"overwritten")
    with pytest.raises(InvalidKey):
        store.delete(key)
    assert (outside / "secret.txt").read_bytes() == b"secret"
    assert files_under(root) == []


def test_invalid_keys_are_refused_before_any_io(store: FilesystemStore, root: Path) -> None:
    root.rmdir()  # any filesystem access now fails
    with pytest.raises(ObjectNotFound):
        store.read("videos/v1/master.m3u8")  # a valid key does reach the filesystem
    with pytest.raises(InvalidKey):
        store.read("../videos/v1/master.m3u8")
    with pytest.raises(InvalidKey):
        store.put_bytes("/videos/v1/master.m3u8", b"")
    with pytest.raises(InvalidKey):
        store.list("../")


def test_a_symlink_to_a_file_outside_is_never_followed(
    store: FilesystemStore, root: Path, outside: Path
) -> None:
    (root / "videos").mkdir()
    (root / "videos" / "leak.m3u8").symlink_to(outside / "secret.txt")
    assert not store.exists("videos/leak.m3u8")
    with pytest.raises(ObjectNotFound):
        store.stat("videos/leak.m3u8")
    with pytest.raises(ObjectNotFound):
        store.read("videos/leak.m3u8")
    assert list(store.list()) == []
    store.put_bytes("videos/leak.m3u8", b"replaced")  # replaces the link, not its target
    assert store.read("videos/leak.m3u8") == b"replaced"
    store.delete("videos/leak.m3u8")
    assert (outside / "secret.txt").read_bytes() == b"secret"


def test_a_symlink_to_a_file_inside_is_not_followed_either(
    store: FilesystemStore, root: Path
) -> None:
    store.put_bytes("videos/v1/master.m3u8", b"#EXTM3U\n")
    (root / "alias.m3u8").symlink_to(root / "videos" / "v1" / "master.m3u8")
    with pytest.raises(ObjectNotFound):
        store.read("alias.m3u8")
    assert list(store.list()) == ["videos/v1/master.m3u8"]


def test_a_symlinked_directory_pointing_outside_is_never_listed_read_or_written(
    store: FilesystemStore, root: Path, outside: Path
) -> None:
    (root / "videos").symlink_to(outside, target_is_directory=True)
    with pytest.raises(ObjectNotFound):
        store.read("videos/v1/master.m3u8")
    with pytest.raises(ObjectNotFound):
        store.read("videos/secret.txt")
    assert list(store.list()) == []
    assert list(store.list("videos/")) == []
    assert list(store.list("videos/v1/")) == []
    with pytest.raises(StoreError, match="in the way"):
        store.put_bytes("videos/v2/master.m3u8", b"planted")
    with pytest.raises(StoreError, match="in the way"):
        store.put_bytes("videos/secret.txt", b"overwritten")
    store.delete("videos/v1/master.m3u8")
    assert files_under(outside) == ["secret.txt", "v1", "v1/master.m3u8"]
    assert (outside / "v1" / "master.m3u8").read_bytes() == b"secret playlist"
    assert (outside / "secret.txt").read_bytes() == b"secret"


def test_a_symlinked_directory_deeper_in_the_tree_is_not_followed(
    store: FilesystemStore, root: Path, outside: Path
) -> None:
    store.put_bytes("videos/v1/master.m3u8", b"#EXTM3U\n")
    (root / "videos" / "v2").symlink_to(outside / "v1", target_is_directory=True)
    with pytest.raises(ObjectNotFound):
        store.read("videos/v2/master.m3u8")
    assert list(store.list("videos/")) == ["videos/v1/master.m3u8"]


def test_a_directory_is_not_an_object(store: FilesystemStore, root: Path) -> None:
    (root / "videos" / "empty").mkdir(parents=True)
    with pytest.raises(ObjectNotFound):
        store.stat("videos/empty")
    with pytest.raises(ObjectNotFound):
        store.read("videos/empty")
    store.delete("videos/empty")
    assert list(store.list()) == []


def test_a_fifo_is_not_an_object_and_does_not_block_readers(
    store: FilesystemStore, root: Path
) -> None:
    os.mkfifo(root / "pipe")
    with pytest.raises(ObjectNotFound):
        store.read("pipe")
    with pytest.raises(ObjectNotFound):
        store.stat("pipe")
    assert list(store.list()) == []


def test_files_written_by_other_tools_are_objects(store: FilesystemStore, root: Path) -> None:
    (root / "videos" / "v1").mkdir(parents=True)
    (root / "videos" / "v1" / "seg_00001.m4s").write_bytes(b"copied in")
    info = store.stat("videos/v1/seg_00001.m4s")
    assert info.size == 9
    assert store.stat("videos/v1/seg_00001.m4s") == info
    assert store.read("videos/v1/seg_00001.m4s", 7) == b"in"


def test_temporary_and_unaddressable_files_are_not_listed(
    store: FilesystemStore, root: Path
) -> None:
    store.put_bytes("videos/v1/master.m3u8", b"#EXTM3U\n")
    (root / "videos" / "v1" / ".tmp-0123456789abcdef-master.m3u8").write_bytes(b"half written")
    (root / "videos" / "v1" / "my video.mp4").write_bytes(b"not a key")
    (root / ".hidden").mkdir()
    (root / ".hidden" / "file").write_bytes(b"not a key")
    assert list(store.list()) == ["videos/v1/master.m3u8"]


def test_writes_leave_no_temporary_files(store: FilesystemStore, root: Path) -> None:
    source = root.parent / "source.m4s"
    source.write_bytes(b"segment")
    store.put_bytes("videos/v1/master.m3u8", b"one")
    store.put_bytes("videos/v1/master.m3u8", b"two")
    store.put_file("videos/v1/seg_00001.m4s", source)
    assert files_under(root) == [
        "videos",
        "videos/v1",
        "videos/v1/master.m3u8",
        "videos/v1/seg_00001.m4s",
    ]


def test_a_failed_write_keeps_the_old_object_and_leaves_no_temporary_file(
    store: FilesystemStore, root: Path
) -> None:
    store.put_bytes("videos/v1/seg_00001.m4s", b"old")
    # Reading this file fails with EIO (address 0 is not mapped): the copy dies half way.
    with pytest.raises(OSError):
        store.put_file("videos/v1/seg_00001.m4s", Path("/proc/self/mem"))
    assert store.read("videos/v1/seg_00001.m4s") == b"old"
    assert files_under(root) == ["videos", "videos/v1", "videos/v1/seg_00001.m4s"]


def test_put_file_copies_rather_than_links(store: FilesystemStore, tmp_path: Path) -> None:
    source = tmp_path / "seg.m4s"
    source.write_bytes(b"original")
    store.put_file("videos/v1/seg_00001.m4s", source)
    source.write_bytes(b"changed after the put")
    assert store.read("videos/v1/seg_00001.m4s") == b"original"


def test_new_objects_get_ordinary_file_permissions(store: FilesystemStore, root: Path) -> None:
    umask = os.umask(0o022)
    os.umask(umask)
    store.put_bytes("videos/v1/master.m3u8", b"#EXTM3U\n")
    mode = (root / "videos" / "v1" / "master.m3u8").stat().st_mode
    assert stat.S_IMODE(mode) == 0o666 & ~umask  # readable by the server's user, unlike mkstemp


def test_a_file_in_the_way_of_a_write_is_a_store_error(store: FilesystemStore) -> None:
    store.put_bytes("videos/v1", b"a file where a directory would go")
    with pytest.raises(StoreError) as raised:
        store.put_bytes("videos/v1/master.m3u8", b"#EXTM3U\n")
    assert f"cannot store 'videos/v1/master.m3u8' in {store.root}" in str(raised.value)


def test_a_directory_in_the_way_of_a_write_is_a_store_error(store: FilesystemStore) -> None:
    store.put_bytes("videos/v1/master.m3u8", b"#EXTM3U\n")
    with pytest.raises(StoreError, match="in the way"):
        store.put_bytes("videos/v1", b"a file where a directory is")


def test_delete_removes_the_directories_it_empties(store: FilesystemStore, root: Path) -> None:
    store.put_bytes("videos/v1/r360/seg_00001.m4s", b"1")
    store.put_bytes("videos/v1/master.m3u8", b"2")
    store.delete("videos/v1/r360/seg_00001.m4s")
    assert files_under(root) == ["videos", "videos/v1", "videos/v1/master.m3u8"]
    store.delete("videos/v1/master.m3u8")
    assert files_under(root) == []
    assert root.is_dir()


def test_etag_changes_when_a_same_size_file_replaces_another(store: FilesystemStore) -> None:
    first = store.put_bytes("videos/v1/master.m3u8", b"version 1")
    store.delete("videos/v1/master.m3u8")  # frees the inode for reuse
    second = store.put_bytes("videos/v1/master.m3u8", b"version 2")
    third = store.put_bytes("videos/v1/master.m3u8", b"version 3")
    assert len({first.etag, second.etag, third.etag}) == 3


def test_open_store_uses_the_configured_path_else_the_default(tmp_path: Path) -> None:
    configured = open_store(
        StoreConfig(backend="fs", path=str(tmp_path / "set")), tmp_path / "dflt"
    )
    assert isinstance(configured, FilesystemStore)
    assert configured.root == tmp_path.resolve() / "set"
    default = open_store(StoreConfig(backend="fs"), tmp_path / "default")
    assert isinstance(default, FilesystemStore)
    assert default.root == tmp_path.resolve() / "default"


def test_open_store_refuses_an_unknown_backend(tmp_path: Path) -> None:
    # The config loader allows only "fs" and "s3"; a StoreConfig built in code is not checked.
    with pytest.raises(StoreError, match="unknown store backend 'nfs'"):
        open_store(StoreConfig(backend="nfs"), tmp_path)
