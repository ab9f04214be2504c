"""A pod's network, made real: a network namespace that owns the pod's IP.

kwok gives pods IP addresses but runs nothing. To let the router reach a
plugin at its pod IP, a test puts a plugin process into a network namespace
that holds exactly that address, joined to the host by a veth pair. The API
server refuses loopback addresses in EndpointSlices, so this is how tests get
real endpoints that Kubernetes accepts. Traffic stays on this machine, inside
namespaces the test made, and everything is removed afterwards.
"""

from __future__ import annotations

import itertools
import subprocess
import uuid
from dataclasses import dataclass

_host_octets = itertools.count(1)

#: Pod IPs that currently have a sandbox: the only pod addresses tests may dial.
LIVE_ADDRESSES: set[str] = set()


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=10)


@dataclass
class PodSandbox:
    """A network namespace holding `address`, reachable from the host."""

    address: str
    name: str = ""
    host_address: str = ""

    def create(self) -> PodSandbox:
        tag = uuid.uuid4().hex[:8]
        self.name = f"sb-{tag}"
        host_if, pod_if = f"sbh{tag}", f"sbp{tag}"
        # A link-local address on the host side, so replies have a route back.
        self.host_address = f"169.254.213.{next(_host_octets) % 250 + 1}"
        _ip("netns", "add", self.name)
        _ip("link", "add", host_if, "type", "veth", "peer", "name", pod_if)
        _ip("link", "set", pod_if, "netns", self.name)
        _ip("addr", "add", f"{self.host_address}/32", "dev", host_if)
        _ip("link", "set", host_if, "up")
        _ip("route", "add", f"{self.address}/32", "dev", host_if, "src", self.host_address)
        inside = ["netns", "exec", self.name, "ip"]
        _ip(*inside, "addr", "add", f"{self.address}/32", "dev", pod_if)
        _ip(*inside, "link", "set", pod_if, "up")
        _ip(*inside, "link", "set", "lo", "up")
        _ip(*inside, "route", "add", f"{self.host_address}/32", "dev", pod_if)
        _ip(*inside, "route", "add", "default", "via", self.host_address, "dev", pod_if)
        self._host_if = host_if
        LIVE_ADDRESSES.add(self.address)
        return self

    @property
    def exec_prefix(self) -> list[str]:
        """Prefix a command with this to run it inside the namespace."""
        return ["ip", "netns", "exec", self.name]

    def delete(self) -> None:
        LIVE_ADDRESSES.discard(self.address)
        # Deleting the namespace destroys its end of the veth, and with it ours.
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True, timeout=10)
        subprocess.run(["ip", "link", "del", self._host_if], capture_output=True, timeout=10)
