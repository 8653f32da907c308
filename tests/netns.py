"""Network namespaces on one private LAN, for tests whose peers speak WebRTC.

WebRTC gathers no loopback candidates (neither Chromium nor aioice), so peers that must connect
to each other each run in a network namespace of their own. `Lan` makes a Linux bridge in the
root namespace holding the LAN's first address (servers the peers use bind to it: they are then
reachable from every namespace and from nothing outside this machine), and `Lan.add` makes a
namespace joined to the bridge by a veth pair, with the next address. Peers in two namespaces
reach each other across the bridge (plain layer 2: no forwarding, no routes, nothing changed
in the root namespace but the links made here).

Every name carries a random tag, so parallel runs never collide, and `Lan.close` (or leaving
the `with` block, also on failure) deletes exactly what this LAN made: its namespaces (which
takes their veth ends and the peers with them) and its bridge. Needs root and iproute2;
`require_netns` fails the calling test with the reason otherwise.
"""

import ipaddress
import os
import random
import secrets
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest

SUBNET_PREFIX = "10.78"
"""LANs are /24s in 10.78.0.0/16, one picked at random among those no interface uses."""
_IP_TIMEOUT = 10.0


class NetnsError(RuntimeError):
    """An `ip` command failed; the message has its output."""


def netns_unavailable() -> str | None:
    """Why namespaces cannot be made here, or None if they can."""
    if os.geteuid() != 0:
        return "network namespaces need root (the tests create veth pairs and a bridge)"
    if shutil.which("ip") is None:
        return "iproute2's `ip` is missing: apt-get install iproute2"
    return None


def require_netns() -> None:
    """Fail (not skip) the calling test when namespaces cannot be made."""
    reason = netns_unavailable()
    if reason is not None:
        pytest.fail(reason, pytrace=False)


def ip(*args: str) -> str:
    """Run `ip ARGS`; its stdout, or `NetnsError` with stderr."""
    done = subprocess.run(
        ["ip", *args], capture_output=True, text=True, timeout=_IP_TIMEOUT, check=False
    )
    if done.returncode != 0:
        raise NetnsError(f"ip {' '.join(args)}: {done.stderr.strip() or done.returncode}")
    return done.stdout


def _used_subnets() -> set[str]:
    used = set()
    for line in ip("-4", "-o", "addr", "show").splitlines():
        fields = line.split()
        if "inet" in fields:
            cidr = fields[fields.index("inet") + 1]
            used.add(str(ipaddress.ip_interface(cidr).network))
    return used


def _disable_ipv6(interface: str) -> None:
    # IPv6 link-local addresses only slow ICE down here (more candidates, DAD); IPv4 suffices.
    path = Path("/proc/sys/net/ipv6/conf") / interface / "disable_ipv6"
    if path.exists():
        path.write_text("1\n")


@dataclass(frozen=True)
class Namespace:
    """One namespace on the LAN: its name and its IPv4 address there."""

    name: str
    address: str

    def command(self, argv: Sequence[str]) -> list[str]:
        """`argv` run inside the namespace (`ip netns exec` execs it: same pid)."""
        return ["ip", "netns", "exec", self.name, *argv]

    def popen(self, argv: Sequence[str], **kwargs: Any) -> "subprocess.Popen[bytes]":
        return subprocess.Popen(self.command(argv), **kwargs)

    def wrapper(self, directory: Path, program: str) -> Path:
        """An executable script in `directory` that runs `program` with its arguments inside
        the namespace: for tools that want one executable path (Playwright's
        `executable_path`, which then talks to the browser over a pipe)."""
        script = directory / f"{self.name}-{Path(program).name}"
        script.write_text(f'#!/bin/sh\nexec ip netns exec {self.name} {program} "$@"\n')
        script.chmod(0o755)
        return script


class Lan:
    """A bridge with the LAN's first address, and the namespaces added to it."""

    def __init__(self) -> None:
        self.tag = secrets.token_hex(3)
        self.bridge = f"shb{self.tag}"
        self.namespaces: list[Namespace] = []
        self._veths: list[str] = []
        self._bridge_made = False
        self.network = ipaddress.ip_network("10.78.0.0/24")
        self.host_address = ""

    def __enter__(self) -> "Lan":
        try:
            self.open()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()

    def open(self) -> None:
        used = _used_subnets()
        free = [n for n in range(1, 255) if f"{SUBNET_PREFIX}.{n}.0/24" not in used]
        if not free:
            raise NetnsError(f"every {SUBNET_PREFIX}.N.0/24 is in use")
        self.network = ipaddress.ip_network(f"{SUBNET_PREFIX}.{random.choice(free)}.0/24")
        self.host_address = str(self.network.network_address + 1)
        ip("link", "add", self.bridge, "type", "bridge", "forward_delay", "0", "stp_state", "0")
        self._bridge_made = True
        _disable_ipv6(self.bridge)
        ip("addr", "add", f"{self.host_address}/24", "dev", self.bridge)
        ip("link", "set", self.bridge, "up")

    def add(self) -> Namespace:
        """A new namespace joined to the bridge, with loopback up and the next address."""
        index = len(self.namespaces) + 1
        if index > 250:
            raise NetnsError("a LAN holds at most 250 namespaces")
        name = f"shoal-{self.tag}-{index}"
        outside, inside = f"shv{self.tag}-{index}", f"shp{self.tag}-{index}"
        address = str(self.network.network_address + 1 + index)
        ip("netns", "add", name)
        namespace = Namespace(name, address)
        self.namespaces.append(namespace)
        ip("link", "add", outside, "type", "veth", "peer", "name", inside)
        self._veths.append(outside)
        _disable_ipv6(outside)
        ip("link", "set", inside, "netns", name)
        ip("link", "set", outside, "master", self.bridge)
        ip("link", "set", outside, "up")
        ip("-n", name, "link", "set", "lo", "up")
        subprocess.run(
            namespace.command(["sysctl", "-q", "-w", "net.ipv6.conf.all.disable_ipv6=1"]),
            capture_output=True,
            timeout=_IP_TIMEOUT,
            check=False,
        )
        ip("-n", name, "addr", "add", f"{address}/24", "dev", inside)
        ip("-n", name, "link", "set", inside, "up")
        # Chromium gathers host candidates only from the interface of the default route (it
        # enumerates interfaces only after a media permission), so each namespace has one, via
        # the bridge. Nothing leaves through it: the root namespace forwards nothing here
        # (net.ipv4.ip_forward stays as it is, 0 on test machines), so packets to any other
        # address die at the bridge.
        ip("-n", name, "route", "add", "default", "via", self.host_address)
        return namespace

    def close(self) -> None:
        """Delete this LAN's namespaces, veth pairs and bridge; whatever is already gone is
        skipped, and every deletion is tried even when one fails."""
        failures = []
        for namespace in reversed(self.namespaces):
            try:
                ip("netns", "del", namespace.name)
            except NetnsError as error:
                failures.append(str(error))
        self.namespaces.clear()
        existing = ip("-o", "link", "show")
        for veth in self._veths:
            # Deleting a namespace deletes its end of the pair, and with it this one.
            if f" {veth}@" in existing or f" {veth}:" in existing:
                try:
                    ip("link", "del", veth)
                except NetnsError as error:
                    failures.append(str(error))
        self._veths.clear()
        if self._bridge_made:
            try:
                ip("link", "del", self.bridge)
            except NetnsError as error:
                failures.append(str(error))
            self._bridge_made = False
        if failures:
            raise NetnsError("; ".join(failures))
