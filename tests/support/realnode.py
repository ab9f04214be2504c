"""A real Kubernetes worker node for tests, inside a network namespace of its own.

kwok's pods are pretend; this node runs them: a kubelet, containerd, Debian's
runc and the CNI bridge plugin, built from Go modules by
``hack/build-node.sh``, with the images of this checkout (``hack/images.py``)
imported into containerd. It joins a control plane started by
``tests.support.controlplane`` next to kwok's fake nodes (tainted, so real
workloads land on the real node).

Everything lives in namespaces the harness makes, so nothing is added to the
host's own network and nothing is left behind:

* **network**: a network namespace (``ip netns add``) that the calling thread
  enters (``setns``) for the whole tier. The API server listens on its
  loopback; the node's address sits on a port-less bridge (the kernel may lack
  the dummy interface type, and the kubelet refuses a loopback node IP); pods
  sit on the CNI bridge below it with no default route. There is no interface
  to the host at all, so no packet of the tier can leave the namespace.
* **the Service address of the API server**: there is no kube-proxy, so the
  harness does its one job here: a DNAT rule (iptables, in the namespace)
  sends the ``kubernetes`` Service's ``10.96.0.1:443`` to the API server's
  endpoint as pods see it, ``10.88.1.1:443`` on the node (a forwarder to the
  API server on the namespace's loopback, ``tests.support.tcpforward``), and
  pods get a route to ``10.96.0.1``: in-cluster clients find the API server
  as in any cluster, and NetworkPolicies see its endpoint's address.
* **NetworkPolicy**: kube-router's policy controller enforces them
  (``tests.support.policycontroller``), with iptables and ipset in the
  namespace; bridged pod-to-pod traffic goes through iptables because the
  namespace's ``bridge-nf-call-iptables`` is on (the kernel's default for a
  new namespace; checked, not changed).
* **mounts**: containerd and the kubelet share one private mount namespace
  (``unshare --mount``), with their own ``/run``, ``/var/lib`` and ``/var/log``;
  the overlay, Secret and sandbox mounts they make vanish with it.
* **processes**: the runtime and every container run in a cgroup of their own;
  stopping kills exactly the processes in it, then removes it.
* **host settings**: the kubelet sets ``vm.overcommit_memory``, ``kernel.panic``
  and ``kernel.panic_on_oops`` (kernel-wide); their values are restored.

``stop()`` undoes all of it, and a later ``start()`` first removes what a
killed session left (namespaces and cgroups named after a dead process).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import yaml

from tests.support import policycontroller
from tests.support.controlplane import REPO_ROOT, SERVICE_CIDR, ControlPlane, Pki

BUILD_NODE = REPO_ROOT / "hack" / "build-node.sh"
BUILD_IMAGES = REPO_ROOT / "hack" / "images.py"
NODE_NAME = "switchboard-real-node"
#: Pods' subnet on the CNI bridge, and its gateway (the namespace's side).
POD_SUBNET = "10.88.0.0/24"
POD_GATEWAY = "10.88.0.1"
#: The node's own address, on a bridge without ports.
NODE_ADDRESS = "10.88.1.1"
#: The `kubernetes` Service's ClusterIP, DNAT'ed to API_ENDPOINT inside the namespace.
API_SERVICE_ADDRESS = "10.96.0.1"
#: The API server's endpoint as pods reach it: the node address, port 443 (as behind
#: a cloud's API load balancer), forwarded to the API server on the namespace's loopback.
API_ENDPOINT_PORT = 443
#: A link-local address on the node, where clouds serve instance metadata; pods get a
#: route to it, so tests can show that plugin policies keep them away from it.
LINK_LOCAL_ADDRESS = "169.254.169.254"
POD_BRIDGE = "sbpods0"
NODE_BRIDGE = "sbnode0"
PAUSE_IMAGE = "localhost/switchboard/pause:1"
#: Prefix of the network namespaces and cgroups the harness makes; the creating
#: process's id follows, so a later run can tell which ones are stale.
PREFIX = "switchboard-node-"
#: Kernel-wide settings the kubelet changes.
KERNEL_SETTINGS = ("vm/overcommit_memory", "kernel/panic", "kernel/panic_on_oops")
CGROUP_ROOT = Path("/sys/fs/cgroup")

_libc = ctypes.CDLL(None, use_errno=True)
_CLONE_NEWNET = 0x40000000


class RealNodeUnavailable(RuntimeError):
    """This machine cannot run a real node; the message says why."""


def unavailable_reason() -> str | None:
    """Why this machine cannot run the real-node tier, or None if it can."""
    if platform.system() != "Linux":
        return "the real node needs Linux"
    if os.geteuid() != 0:
        return "the real node needs root (network namespaces, cgroups, mounts)"
    if "overlay" not in Path("/proc/filesystems").read_text():
        return "the kernel has no overlay filesystem (containerd's snapshotter)"
    if not (CGROUP_ROOT / "cgroup.controllers").exists() and not _cgroup_v1_hierarchies():
        return "no cgroup hierarchy is mounted under /sys/fs/cgroup"
    for tool in (
        "runc",
        "ip",
        "unshare",
        "nsenter",
        "podman",
        "mmdebstrap",
        "go",
        "iptables",
        "ipset",
    ):
        if not shutil.which(tool):
            return f"{tool} is not installed (make system-deps)"
    return None


# --- Building ------------------------------------------------------------------------


def node_dir() -> Path:
    """Build (or find in the cache) the kubelet, containerd, CNI plugins and pause image."""
    out = subprocess.run(
        ["bash", str(BUILD_NODE)], check=True, stdout=subprocess.PIPE, text=True
    ).stdout
    return Path(out.strip().splitlines()[-1])


#: The images the real-node tier runs: the Switchboard image and the plugins of
#: the examples it applies.
TIER_IMAGES = (
    "switchboard",
    "plugin-smtp-email",
    "plugin-twilio-sms",
    "plugin-vonage-sms",
    "plugin-generic-webhook",
    "plugin-voltha",
)


def image_archive(names: tuple[str, ...] = TIER_IMAGES) -> Path:
    """Build (or find by content) the named images of this checkout; the archive holding them."""
    subprocess.run(
        [sys.executable, str(BUILD_IMAGES), *names], check=True, stdout=subprocess.DEVNULL
    )
    cache = Path(
        os.environ.get("SWITCHBOARD_CACHE")
        or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "switchboard"
    )
    manifest = json.loads((cache / "images" / "images.json").read_text())
    return Path(manifest["archive"])


# --- Namespaces and cgroups ----------------------------------------------------------


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], check=check, capture_output=True, text=True, timeout=30)


def _setns(fd: int) -> None:
    if _libc.setns(fd, _CLONE_NEWNET) != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"setns: {os.strerror(error)}")


@dataclass
class NetworkNamespace:
    """A named network namespace; `entered()` moves the calling thread into it."""

    name: str

    def create(self) -> None:
        _ip("netns", "add", self.name)
        _ip("-n", self.name, "link", "set", "lo", "up")

    @contextlib.contextmanager
    def entered(self) -> Iterator[None]:
        """The calling thread (and the processes and threads it starts) in the namespace."""
        home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        target = os.open(f"/run/netns/{self.name}", os.O_RDONLY)
        try:
            _setns(target)
            try:
                yield
            finally:
                _setns(home)
        finally:
            os.close(target)
            os.close(home)

    def delete(self) -> None:
        _ip("netns", "del", self.name, check=False)


def _cgroup_v1_hierarchies() -> list[Path]:
    """The mounted cgroup hierarchies of a v1 (or hybrid: v1 plus a v2 `unified`) host."""
    if not CGROUP_ROOT.is_dir():
        return []
    mounts = Path("/proc/self/mounts").read_text().splitlines()
    found = []
    for line in mounts:
        _, target, fstype, *_ = line.split()
        if fstype in ("cgroup", "cgroup2") and target.startswith(f"{CGROUP_ROOT}/"):
            found.append(Path(target))
    return sorted(set(found))


def cgroup_hierarchies() -> list[Path]:
    if (CGROUP_ROOT / "cgroup.controllers").exists():
        return [CGROUP_ROOT]
    return _cgroup_v1_hierarchies()


@dataclass
class NodeCgroup:
    """A cgroup (in every hierarchy) holding the runtime and every container of the node."""

    name: str

    def paths(self) -> list[Path]:
        return [h / self.name for h in cgroup_hierarchies()]

    def create(self) -> None:
        for path in self.paths():
            path.mkdir(exist_ok=True)
            # cpuset children start empty; a process cannot join until they are set.
            for setting in ("cpuset.cpus", "cpuset.mems"):
                parent, child = path.parent / setting, path / setting
                if child.exists() and not child.read_text().strip():
                    child.write_text(parent.read_text())

    def join(self, subgroup: str = "runtime") -> None:
        """Move the calling process into `<name>/<subgroup>` (used between fork and exec)."""
        for path in self.paths():
            group = path / subgroup
            group.mkdir(exist_ok=True)
            for setting in ("cpuset.cpus", "cpuset.mems"):
                if (group / setting).exists() and not (group / setting).read_text().strip():
                    (group / setting).write_text((path / setting).read_text())
            (group / "cgroup.procs").write_text(str(os.getpid()))

    def pids(self) -> set[int]:
        found: set[int] = set()
        for path in self.paths():
            if path.is_dir():
                for procs in path.rglob("cgroup.procs"):
                    with contextlib.suppress(OSError):
                        found.update(int(p) for p in procs.read_text().split())
        return found

    def kill_all(self, timeout: float = 30) -> None:
        """SIGKILL every process in the cgroup (they are all the node's) until none is left."""
        deadline = time.monotonic() + timeout
        while (pids := self.pids()) and time.monotonic() < deadline:
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.2)

    def remove(self) -> None:
        for path in self.paths():
            if not path.is_dir():
                continue
            for directory in sorted(
                (p for p in path.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)
            ):
                with contextlib.suppress(OSError):
                    directory.rmdir()
            with contextlib.suppress(OSError):
                path.rmdir()


def _creator_alive(name: str) -> bool:
    match = re.fullmatch(rf"{PREFIX}(\d+)", name)
    return bool(match) and Path(f"/proc/{match.group(1) if match else 0}").exists()


def remove_stale() -> None:
    """Remove what an earlier, killed session left: its namespace and its cgroup."""
    for hierarchy in cgroup_hierarchies():
        for path in hierarchy.glob(f"{PREFIX}*"):
            if path.is_dir() and not _creator_alive(path.name):
                stale = NodeCgroup(path.name)
                stale.kill_all()
                stale.remove()
    netns = Path("/run/netns")
    for path in netns.glob(f"{PREFIX}*") if netns.is_dir() else []:
        if not _creator_alive(path.name):
            NetworkNamespace(path.name).delete()


@dataclass
class KernelSettings:
    """Kernel-wide settings the kubelet changes, saved to be put back."""

    saved: dict[str, str] = field(default_factory=dict)

    def save(self) -> None:
        for name in KERNEL_SETTINGS:
            self.saved[name] = (Path("/proc/sys") / name).read_text().strip()

    def restore(self) -> None:
        for name, value in self.saved.items():
            path = Path("/proc/sys") / name
            if path.read_text().strip() != value:
                path.write_text(value)


# --- Configuration ---------------------------------------------------------------------


def cni_config(workdir: Path) -> dict[str, Any]:
    """The bridge network: pods get an address and routes to the node and the API only."""
    return {
        "cniVersion": "1.0.0",
        "name": "switchboard-real-node",
        "plugins": [
            {
                "type": "bridge",
                "bridge": POD_BRIDGE,
                "isGateway": True,
                "isDefaultGateway": False,
                "ipMasq": False,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": POD_SUBNET, "gateway": POD_GATEWAY}]],
                    "routes": [
                        {"dst": f"{API_SERVICE_ADDRESS}/32"},
                        {"dst": f"{LINK_LOCAL_ADDRESS}/32"},
                    ],
                    "dataDir": str(workdir / "cni" / "ipam"),
                },
            }
        ],
    }


def containerd_config(workdir: Path, cni_bin: Path) -> str:
    runc = shutil.which("runc") or "runc"
    d = workdir / "containerd"
    return f"""version = 3
root = '{d}/root'
state = '{d}/state'

[grpc]
  address = '{d}/containerd.sock'

[ttrpc]
  address = '{d}/containerd.sock.ttrpc'

[plugins]
  [plugins.'io.containerd.internal.v1.opt']
    path = '{d}/opt'
  [plugins.'io.containerd.nri.v1.nri']
    disable = true
  [plugins.'io.containerd.cri.v1.images']
    snapshotter = 'overlayfs'
    [plugins.'io.containerd.cri.v1.images'.pinned_images]
      sandbox = '{PAUSE_IMAGE}'
  [plugins.'io.containerd.cri.v1.runtime']
    # Root here may lack CAP_SYS_RESOURCE: runc cannot lower a container's
    # oom_score_adj below containerd's own, so clamp it there.
    restrict_oom_score_adj = true
    [plugins.'io.containerd.cri.v1.runtime'.containerd]
      default_runtime_name = 'runc'
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
        runtime_type = 'io.containerd.runc.v2'
        [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
          BinaryName = '{runc}'
          SystemdCgroup = false
    [plugins.'io.containerd.cri.v1.runtime'.cni]
      bin_dirs = ['{cni_bin}']
      conf_dir = '{workdir}/cni/net.d'
      max_conf_num = 1
  [plugins.'io.containerd.grpc.v1.cri']
    disable_tcp_service = true
    stream_server_address = '127.0.0.1'
    stream_server_port = '0'
"""


def kubelet_config(workdir: Path, client_ca: Path, cgroup: str) -> dict[str, Any]:
    socket = f"unix://{workdir}/containerd/containerd.sock"
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        # A cgroup v1 (hybrid) host is refused from 1.35 on unless this is false.
        "failCgroupV1": False,
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": f"/{cgroup}",
        "failSwapOn": False,
        "containerRuntimeEndpoint": socket,
        "imageServiceEndpoint": socket,
        "address": NODE_ADDRESS,
        "port": 10250,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": 10248,
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(client_ca)},
        },
        "authorization": {"mode": "Webhook"},
        "clusterDomain": "cluster.local",
        # No cluster DNS and no host resolvers handed to pods.
        "resolvConf": "",
        "staticPodPath": "",
        # Containers' logs stay readable from the host (the kubelet's /var/log is private).
        "podLogsDir": str(workdir / "pod-logs"),
        "evictionHard": {
            "memory.available": "100Mi",
            "nodefs.available": "1%",
            "nodefs.inodesFree": "1%",
            "imagefs.available": "1%",
        },
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "maxPods": 40,
        "serializeImagePulls": False,
        "nodeStatusReportFrequency": "10s",
        "syncFrequency": "10s",
    }


# --- The node --------------------------------------------------------------------------


@dataclass
class RealNode:
    """A kubelet with containerd, joined to `plane`, in the calling thread's network namespace."""

    plane: ControlPlane
    node_dir: Path
    workdir: Path
    kubelet_pki: Path
    cgroup: NodeCgroup
    #: kube-router, the NetworkPolicy enforcer (tests.support.policycontroller).
    policy_controller: Path
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    logs: dict[str, IO[bytes]] = field(default_factory=dict)

    @property
    def socket(self) -> Path:
        return self.workdir / "containerd" / "containerd.sock"

    def ctr(self, *args: str, timeout: float = 600) -> str:
        return subprocess.run(
            [
                str(self.node_dir / "bin" / "ctr"),
                "--address",
                str(self.socket),
                "-n",
                "k8s.io",
                *args,
            ],
            check=True,
            capture_output=True,
            text=True,
            timeout=timeout,
        ).stdout

    def start(self, images: Path, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        self._network()
        self._spawn(
            "api-forwarder",
            [
                sys.executable,
                "-m",
                "tests.support.tcpforward",
                f"{NODE_ADDRESS}:{API_ENDPOINT_PORT}",
                f"127.0.0.1:{self.plane.api_port}",
            ],
            cwd=REPO_ROOT,
        )
        # One private mount namespace for containerd and the kubelet, held open by
        # a sleeping process; they enter it with nsenter.
        self._spawn(
            "mount-namespace",
            ["unshare", "--mount", "--propagation", "private", "--", "sleep", "86400"],
        )
        holder = self.processes["mount-namespace"].pid
        self._wait(lambda: _mount_ns(holder) != _mount_ns(os.getpid()), deadline, "unshare")
        enter = ["nsenter", f"--mount=/proc/{holder}/ns/mnt", "--"]
        for private in ("/run", "/var/lib", "/var/log"):
            subprocess.run(
                [*enter, "mount", "-t", "tmpfs", "-o", "mode=755", "tmpfs", private], check=True
            )

        (self.workdir / "cni" / "net.d").mkdir(parents=True, exist_ok=True)
        (self.workdir / "cni" / "net.d" / "10-switchboard.conflist").write_text(
            json.dumps(cni_config(self.workdir), indent=2)
        )
        config = self.workdir / "containerd" / "config.toml"
        config.parent.mkdir(parents=True, exist_ok=True)
        config.write_text(containerd_config(self.workdir, self.node_dir / "cni"))
        env = {**os.environ, "PATH": f"{self.node_dir / 'bin'}:{os.environ['PATH']}"}
        self._spawn(
            "containerd",
            [*enter, str(self.node_dir / "bin" / "containerd"), "--config", str(config)],
            env=env,
            in_cgroup=True,
        )
        self._wait(self.socket.exists, deadline, "containerd's socket")
        self._wait(lambda: _ok(lambda: self.ctr("version", timeout=10)), deadline, "containerd")
        started = time.monotonic()
        self.ctr("images", "import", str(self.node_dir / "pause.tar"))
        self.ctr("images", "label", PAUSE_IMAGE, "io.cri-containerd.pinned=pinned")
        self.ctr("images", "import", str(images))
        self.import_seconds = time.monotonic() - started

        kubeconfig = self.plane.kubeconfig_for(f"system:node:{NODE_NAME}", ["system:nodes"])
        # The API server runs RBAC only (no Node authorizer): grant the node its role.
        for obj in _node_rbac():
            self.plane.apply(obj)
        kubelet_config_path = self.workdir / "kubelet" / "config.yaml"
        kubelet_config_path.parent.mkdir(parents=True, exist_ok=True)
        kubelet_config_path.write_text(
            yaml.safe_dump(
                kubelet_config(self.workdir, self.kubelet_pki / "ca.crt", self.cgroup.name)
            )
        )
        self._spawn(
            "kubelet",
            [
                *enter,
                str(self.node_dir / "bin" / "kubelet"),
                f"--config={kubelet_config_path}",
                f"--kubeconfig={kubeconfig}",
                f"--hostname-override={NODE_NAME}",
                f"--node-ip={NODE_ADDRESS}",
                f"--root-dir={self.workdir / 'kubelet'}",
                f"--cert-dir={self.workdir / 'kubelet' / 'pki'}",
                "--node-labels=switchboard.dev/real-node=true",
                "--v=1",
            ],
            env=env,
            in_cgroup=True,
        )
        self._wait(self._node_ready, deadline, f"node {NODE_NAME} Ready")
        # The enforcer finds its node's address in the Node object, so it starts now,
        # before any workload: every pod of the tier runs under NetworkPolicy.
        started = time.monotonic()
        for obj in policycontroller.rbac():
            self.plane.apply(obj)
        self._spawn(
            "policy-controller",
            [
                *enter,
                *policycontroller.command(
                    self.policy_controller,
                    self.plane.kubeconfig_for(policycontroller.USER, []),
                    NODE_NAME,
                    SERVICE_CIDR,
                ),
            ],
            in_cgroup=True,
        )
        self._wait(
            lambda: policycontroller.synced(self.workdir / "policy-controller.log"),
            deadline,
            "the NetworkPolicy controller's first sync",
        )
        self.policy_seconds = time.monotonic() - started
        # Real workloads go to the real node; kwok's nodes stay for pretend pods.
        for node in self.plane.kubectl(
            "get", "nodes", "-l", "type=kwok", "-o", "name"
        ).stdout.split():
            self.plane.kubectl(
                "taint", "node", node.split("/")[-1], "kwok=fake:NoSchedule", "--overwrite"
            )

    def stop(self) -> None:
        kubelet = self.processes.get("kubelet")
        if kubelet and kubelet.poll() is None:
            kubelet.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                kubelet.wait(timeout=15)
        # containerd, its shims and every container: all in the node's cgroup.
        self.cgroup.kill_all()
        for proc in self.processes.values():
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=30)
        for log in self.logs.values():
            log.close()
        self.cgroup.remove()

    def log_tail(self, name: str, lines: int = 60) -> str:
        path = self.workdir / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    # -- internals --

    def _network(self) -> None:
        _ip("link", "add", NODE_BRIDGE, "type", "bridge")
        _ip("addr", "add", f"{NODE_ADDRESS}/32", "dev", NODE_BRIDGE)
        _ip("addr", "add", f"{LINK_LOCAL_ADDRESS}/32", "dev", NODE_BRIDGE)
        _ip("link", "set", NODE_BRIDGE, "up")
        # kube-proxy's one job here: the `kubernetes` Service to the API server's endpoint.
        for chain in ("PREROUTING", "OUTPUT"):
            _iptables(
                "-t", "nat", "-A", chain, "-d", f"{API_SERVICE_ADDRESS}/32", "-p", "tcp",
                "--dport", "443", "-j", "DNAT",
                "--to-destination", f"{NODE_ADDRESS}:{API_ENDPOINT_PORT}",
            )  # fmt: skip
        # Pods on one bridge talk without routing: only with this on do their packets
        # meet iptables, and so NetworkPolicy. Per namespace; on by default.
        bridged = Path("/proc/sys/net/bridge/bridge-nf-call-iptables")
        value = subprocess.run(
            ["cat", str(bridged)], capture_output=True, text=True, check=False
        ).stdout.strip()
        if value != "1":
            raise RealNodeUnavailable(
                f"{bridged} is {value or 'missing'} in the tier's network namespace: bridged "
                "pod traffic would bypass iptables, and so NetworkPolicy"
            )

    def _spawn(
        self,
        name: str,
        command: list[str],
        *,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        in_cgroup: bool = False,
    ) -> None:
        log = open(self.workdir / f"{name}.log", "wb")  # noqa: SIM115 - closed in stop()
        self.logs[name] = log
        self.processes[name] = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cwd or self.workdir,
            preexec_fn=self.cgroup.join if in_cgroup else None,
        )

    def _wait(self, ready: Any, deadline: float, what: str) -> None:
        while time.monotonic() < deadline:
            for name, proc in self.processes.items():
                if proc.poll() is not None:
                    raise RuntimeError(
                        f"{name} exited with {proc.returncode} while waiting for {what}:\n"
                        + self.log_tail(name)
                    )
            if ready():
                return
            time.sleep(0.3)
        raise TimeoutError(f"Timed out waiting for {what}:\n" + self.log_tail("kubelet"))

    def _node_ready(self) -> bool:
        status = self.plane.kubectl(
            "get",
            "node",
            NODE_NAME,
            "-o",
            "jsonpath={.status.conditions[?(@.type=='Ready')].status}",
            check=False,
        )
        return status.stdout.strip() == "True"


def _iptables(*args: str) -> None:
    subprocess.run(["iptables", "-w", "10", *args], check=True, capture_output=True, timeout=30)


def _ok(probe: Any) -> bool:
    try:
        probe()
    except (subprocess.SubprocessError, OSError):
        return False
    return True


def _mount_ns(pid: int) -> str:
    try:
        return os.readlink(f"/proc/{pid}/ns/mnt")
    except OSError:
        return ""


def _node_rbac() -> list[dict[str, Any]]:
    """What the Node authorizer would grant the kubelet: the control plane runs RBAC only.

    The `system:node` ClusterRole, plus ServiceAccount tokens for the pods it
    runs (projected token volumes), which that role leaves to the Node authorizer.
    """
    rbac = "rbac.authorization.k8s.io"
    node_user = {"apiGroup": rbac, "kind": "User", "name": f"system:node:{NODE_NAME}"}
    tokens = {
        "apiVersion": f"{rbac}/v1",
        "kind": "ClusterRole",
        "metadata": {"name": "switchboard-real-node-tokens"},
        "rules": [{"apiGroups": [""], "resources": ["serviceaccounts/token"], "verbs": ["create"]}],
    }
    return [
        tokens,
        *(
            {
                "apiVersion": f"{rbac}/v1",
                "kind": "ClusterRoleBinding",
                "metadata": {"name": f"switchboard-real-node-{role.split(':')[-1]}"},
                "roleRef": {"apiGroup": rbac, "kind": "ClusterRole", "name": role},
                "subjects": [node_user],
            }
            for role in ("system:node", "switchboard-real-node-tokens")
        ),
    ]


def kubelet_client_pki(directory: Path) -> list[str]:
    """A CA the kubelet trusts and the client certificate the API server shows it.

    Made before the control plane starts (the API server reads the files at
    start); the certificate's group system:masters lets the kubelet's webhook
    authorizer allow logs, exec and port-forward. Returns the API server flags.
    """
    pki = Pki(directory)
    pki.create()
    pki.client_certificate(
        "apiserver-kubelet-client", "kube-apiserver-kubelet-client", ["system:masters"]
    )
    return [
        f"--kubelet-client-certificate={directory / 'apiserver-kubelet-client.crt'}",
        f"--kubelet-client-key={directory / 'apiserver-kubelet-client.key'}",
        "--kubelet-preferred-address-types=InternalIP",
    ]


@dataclass
class RealCluster:
    """A control plane with kwok and one real node, all inside `netns`."""

    plane: ControlPlane
    node: RealNode
    netns: NetworkNamespace
    #: Seconds spent on each phase, for the docs' figures.
    timings: dict[str, float] = field(default_factory=dict)


@contextlib.contextmanager
def running_real_cluster(bin_dir: Path, workdir: Path) -> Iterator[RealCluster]:
    """Build what is missing, start everything in a fresh network namespace, undo it all after.

    The calling thread stays inside the namespace until the block ends.
    """
    reason = unavailable_reason()
    if reason:
        raise RealNodeUnavailable(reason)
    timings: dict[str, float] = {}
    started = time.monotonic()
    built_node = node_dir()
    timings["build node"] = time.monotonic() - started
    started = time.monotonic()
    kube_router = policycontroller.binary()
    timings["build policy controller"] = time.monotonic() - started
    started = time.monotonic()
    images = image_archive()
    timings["build images"] = time.monotonic() - started
    remove_stale()
    name = f"{PREFIX}{os.getpid()}"
    netns = NetworkNamespace(name)
    cgroup = NodeCgroup(name)
    kernel = KernelSettings()
    kernel.save()
    netns.create()
    cgroup.create()
    workdir.mkdir(parents=True, exist_ok=True)
    plane = ControlPlane(
        bin_dir=bin_dir,
        workdir=workdir / "controlplane",
        extra_apiserver_args=kubelet_client_pki(workdir / "kubelet-pki"),
    )
    plane.workdir.mkdir(parents=True, exist_ok=True)
    node = RealNode(
        plane=plane,
        node_dir=built_node,
        workdir=workdir / "node",
        kubelet_pki=workdir / "kubelet-pki",
        cgroup=cgroup,
        policy_controller=kube_router,
    )
    node.workdir.mkdir(parents=True, exist_ok=True)
    try:
        with netns.entered():
            try:
                started = time.monotonic()
                plane.start()
                timings["start control plane"] = time.monotonic() - started
                started = time.monotonic()
                node.start(images)
                timings["start node"] = time.monotonic() - started
                timings["import images"] = node.import_seconds
                timings["policy controller first sync"] = node.policy_seconds
                yield RealCluster(plane=plane, node=node, netns=netns, timings=timings)
            finally:
                node.stop()
                plane.stop()
    finally:
        cgroup.kill_all()
        cgroup.remove()
        netns.delete()
        kernel.restore()
        left = leftovers(netns, cgroup, kernel)
        if left:
            raise RuntimeError(f"the real node left behind: {', '.join(left)}")


def leftovers(netns: NetworkNamespace, cgroup: NodeCgroup, kernel: KernelSettings) -> list[str]:
    """What of the tier is still on the host: should be nothing."""
    left = [f"network namespace {netns.name}"] if Path(f"/run/netns/{netns.name}").exists() else []
    left += [f"cgroup {path}" for path in cgroup.paths() if path.exists()]
    for name, value in kernel.saved.items():
        if (Path("/proc/sys") / name).read_text().strip() != value:
            left.append(f"kernel setting {name}")
    return left
