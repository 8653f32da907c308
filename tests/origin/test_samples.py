"""The sample library is generated once, and an interrupted generation is redone."""

from pathlib import Path

import pytest

from manifests import parse_master
from origin.samples import SAMPLE_SOURCES, ensure_samples
from origin.store.fs import FilesystemStore


def test_generates_missing_samples_once(tmp_path: Path) -> None:
    store = FilesystemStore(tmp_path)
    messages: list[str] = []
    assert ensure_samples(store, 1, progress=messages.append) == ["sample-testsrc"]
    assert any("generating sample video 1/1: sample-testsrc" in m for m in messages)
    master = parse_master(store.read("videos/sample-testsrc/master.m3u8").decode())
    assert [v.resolution for v in master.variants] == [(360, 640), (540, 960), (720, 1280)]

    again: list[str] = []
    assert ensure_samples(store, 1, progress=again.append) == ["sample-testsrc"]
    assert again == []

    # A publish cut short before the master playlist leaves no sample: it is generated again.
    store.delete("videos/sample-testsrc/master.m3u8")
    redo: list[str] = []
    ensure_samples(store, 1, progress=redo.append)
    assert redo and store.exists("videos/sample-testsrc/master.m3u8")


def test_asking_for_more_samples_than_defined_fails(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="sample videos are defined"):
        ensure_samples(FilesystemStore(tmp_path), len(SAMPLE_SOURCES) + 1, progress=print)
