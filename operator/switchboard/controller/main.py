"""Start the operator: one asyncio event loop for kopf, the work queue, the
reconciles, the leadership Lease and the metrics server. No threads.

`switchboard operator` calls `run()`; `kopf run -m switchboard.controller.kopf_main`
registers the same handlers into kopf's default registry. Nothing here does
I/O when it is imported or built: the API server is first reached in kopf's
login and startup handlers.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ipaddress
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import kopf
from lightkube import ApiError
from lightkube.config.kubeconfig import SingleConfig
from lightkube.config.models import User
from opentelemetry import trace

from switchboard.api import constants
from switchboard.api.models import PluginStatus, ReportedPlugin
from switchboard.controller import metrics as metrics_
from switchboard.controller.handlers import (
    register_communication_plugins,
    register_dependents,
    register_vendor_integrations,
    watched_resources,
)
from switchboard.controller.kube import Kube
from switchboard.controller.leader import LeaseElector
from switchboard.controller.reconciler import Describer, Reconciler
from switchboard.controller.runtime import Key, Outcome, WorkQueue
from switchboard.controller.settings import OperatorSettings, admission_policy_gap
from switchboard.kubeclient import kube_config

if TYPE_CHECKING:
    import threading

log = logging.getLogger("switchboard.operator")
_tracer = trace.get_tracer("switchboard.operator")

#: Objects per list request when kopf (re)lists a watched kind.
LIST_CHUNK_SIZE = 50
#: Seconds an object's kopf worker waits for the object's next event before it exits.
WORKER_IDLE_SECONDS = 0.1


def describe_over_grpc(
    timeout: float, reachable: Callable[[str], bool] = lambda address: True
) -> Describer:
    """A Describer that calls a ready plugin pod directly (the plugin NetworkPolicy
    admits operator pods). `reachable` can veto addresses, e.g. in tests whose
    pods are not all real.

    The gRPC client loads here, when the operator starts, not at the first
    Describe: loaded in the middle of a burst of reconciles (a restart), its
    long-lived objects would keep that burst's memory from being reused."""
    from switchboard.sdk import PluginClient

    async def describe(address: str) -> ReportedPlugin | None:
        if not reachable(address):
            return None
        try:
            async with PluginClient(address, timeout=timeout) as client:
                reply = await client.describe()
        except Exception as error:
            log.info(
                "Could not describe a plugin", extra={"endpoint": address, "error": str(error)}
            )
            return None
        return ReportedPlugin(
            name=reply.name,
            version=reply.version,
            capabilities=list(reply.capabilities),
            operations=[op.name for op in reply.operations],
            operation_permissions={
                op.name: op.permission for op in reply.operations if op.permission
            },
        )

    return describe


def _data(value: str | None) -> bytes | None:
    return base64.b64decode(value) if value else None


def connection_info(config: SingleConfig) -> kopf.ConnectionInfo:
    """kopf talks to the API server as the same identity as our own client."""
    cluster, user = config.cluster, config.user or User()
    token = user.token
    if user.token_file:  # a pod's ServiceAccount token, rotated by the kubelet: read it anew
        token = Path(user.token_file).read_text().strip()
    if user.exec or user.auth_provider:
        raise kopf.LoginError(
            "kubeconfig exec and auth-provider credentials are not supported; "
            "use a token or a client certificate"
        )
    return kopf.ConnectionInfo(
        server=cluster.server,
        ca_path=config.abs_file(cluster.certificate_auth) if cluster.certificate_auth else None,
        ca_data=_data(cluster.certificate_auth_data),
        insecure=cluster.insecure or None,
        username=user.username,
        password=user.password,
        token=token or None,
        certificate_path=config.abs_file(user.client_cert) if user.client_cert else None,
        certificate_data=_data(user.client_cert_data),
        private_key_path=config.abs_file(user.client_key) if user.client_key else None,
        private_key_data=_data(user.client_key_data),
    )


def configure_kopf(settings: kopf.OperatorSettings, operator: OperatorSettings) -> None:
    """kopf's bookkeeping under our annotation prefix; its events only for errors."""
    prefix = constants.ANNOTATION_KOPF_PREFIX
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=prefix)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=prefix, key="last-handled-configuration"
    )
    settings.persistence.finalizer = f"{prefix}/finalizer"
    settings.posting.level = logging.WARNING
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    # One active replica is ensured by the Lease (see `leader`), not by kopf peering.
    settings.peering.standalone = True
    # Children, pods and endpoints: the API server sends only ours, so objects of
    # other workloads in the same namespaces cost neither traffic nor memory.
    for group_version, plural in watched_resources():
        settings.watching.label_selectors[group_version, plural] = constants.MANAGED_SELECTOR
    # Memory is set by the largest burst: a (re)start lists every watched object
    # (a resource, its five or six children, its pods and EndpointSlices), and
    # Python keeps the peak. Lists come in small chunks, and an object's kopf
    # worker, whose only job here is to queue a key, lets go of the object (and
    # exits) 0.1 s after its last event instead of 5 s.
    settings.watching.chunk_size = LIST_CHUNK_SIZE
    settings.queueing.idle_timeout = WORKER_IDLE_SECONDS
    if operator.namespace:
        # Namespaced: the watched kinds are known; scanning the cluster's API
        # groups and namespaces would need cluster-wide read access.
        settings.scanning.disabled = True


def forgetful_memories() -> Any:
    """kopf's per-object records, kept for no object after its event is handled.

    kopf keeps a record per watched object (a memo, error throttling, daemon and
    index state) until the object is deleted. Our handlers use none of it: they
    only queue a key (per-object state, where there is any, lives in the queue).
    Kept, the records cost memory per object, and, made while a (re)start lists
    thousands of objects, they pin the memory of that burst for good. `None`
    (kopf's own records) should a kopf version not have them where we look."""
    try:
        from kopf._core.reactor.inventory import ResourceMemories
    except ImportError:
        return None

    class ForgetfulMemories(ResourceMemories):
        async def recall(self, raw_body: Any, **kwargs: Any) -> Any:
            memory = await super().recall(raw_body, **kwargs)
            await self.forget(raw_body)
            return memory

    return ForgetfulMemories()


def api_server_cidrs(addresses: list[str]) -> list[str]:
    """Host CIDRs (/32, /128) for the API server's addresses; what is no address is dropped."""
    cidrs = []
    for address in addresses:
        with contextlib.suppress(ValueError):
            cidrs.append(str(ipaddress.ip_network(address)))
    return sorted(set(cidrs))


class Operator:
    """One running operator: settings, client, work queue, metrics. Built without I/O."""

    def __init__(
        self,
        settings: OperatorSettings,
        *,
        config: SingleConfig | None = None,
        describer: Describer | None = None,
    ) -> None:
        self.settings = settings
        self._config = config
        self.describer = describer
        self.metrics = metrics_.OperatorMetrics()
        self.health = metrics_.Health(stuck_after=max(3 * settings.resync_seconds, 60.0))
        self.queue = WorkQueue(self._reconcile, self._report_failure, workers=settings.workers)
        self.metrics.watch_queue(self.queue.depth, self.queue.oldest_seconds)
        self._kube: Kube | None = None
        self.reconciler: Reconciler | None = None
        self._resync: asyncio.Task[None] | None = None
        #: Whether registries and levels are left to the admission policy (None: not yet known).
        self.admission_policy_in_force: bool | None = None

    @property
    def config(self) -> SingleConfig:
        if self._config is None:
            self._config = kube_config()
        return self._config

    @property
    def kube(self) -> Kube:
        if self._kube is None:
            self._kube = Kube.from_config(self.config, self.settings.field_manager)
            self._kube.on_write = self.metrics.count_write
        return self._kube

    async def _discover_api_server(self) -> OperatorSettings:
        """The settings, with the API server's addresses added (best effort)."""
        addresses = list(self.settings.api_server_cidrs)
        if host := os.environ.get("KUBERNETES_SERVICE_HOST"):
            addresses.append(host)
        try:
            addresses += await self.kube.api_server_addresses()
        except Exception as error:  # forbidden, or the API server is not there yet
            reason = error.status.message if isinstance(error, ApiError) else str(error)
            log.warning(
                "Could not read the API server's endpoints; plugin NetworkPolicies "
                "exclude only SWITCHBOARD_API_SERVER_CIDRS",
                extra={"error": reason},
            )
        return self.settings.model_copy(update={"api_server_cidrs": api_server_cidrs(addresses)})

    async def start(self) -> None:
        """Connect, then start the workers and the resync (kopf's startup handler)."""
        settings = await self._discover_api_server()
        self.reconciler = Reconciler(self.kube, settings, self.describer, self._observe_status)
        await self.follow_admission_policy()
        self.queue.start()
        self._resync = asyncio.create_task(self._resync_forever(), name="resync")
        self.health.beat()
        self.health.started = self.health.leading = True
        self.metrics.leader.set(1)

    async def stop(self) -> None:
        if self._resync is not None:
            self._resync.cancel()
            await asyncio.gather(self._resync, return_exceptions=True)
        await self.queue.stop()
        self.health.leading = False
        self.metrics.leader.set(0)
        if self._kube is not None:
            await self._kube.close()
            self._kube = None

    def request(self, key: Key) -> None:
        self.queue.request(key)

    def forget(self, key: Key) -> None:
        self.queue.forget(key)
        self.metrics.conditions.observe((key.kind, key.namespace, key.name), None)

    def _observe_status(self, key: Key, status: PluginStatus | None) -> None:
        self.metrics.conditions.observe((key.kind, key.namespace, key.name), status)

    async def _reconcile(self, key: Key) -> Outcome:
        """One reconcile, counted, timed and traced: a span per reconcile, whose
        children are its Describe calls (and, through them, the plugin's own span)."""
        assert self.reconciler is not None, "started"
        started = time.monotonic()
        result = "error"
        with _tracer.start_as_current_span(
            f"switchboard.reconcile {key.kind}",
            attributes={
                "k8s.namespace.name": key.namespace,
                "switchboard.kind": key.kind,
                "switchboard.resource": f"{key.namespace}/{key.name}",
            },
        ) as span:
            try:
                outcome = await self.reconciler.reconcile(key)
                result = "retry" if outcome.retry else "ok"
                return outcome
            finally:
                span.set_attribute("switchboard.result", result)
                self.metrics.reconciles.labels(key.kind, result).inc()
                self.metrics.reconcile_seconds.labels(key.kind).observe(time.monotonic() - started)

    async def _report_failure(self, key: Key, error: BaseException, retry_in: float) -> None:
        assert self.reconciler is not None, "started"
        await self.reconciler.report_failure(key, error, retry_in)

    async def follow_admission_policy(self) -> None:
        """Leave registries and levels to the admission policy only while it is in force.

        A deleted policy or binding, or one that no longer denies, must not leave
        the cluster with nobody checking: the operator then refuses on its own.
        """
        assert self.reconciler is not None, "started"
        name = self.settings.admission_policy
        if not name:
            return
        group = "admissionregistration.k8s.io/v1"
        try:
            gap = admission_policy_gap(
                name,
                await self.kube.get(group, "ValidatingAdmissionPolicy", None, name),
                await self.kube.get(group, "ValidatingAdmissionPolicyBinding", None, name),
            )
        except Exception as error:  # forbidden, or the API is not served: check ourselves
            gap = f"it could not be read ({error})"
        in_force = gap is None
        if in_force != self.admission_policy_in_force:
            if in_force:
                log.info("The admission policy is in force", extra={"policy": name})
            else:
                log.warning(
                    "The admission policy is not in force; the operator checks "
                    "registries and security levels itself",
                    extra={"policy": name, "reason": gap},
                )
        self.admission_policy_in_force = in_force
        self.reconciler.policy = self.reconciler.settings.gate_policy(in_force)

    async def _resync_forever(self) -> None:
        """Level-based safety net: reconcile every known resource every `resync_seconds`,
        so whatever a missed event left behind heals, and Secret rotations are seen."""
        assert self.reconciler is not None, "started"
        while True:
            self.health.beat()
            await asyncio.sleep(self.settings.resync_seconds)
            try:
                await self.follow_admission_policy()
                keys = await self.reconciler.all_keys()
            except Exception as error:  # the loop must outlive any one failure
                log.warning("The resync could not list resources", extra={"error": str(error)})
                continue
            for key in keys:
                self.request(key)


def build_registry(
    operator: Operator, registry: kopf.OperatorRegistry | None = None
) -> kopf.OperatorRegistry:
    """Every handler, in `registry` (a new one by default; kopf's default one for `kopf run`)."""
    registry = registry if registry is not None else kopf.OperatorRegistry()

    @kopf.on.login(registry=registry)
    def operator_login(**_: Any) -> kopf.ConnectionInfo:
        return connection_info(operator.config)

    @kopf.on.startup(registry=registry)
    async def operator_startup(settings: kopf.OperatorSettings, **_: Any) -> None:
        configure_kopf(settings, operator.settings)
        await operator.start()

    @kopf.on.cleanup(registry=registry)
    async def operator_cleanup(**_: Any) -> None:
        await operator.stop()

    register_communication_plugins(registry, operator.request, operator.forget)
    register_vendor_integrations(registry, operator.request, operator.forget)
    register_dependents(registry, operator.request, operator.settings.field_manager)
    return registry


async def operate(
    operator: Operator,
    *,
    stop_flag: asyncio.Event | threading.Event | None = None,
    ready_flag: asyncio.Event | threading.Event | None = None,
) -> None:
    """Run the operator until `stop_flag` is set (a threading.Event for a test
    that runs it beside its own code)."""
    namespaces = [operator.settings.namespace] if operator.settings.namespace else []
    await kopf.operator(
        registry=build_registry(operator),
        clusterwide=not namespaces,
        namespaces=namespaces,
        stop_flag=stop_flag,
        ready_flag=ready_flag,
        standalone=True,
        memories=forgetful_memories(),
    )


def run(kubeconfig: str | None = None, describer: Describer | None = None) -> None:
    """The `switchboard operator` command. `describer`: Describe over gRPC by default."""
    settings = OperatorSettings()
    if describer is None:
        describer = describe_over_grpc(settings.describe_timeout_seconds)
    operator = Operator(settings, config=kube_config(kubeconfig), describer=describer)
    if asyncio.run(_run(operator)):
        sys.exit(1)  # lost the lease: restart as a standby


async def _run(operator: Operator) -> bool:
    """Run until a signal (False) or until the leadership lease is lost (True)."""
    settings = operator.settings
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    lost = False
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    runner, _port = await metrics_.serve(
        operator.metrics, operator.health, settings.metrics_host, settings.metrics_port
    )
    renewing: asyncio.Task[None] | None = None
    try:
        if settings.leader_election:
            elector = LeaseElector(
                operator.kube.client,
                settings.lease_namespace,
                settings.lease_name,
                settings.identity,
            )
            # A standby is ready: it serves its probes and waits its turn.
            operator.health.started = True
            if not await elector.wait_for_leadership(stop):
                return False

            def on_lost() -> None:
                nonlocal lost
                lost = True
                stop.set()

            renewing = asyncio.create_task(elector.keep_renewing(stop, on_lost), name="lease")
        await operate(operator, stop_flag=stop)
    finally:
        stop.set()
        if renewing is not None:
            await asyncio.gather(renewing, return_exceptions=True)
        await runner.cleanup()
    return lost
