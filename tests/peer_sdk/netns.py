"""Network namespaces for WebRTC tests: peers need real (non-loopback) addresses.

`peer_namespaces(n)` makes n namespaces, each pair joined by its own veth link (so peers reach
each other directly), and each with a veth to the root namespace. The test's servers listen on
`server_ip`, the root end of the first namespace's link; the other namespaces get a host route
to it through their own link (the root namespace answers for its addresses on any interface, so
nothing is forwarded and no sysctl changes). Nothing touches the machine's own interfaces.
Names carry a random suffix; everything is deleted on exit, also on failure.
"""

from __future__ import annotations

import itertools
import os
import random
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest

# Tests that create namespaces run on one xdist worker, one after the other: they add
# addresses to the root namespace.
USES_NETNS = [pytest.mark.xdist_group("netns"), pytest.mark.slow]


@dataclass(frozen=True)
class Topology:
    namespaces: list[str]
    server_ip: str

    def exec_prefix(self, index: int) -> list[str]:
        """The command prefix that runs a program inside namespace `index`."""
        return ["ip", "netns", "exec", self.namespaces[index]]


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


def require_netns() -> None:
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("network namespaces need root and iproute2")


@contextmanager
def peer_namespaces(count: int) -> Iterator[Topology]:
    require_netns()
    suffix = secrets.token_hex(3)
    base = random.Random().randrange(100, 200)
    namespaces = [f"shoal{n}{suffix}" for n in range(count)]
    links: list[str] = []
    try:
        for name in namespaces:
            _ip("netns", "add", name)
            _ip("-n", name, "link", "set", "lo", "up")
        subnet = itertools.count(base)
        for (a, name_a), (b, name_b) in itertools.combinations(enumerate(namespaces), 2):
            octet, left, right = next(subnet), f"p{a}{b}a{suffix}", f"p{a}{b}b{suffix}"
            _ip("link", "add", left, "type", "veth", "peer", "name", right)
            links.append(left)
            for end, ns, host in ((left, name_a, 1), (right, name_b, 2)):
                _ip("link", "set", end, "netns", ns)
                _ip("-n", ns, "addr", "add", f"10.77.{octet}.{host}/24", "dev", end)
                _ip("-n", ns, "link", "set", end, "up")
        uplinks = [next(subnet) for _ in namespaces]
        server_ip = f"10.77.{uplinks[0]}.1"
        for n, (name, octet) in enumerate(zip(namespaces, uplinks, strict=True)):
            root_end, ns_end = f"r{n}{suffix}", f"u{n}{suffix}"
            _ip("link", "add", root_end, "type", "veth", "peer", "name", ns_end)
            links.append(root_end)
            _ip("addr", "add", f"10.77.{octet}.1/24", "dev", root_end)
            _ip("link", "set", root_end, "up")
            _ip("link", "set", ns_end, "netns", name)
            _ip("-n", name, "addr", "add", f"10.77.{octet}.2/24", "dev", ns_end)
            _ip("-n", name, "link", "set", ns_end, "up")
            if n:
                _ip("-n", name, "route", "add", f"{server_ip}/32", "via", f"10.77.{octet}.1")
        yield Topology(namespaces, server_ip)
    finally:
        for link in links:  # gone already if its namespace end went with the namespace
            subprocess.run(["ip", "link", "del", link], capture_output=True, timeout=10)
        for name in namespaces:
            subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=10)
