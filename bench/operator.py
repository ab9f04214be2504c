"""Operator benchmark: throughput, API writes, relist cost and memory.

Starts the test control plane (real etcd, API server, controllers, kwok),
runs the operator (`switchboard operator`, see bench/operator_process.py) as
its own process with its own client certificate, and measures from the
outside:

- resources per second: N CommunicationPlugins applied at once, until every
  one is Ready and all of its children exist, against two floors of the
  same control plane: N plain Deployments applied at once, and the very
  children the operator writes for N resources (its builders' output)
  applied by eight clients at once (the operator's workers);
- API writes per resource: the API server's audit log, counting every
  create/update/patch/delete the operator's user made;
- writes caused by a full relist: the operator is restarted and lists
  everything again; every write after that is counted;
- operator RSS with M resources.

    .venv/bin/python -m bench.operator [--resources 200] [--rss-resources 1000]

(Run it as a module: as a script, bench/ would come first on sys.path and
this file would shadow the standard library's `operator`.)

Bounded: every wait has a deadline; all traffic stays on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support.controlplane import ControlPlane, running_control_plane  # noqa: E402

OPERATOR_USER = "switchboard-operator"
NAMESPACE = "bench"
BASELINE_NAMESPACE = "bench-baseline"
WRITE_VERBS = {"create", "update", "patch", "delete", "deletecollection"}


def plugin(index: int) -> dict[str, Any]:
    return {
        "apiVersion": "switchboard.dev/v1alpha1",
        "kind": "CommunicationPlugin",
        "metadata": {"name": f"sms-{index:04d}", "namespace": NAMESPACE},
        "spec": {
            "image": "ghcr.io/switchboard-dev/plugin-twilio-sms:0.1.0",
            "channelType": "sms",
            "priority": 1 + index % 3,
            "config": {"from_number": "+15005550006", "index": index},
        },
    }


def apply_all(plane: ControlPlane, start: int, stop: int) -> None:
    items = [plugin(i) for i in range(start, stop)]
    document = {"apiVersion": "v1", "kind": "List", "items": items}
    plane.kubectl("apply", "--server-side", "-f", "-", input=yaml.safe_dump(document), timeout=300)


def ready_count(plane: ControlPlane) -> tuple[int, int]:
    listing = json.loads(
        plane.kubectl(
            "get", "communicationplugins", "-n", NAMESPACE, "-o", "json", timeout=120
        ).stdout
    )
    ready = sum(
        1
        for item in listing["items"]
        if any(
            c["type"] == "Ready" and c["status"] == "True"
            for c in (item.get("status") or {}).get("conditions", [])
        )
    )
    return ready, len(listing["items"])


def children_complete(plane: ControlPlane, expected: int) -> bool:
    for kind in ("deployments", "services", "configmaps", "networkpolicies", "serviceaccounts"):
        out = plane.kubectl(
            "get",
            kind,
            "-n",
            NAMESPACE,
            "-l",
            "app.kubernetes.io/managed-by=switchboard-operator",
            "-o",
            "name",
            timeout=120,
        ).stdout
        if len(out.split()) < expected:
            return False
    return True


def operator_writes(plane: ControlPlane) -> Counter[str]:
    writes: Counter[str] = Counter()
    if not plane.audit_log.exists():
        return writes
    for line in plane.audit_log.read_text().splitlines():
        event = json.loads(line)
        if event.get("user", {}).get("username") != OPERATOR_USER:
            continue
        if event.get("verb") in WRITE_VERBS and event.get("stage") == "ResponseComplete":
            ref = event.get("objectRef", {})
            resource = ref.get("resource", "?") + (
                f"/{ref['subresource']}" if ref.get("subresource") else ""
            )
            writes[f"{event['verb']} {resource}"] += 1
    return writes


def plain_deployment(index: int) -> dict[str, Any]:
    """What the operator makes of `plugin(index)`, minus the operator: the baseline."""
    labels = {"bench": "baseline", "index": str(index)}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": f"baseline-{index:04d}", "namespace": BASELINE_NAMESPACE},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [
                        {
                            "name": "plugin",
                            "image": "ghcr.io/switchboard-dev/plugin-twilio-sms:0.1.0",
                        }
                    ]
                },
            },
        },
    }


def available(plane: ControlPlane, namespace: str) -> int:
    """How many Deployments of the namespace have their one replica available."""
    listing = json.loads(plane.kubectl("get", "deployments", "-n", namespace, "-o", "json").stdout)
    return sum(1 for d in listing["items"] if (d.get("status") or {}).get("availableReplicas") == 1)


def baseline_seconds(plane: ControlPlane, n: int) -> float:
    """How long this control plane takes to make n plain Deployments available."""
    plane.kubectl("create", "namespace", BASELINE_NAMESPACE)
    items = [plain_deployment(i) for i in range(n)]
    started = time.monotonic()
    plane.kubectl(
        "apply",
        "--server-side",
        "-f",
        "-",
        input=yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": items}),
        timeout=300,
    )

    wait(lambda: available(plane, BASELINE_NAMESPACE) == n, 600, f"{n} Deployments available")
    elapsed = time.monotonic() - started
    plane.kubectl("delete", "namespace", BASELINE_NAMESPACE, "--wait=false")
    return elapsed


CHILDREN_NAMESPACE = "bench-children"
#: The operator's workers: the children floor applies with as many clients at once.
WORKERS = 8


def operator_children(index: int) -> list[dict[str, Any]]:
    """The very objects the operator writes for `plugin(index)` (its builders), in
    their order, placed in the children floor's namespace, without an owner."""
    from switchboard.api.models import CommunicationPlugin
    from switchboard.controller import builders
    from switchboard.controller.settings import OperatorSettings

    body = plugin(index)
    body["metadata"] = {**body["metadata"], "namespace": CHILDREN_NAMESPACE, "uid": "floor"}
    resource = CommunicationPlugin.model_validate(body)
    objects = builders.children(resource, OperatorSettings(), builders.Inputs())
    for obj in objects:
        obj["metadata"].pop("ownerReferences", None)
    return objects


def children_baseline_seconds(plane: ControlPlane, n: int) -> float:
    """How long this control plane takes to hold every child the operator would write for
    n resources (ServiceAccount, ConfigMap, Service, NetworkPolicy, Deployment each),
    applied by as many clients at once as the operator has workers, until every
    Deployment is available: the floor for the operator's own work."""
    plane.kubectl("create", "namespace", CHILDREN_NAMESPACE)
    shares = [
        [obj for i in range(worker, n, WORKERS) for obj in operator_children(i)]
        for worker in range(WORKERS)
    ]
    started = time.monotonic()
    command = [plane.binary("kubectl"), f"--kubeconfig={plane.kubeconfig}"]
    appliers = [
        subprocess.Popen(
            [*command, "apply", "--server-side", "-f", "-"],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in shares
    ]
    for applier, share in zip(appliers, shares, strict=True):
        assert applier.stdin is not None
        applier.stdin.write(yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": share}))
        applier.stdin.close()
    for applier in appliers:
        if applier.wait(300) != 0:
            refused = applier.stderr.read() if applier.stderr else ""
            raise RuntimeError(f"kubectl apply failed: {refused}")

    wait(
        lambda: available(plane, CHILDREN_NAMESPACE) == n,
        600,
        f"{n} resources' children, their Deployments available",
    )
    elapsed = time.monotonic() - started
    plane.kubectl("delete", "namespace", CHILDREN_NAMESPACE, "--wait=false")
    return elapsed


def start_operator(plane: ControlPlane, kubeconfig: Path) -> subprocess.Popen[bytes]:
    # `switchboard operator`, except that it calls Describe on loopback addresses
    # only (see bench/operator_process.py): kwok's pod IPs lead off this machine.
    return subprocess.Popen(
        [sys.executable, "-m", "bench.operator_process", str(kubeconfig)],
        cwd=REPO,
        env={
            **os.environ,
            "SWITCHBOARD_RESYNC_SECONDS": "3600",
            "SWITCHBOARD_NAMESPACE": NAMESPACE,
        },
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def wait(predicate: Any, timeout: float, what: str) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if predicate():
            return time.monotonic() - started
        time.sleep(0.5)
    raise TimeoutError(f"{what} did not happen within {timeout}s")


def settle_audit() -> None:
    time.sleep(3)  # the audit log is written in batches every second


def wait_until_idle(plane: ControlPlane, quiet: float = 10, timeout: float = 300) -> None:
    """Until the operator has made no write for `quiet` seconds: its backlog is done."""
    deadline = time.monotonic() + timeout
    last, since = sum(operator_writes(plane).values()), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(1)
        now = sum(operator_writes(plane).values())
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return
    raise TimeoutError("the operator kept writing")


def main(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {}
    with running_control_plane() as plane:
        plane.install_crds(REPO / "crds")
        plane.kubectl("create", "namespace", NAMESPACE)
        floor = baseline_seconds(plane, args.resources)
        results["control_plane_baseline"] = {
            "deployments": args.resources,
            "seconds_until_all_available": round(floor, 1),
            "deployments_per_second": round(args.resources / floor, 2),
        }
        children_floor = children_baseline_seconds(plane, args.resources)
        results["children_baseline"] = {
            "resources": args.resources,
            "objects": args.resources * len(operator_children(0)),
            "seconds_until_all_available": round(children_floor, 1),
        }
        kubeconfig = plane.kubeconfig_for(OPERATOR_USER, ["system:masters"])
        operator = start_operator(plane, kubeconfig)
        try:
            time.sleep(3)  # the operator starts and finds nothing to do
            n = args.resources
            started = time.monotonic()
            apply_all(plane, 0, n)
            wait(
                lambda: ready_count(plane) == (n, n) and children_complete(plane, n),
                900,
                f"{n} Ready",
            )
            elapsed = time.monotonic() - started
            wait_until_idle(plane)
            writes = operator_writes(plane)
            results["apply"] = {
                "resources": n,
                "seconds_until_all_ready": round(elapsed, 1),
                "resources_per_second": round(n / elapsed, 2),
                "time_over_baseline": round(elapsed / floor, 2),
                "time_over_children_baseline": round(elapsed / children_floor, 2),
                "api_writes_per_resource": round(sum(writes.values()) / n, 2),
                "writes_by_kind": dict(sorted(writes.items())),
            }

            # Relist: a fresh operator process lists everything and must find nothing to change.
            operator.terminate()
            operator.wait(30)
            before = operator_writes(plane)
            operator = start_operator(plane, kubeconfig)
            time.sleep(args.relist_seconds)
            settle_audit()
            caused = operator_writes(plane) - before
            results["relist"] = {
                "resources": n,
                "observed_seconds": args.relist_seconds,
                "writes": sum(caused.values()),
                "writes_by_kind": dict(sorted(caused.items())),
            }

            m = max(args.rss_resources, n)
            if m > n:
                apply_all(plane, n, m)
            wait(lambda: ready_count(plane) == (m, m), 1800, f"{m} Ready")
            time.sleep(5)
            results["memory"] = {"resources": m, "operator_rss_mb": round(rss_mb(operator.pid), 1)}
        finally:
            operator.terminate()
            operator.wait(30)
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--resources", type=int, default=200)
    parser.add_argument("--rss-resources", type=int, default=1000)
    parser.add_argument("--relist-seconds", type=float, default=20.0)
    print(json.dumps(main(parser.parse_args()), indent=2))
