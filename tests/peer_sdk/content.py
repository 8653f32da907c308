"""A synthetic HLS package, published in a FilesystemStore the way origin/ladder.py lays it out:
master playlist, one fMP4-style rendition (init + segments of random bytes), integrity list."""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass

from origin.store.fs import FilesystemStore

RENDITION = "360p"


@dataclass(frozen=True)
class Package:
    video_id: str
    segments: list[bytes]

    @property
    def sha256(self) -> str:
        """What a full playback of the rendition hashes to (`PlayResult.sha256`)."""
        return hashlib.sha256(b"".join(self.segments)).hexdigest()

    @property
    def size(self) -> int:
        return sum(map(len, self.segments))


def publish(
    store: FilesystemStore, video_id: str, count: int = 30, size: int = 40_000, seed: int = 0
) -> Package:
    rng = random.Random(seed)
    segments = [rng.randbytes(size + rng.randrange(size // 4)) for _ in range(count)]
    files = {"init.mp4": b"synthetic-init"}
    files.update({f"seg_{i:05d}.m4s": data for i, data in enumerate(segments)})
    prefix = f"videos/{video_id}/{RENDITION}"
    for name, data in files.items():
        store.put_bytes(f"{prefix}/{name}", data)
    digests = {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}
    integrity = {"version": 1, "algorithm": "sha256", "segments": digests}
    store.put_bytes(f"{prefix}/integrity.json", json.dumps(integrity).encode())
    media = [
        "#EXTM3U",
        "#EXT-X-VERSION:7",
        "#EXT-X-TARGETDURATION:2",
        "#EXT-X-PLAYLIST-TYPE:VOD",
        '#EXT-X-MAP:URI="init.mp4"',
    ]
    for i in range(count):
        media += ["#EXTINF:2.000000,", f"seg_{i:05d}.m4s"]
    media.append("#EXT-X-ENDLIST")
    store.put_bytes(f"{prefix}/index.m3u8", ("\n".join(media) + "\n").encode())
    master = (
        "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-INDEPENDENT-SEGMENTS\n"
        '#EXT-X-STREAM-INF:BANDWIDTH=200000,AVERAGE-BANDWIDTH=160000,CODECS="avc1.64001e",'
        "RESOLUTION=360x640,FRAME-RATE=30.000\n"
        f"{RENDITION}/index.m3u8\n"
    )
    store.put_bytes(f"videos/{video_id}/master.m3u8", master.encode())
    return Package(video_id, segments)
