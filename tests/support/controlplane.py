"""A real Kubernetes control plane for tests, run from locally built binaries.

etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok run as
child processes on loopback, the way a real cluster runs them: client
certificates from a private CA, RBAC authorization, the default admission
plugins (PodSecurity among them), and ServiceAccount tokens that TokenReview
accepts. kwok plays the kubelets of a few fake nodes, so Deployment pods are
scheduled, become Running and pass readiness.

The binaries come from `hack/build-control-plane.sh`, which builds them once
per version into a cache outside the work tree.

Run `python -m tests.support.controlplane` to start one by hand; it prints
the kubeconfig path and waits for Ctrl-C.
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

REPO_ROOT = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO_ROOT / "hack" / "build-control-plane.sh"
KWOK_STAGES = Path(__file__).with_name("kwok-stages.yaml")
SERVICE_CIDR = "10.96.0.0/16"
POD_CIDR = "10.244.0.0/16"
FAKE_NODES = 3
ADMIN_USER = "switchboard-test-admin"


def binaries_dir() -> Path:
    """Build (or find in the cache) the control-plane binaries."""
    out = subprocess.run(
        ["bash", str(BUILD_SCRIPT)], check=True, stdout=subprocess.PIPE, text=True
    ).stdout
    return Path(out.strip().splitlines()[-1])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- PKI -------------------------------------------------------------------------


def _pem_key(key: Any) -> bytes:
    return bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def _certificate(
    subject: x509.Name,
    public_key: Any,
    issuer: x509.Name,
    signing_key: Any,
    *,
    ca: bool = False,
    sans: list[x509.GeneralName] | None = None,
    client: bool = False,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=7))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    else:
        usage = x509.oid.ExtendedKeyUsageOID
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([usage.CLIENT_AUTH] if client else [usage.SERVER_AUTH]),
            critical=False,
        )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(signing_key, hashes.SHA256())


@dataclass
class Pki:
    """Certificates and keys of one test cluster, written to `directory`."""

    directory: Path

    def create(self) -> None:
        d = self.directory
        d.mkdir(parents=True, exist_ok=True)
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "switchboard-test-ca")])
        ca = _certificate(ca_name, ca_key.public_key(), ca_name, ca_key, ca=True)
        (d / "ca.crt").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
        (d / "ca.key").write_bytes(_pem_key(ca_key))

        server_key = ec.generate_private_key(ec.SECP256R1())
        service_ip = next(ipaddress.ip_network(SERVICE_CIDR).hosts())
        sans: list[x509.GeneralName] = [
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
            x509.IPAddress(service_ip),
            x509.DNSName("localhost"),
            x509.DNSName("kubernetes"),
            x509.DNSName("kubernetes.default"),
            x509.DNSName("kubernetes.default.svc"),
            x509.DNSName("kubernetes.default.svc.cluster.local"),
        ]
        server_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")])
        server = _certificate(server_name, server_key.public_key(), ca_name, ca_key, sans=sans)
        (d / "apiserver.crt").write_bytes(server.public_bytes(serialization.Encoding.PEM))
        (d / "apiserver.key").write_bytes(_pem_key(server_key))

        self.client_certificate("admin", ADMIN_USER, ["system:masters"])

        sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        (d / "sa.key").write_bytes(_pem_key(sa_key))
        (d / "sa.pub").write_bytes(
            sa_key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )

    def client_certificate(self, file_stem: str, user: str, groups: list[str]) -> None:
        """A client certificate for `user` in `groups`: `<file_stem>.crt` and `.key`."""
        d = self.directory
        ca = x509.load_pem_x509_certificate((d / "ca.crt").read_bytes())
        ca_key = serialization.load_pem_private_key((d / "ca.key").read_bytes(), password=None)
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name(
            [x509.NameAttribute(NameOID.ORGANIZATION_NAME, g) for g in groups]
            + [x509.NameAttribute(NameOID.COMMON_NAME, user)]
        )
        cert = _certificate(name, key.public_key(), ca.subject, ca_key, client=True)
        (d / f"{file_stem}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        (d / f"{file_stem}.key").write_bytes(_pem_key(key))


#: Audit policy: every write, at Metadata level (who, what, verb); no reads.
AUDIT_POLICY = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Policy",
    "omitStages": ["RequestReceived"],
    "rules": [
        {"level": "Metadata", "verbs": ["create", "update", "patch", "delete", "deletecollection"]},
        {"level": "None"},
    ],
}


# --- The cluster -----------------------------------------------------------------


@dataclass
class ControlPlane:
    """etcd + kube-apiserver + controller-manager + scheduler + kwok on loopback."""

    bin_dir: Path
    workdir: Path
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    logs: dict[str, IO[bytes]] = field(default_factory=dict)
    api_port: int = 0
    #: More kube-apiserver flags, e.g. the client certificate it shows a real kubelet.
    extra_apiserver_args: list[str] = field(default_factory=list)

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.api_port}"

    @property
    def kubeconfig(self) -> Path:
        return self.workdir / "admin.kubeconfig"

    @property
    def pki(self) -> Path:
        return self.workdir / "pki"

    def binary(self, name: str) -> str:
        return str(self.bin_dir / name)

    # -- lifecycle --

    def start(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        Pki(self.pki).create()
        self.api_port = free_port()
        self._write_kubeconfig()
        etcd_port, etcd_peer = free_port(), free_port()
        etcd_url = f"http://127.0.0.1:{etcd_port}"
        self._spawn(
            "etcd",
            [
                "--name=test",
                f"--data-dir={self.workdir / 'etcd'}",
                f"--listen-client-urls={etcd_url}",
                f"--advertise-client-urls={etcd_url}",
                f"--listen-peer-urls=http://127.0.0.1:{etcd_peer}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{etcd_peer}",
                f"--initial-cluster=test=http://127.0.0.1:{etcd_peer}",
                "--listen-metrics-urls=",
                "--unsafe-no-fsync",
                "--log-level=warn",
            ],
        )
        self._wait(lambda: _http_ok(f"{etcd_url}/health"), deadline, "etcd health")
        pki = self.pki
        self._spawn(
            "kube-apiserver",
            [
                f"--etcd-servers={etcd_url}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={self.api_port}",
                f"--tls-cert-file={pki / 'apiserver.crt'}",
                f"--tls-private-key-file={pki / 'apiserver.key'}",
                f"--client-ca-file={pki / 'ca.crt'}",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={pki / 'sa.pub'}",
                f"--service-account-signing-key-file={pki / 'sa.key'}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--authorization-mode=RBAC",
                "--enable-admission-plugins=PodSecurity,ServiceAccount,NamespaceLifecycle",
                "--endpoint-reconciler-type=none",
                "--enable-priority-and-fairness=false",
                "--profiling=false",
                f"--audit-policy-file={self._audit_policy()}",
                f"--audit-log-path={self.audit_log}",
                "--audit-log-mode=batch",
                "--audit-log-batch-max-wait=1s",
                *self.extra_apiserver_args,
            ],
        )
        self._wait(self._api_ready, deadline, "kube-apiserver /readyz")
        self._spawn(
            "kube-controller-manager",
            [
                f"--kubeconfig={self.kubeconfig}",
                f"--authentication-kubeconfig={self.kubeconfig}",
                f"--authorization-kubeconfig={self.kubeconfig}",
                f"--service-account-private-key-file={pki / 'sa.key'}",
                f"--root-ca-file={pki / 'ca.crt'}",
                "--use-service-account-credentials=true",
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                f"--secure-port={free_port()}",
                "--concurrent-deployment-syncs=10",
                "--concurrent-replicaset-syncs=10",
                "--controllers=*,-nodeipam,-cloud-node-lifecycle",
            ],
        )
        self._spawn(
            "kube-scheduler",
            [
                f"--kubeconfig={self.kubeconfig}",
                f"--authentication-kubeconfig={self.kubeconfig}",
                f"--authorization-kubeconfig={self.kubeconfig}",
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                f"--secure-port={free_port()}",
            ],
        )
        self._spawn(
            "kwok",
            [
                f"--kubeconfig={self.kubeconfig}",
                f"--config={KWOK_STAGES}",
                "--node-lease-duration-seconds=40",
                "--manage-all-nodes=false",
                "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
                f"--cidr={POD_CIDR}",
                "--node-ip=10.255.0.1",
            ],
        )
        for index in range(FAKE_NODES):
            self.apply(_fake_node(f"kwok-node-{index}"))
        self._wait(self._cluster_usable, deadline, "fake nodes Ready and default ServiceAccount")

    def stop(self) -> None:
        for name in reversed(list(self.processes)):
            proc = self.processes[name]
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.processes.values():
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for log in self.logs.values():
            log.close()

    # -- helpers used by tests --

    def kubectl(
        self, *args: str, check: bool = True, input: str | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        """Run kubectl against this cluster as the admin; a failure carries kubectl's stderr."""
        result = subprocess.run(
            [self.binary("kubectl"), f"--kubeconfig={self.kubeconfig}", *args],
            input=input,
            capture_output=True,
            text=True,
            check=False,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            raise KubectlError(f"kubectl {' '.join(args)} failed: {result.stderr.strip()}")
        return result

    def helm(
        self, *args: str, check: bool = True, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        """Run helm against this cluster as the admin; a failure carries helm's output."""
        result = subprocess.run(
            [self.binary("helm"), f"--kubeconfig={self.kubeconfig}", *args],
            capture_output=True,
            text=True,
            check=False,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            raise KubectlError(f"helm {' '.join(args)} failed:\n{result.stderr}{result.stdout}")
        return result

    def apply(self, obj: dict[str, Any] | str) -> subprocess.CompletedProcess[str]:
        text = obj if isinstance(obj, str) else yaml.safe_dump(obj)
        return self.kubectl("apply", "--server-side", "-f", "-", input=text)

    def install_crds(self, directory: Path, timeout: float = 60) -> None:
        """Apply the CRDs in `directory` and wait until the API server serves them."""
        self.kubectl("apply", "--server-side", "-f", str(directory))
        names = [
            yaml.safe_load(p.read_text())["metadata"]["name"]
            for p in sorted(directory.glob("*.yaml"))
        ]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            # `kubectl wait` fails outright if it reads a CRD before its status exists,
            # so poll the conditions instead.
            established = self.kubectl(
                "get",
                "crd",
                *names,
                "-o",
                "jsonpath={range .items[*]}"
                "{.status.conditions[?(@.type=='Established')].status}{' '}{end}",
            ).stdout.split()
            if established == ["True"] * len(names):
                return
            time.sleep(0.2)
        raise TimeoutError(f"CRDs {names} not Established within {timeout}s")

    def log_tail(self, name: str, lines: int = 40) -> str:
        path = self.workdir / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    # -- internals --

    def _spawn(self, name: str, args: list[str]) -> None:
        log = open(self.workdir / f"{name}.log", "wb")  # noqa: SIM115 - closed in stop()
        self.logs[name] = log
        self.processes[name] = subprocess.Popen(
            [self.binary(name), *args], stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir
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
            time.sleep(0.2)
        raise TimeoutError(f"Timed out waiting for {what}")

    def _client(self) -> httpx.Client:
        context = ssl.create_default_context(cafile=str(self.pki / "ca.crt"))
        context.load_cert_chain(str(self.pki / "admin.crt"), str(self.pki / "admin.key"))
        return httpx.Client(base_url=self.server, verify=context, timeout=5)

    def _api_ready(self) -> bool:
        try:
            with self._client() as client:
                return client.get("/readyz").status_code == 200
        except httpx.HTTPError:
            return False

    def _cluster_usable(self) -> bool:
        with self._client() as client:
            nodes = client.get("/api/v1/nodes").json().get("items", [])
            ready = [
                n
                for n in nodes
                if any(
                    c["type"] == "Ready" and c["status"] == "True"
                    for c in n.get("status", {}).get("conditions", [])
                )
            ]
            sa = client.get("/api/v1/namespaces/default/serviceaccounts/default")
            return len(ready) >= FAKE_NODES and sa.status_code == 200

    @property
    def audit_log(self) -> Path:
        """JSON lines, one per write request, with the user who made it."""
        return self.workdir / "audit.log"

    def _audit_policy(self) -> Path:
        path = self.workdir / "audit-policy.yaml"
        path.write_text(yaml.safe_dump(AUDIT_POLICY))
        return path

    def kubeconfig_for(self, user: str, groups: list[str]) -> Path:
        """A kubeconfig that authenticates as `user` in `groups` with a client certificate."""
        stem = user.replace(":", "-")
        Pki(self.pki).client_certificate(stem, user, groups)
        path = self.workdir / f"{stem}.kubeconfig"
        self._write_kubeconfig(path, user, self.pki / f"{stem}.crt", self.pki / f"{stem}.key")
        return path

    def _write_kubeconfig(
        self,
        path: Path | None = None,
        user: str = ADMIN_USER,
        cert: Path | None = None,
        key: Path | None = None,
    ) -> None:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "test",
                    "cluster": {
                        "server": self.server,
                        "certificate-authority": str(self.pki / "ca.crt"),
                    },
                }
            ],
            "users": [
                {
                    "name": user,
                    "user": {
                        "client-certificate": str(cert or self.pki / "admin.crt"),
                        "client-key": str(key or self.pki / "admin.key"),
                    },
                }
            ],
            "contexts": [{"name": "test", "context": {"cluster": "test", "user": user}}],
            "current-context": "test",
        }
        (path or self.kubeconfig).write_text(yaml.safe_dump(config))


class KubectlError(RuntimeError):
    """kubectl exited non-zero; the message holds its stderr."""


def _http_ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _fake_node(name: str) -> dict[str, Any]:
    """A Node that kwok manages: it heartbeats it and runs its pods."""
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "type": "kwok",
            },
        },
        "status": {
            "allocatable": {"cpu": "320", "memory": "2560Gi", "pods": "1000"},
            "capacity": {"cpu": "320", "memory": "2560Gi", "pods": "1000"},
        },
    }


@contextlib.contextmanager
def running_control_plane() -> Iterator[ControlPlane]:
    """Start a control plane in a temporary directory; stop and remove it afterwards."""
    workdir = Path(tempfile.mkdtemp(prefix="switchboard-cp-"))
    plane = ControlPlane(bin_dir=binaries_dir(), workdir=workdir)
    try:
        plane.start()
        yield plane
    finally:
        plane.stop()
        if not os.environ.get("SWITCHBOARD_KEEP_CONTROL_PLANE"):
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    with running_control_plane() as cp:
        print(f"export KUBECONFIG={cp.kubeconfig}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            signal.pause()
    sys.exit(0)
