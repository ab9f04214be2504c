"""Start the operator: kopf settings, handler registration, the run loop.

`switchboard operator` calls `run()`; `kopf run -m switchboard.controller.kopf_main`
registers the same handlers into kopf's default registry.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any

import kopf

from switchboard.api import constants
from switchboard.api.models import ReportedPlugin
from switchboard.controller.handlers import (
    CHILD_RESOURCES,
    MANAGED_SELECTOR,
    register_communication_plugins,
    register_dependents,
    register_vendor_integrations,
)
from switchboard.controller.kube import Kube, bearer_token
from switchboard.controller.leader import LeaseElector
from switchboard.controller.reconciler import Describer, Reconciler
from switchboard.controller.runtime import OperatorRuntime
from switchboard.controller.settings import OperatorSettings

log = logging.getLogger("switchboard.operator")

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

    def describe(address: str) -> ReportedPlugin | None:
        if not reachable(address):
            return None

        async def call() -> ReportedPlugin:
            async with PluginClient(address, timeout=timeout) as client:
                reply = await client.describe()
            return ReportedPlugin(
                name=reply.name,
                version=reply.version,
                capabilities=list(reply.capabilities),
                operations=[op.name for op in reply.operations],
            )

        try:
            return asyncio.run(call())
        except Exception as error:
            log.info("Could not describe the plugin at %s: %s", address, error)
            return None

    return describe


def connection_info(kube: Kube) -> kopf.ConnectionInfo:
    """kopf talks to the API server as the same identity as our own client."""
    config = kube.api_client.configuration
    bearer = bearer_token(kube.api_client) or ""
    return kopf.ConnectionInfo(
        server=config.host,
        ca_path=config.ssl_ca_cert,
        insecure=not config.verify_ssl,
        certificate_path=config.cert_file,
        private_key_path=config.key_file,
        token=bearer.removeprefix("Bearer ") or None,
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
    for group_version, plural in CHILD_RESOURCES:
        settings.watching.label_selectors[group_version, plural] = MANAGED_SELECTOR
    # Memory is set by the largest burst: a (re)start lists every watched object
    # (a resource, its five or six children, its pods and EndpointSlices), and
    # Python keeps the peak. Lists come in small chunks, and an object's kopf
    # worker, whose only job here is to queue a key, lets go of the object (and
    # exits) 0.1 s after its last event instead of 5 s: at most a few chunks'
    # worth of objects are in memory at once. (Measured after a restart with
    # 1,000 CommunicationPlugins: about 200 MB with kopf's defaults, under 100
    # MB with these.)
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
    only queue a key (per-object state, where there is any, lives in the runtime).
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


def build_registry(
    settings: OperatorSettings,
    kube: Kube,
    describer: Describer | None,
    registry: kopf.OperatorRegistry | None = None,
) -> tuple[kopf.OperatorRegistry, OperatorRuntime]:
    """Every handler, in `registry` (a new one by default; kopf's default one for `kopf run`)."""
    registry = registry if registry is not None else kopf.OperatorRegistry()
    runtime = OperatorRuntime(Reconciler(kube, settings, describer))

    @kopf.on.startup(registry=registry)
    async def operator_startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
        configure_kopf(settings, operator_settings)
        runtime.start()
        memo.resync = asyncio.create_task(runtime.resync_forever(operator_settings.resync_seconds))

    @kopf.on.cleanup(registry=registry)
    async def operator_cleanup(memo: kopf.Memo, **_: Any) -> None:
        if (task := getattr(memo, "resync", None)) is not None:
            task.cancel()
        await runtime.stop()

    @kopf.on.login(registry=registry)
    def operator_login(**_: Any) -> kopf.ConnectionInfo:
        return connection_info(kube)

    operator_settings = settings
    register_communication_plugins(registry, runtime)
    register_vendor_integrations(registry, runtime)
    register_dependents(registry, runtime, settings.field_manager)
    return registry, runtime


async def operate(
    settings: OperatorSettings,
    kube: Kube,
    *,
    describer: Describer | None = None,
    stop_flag: asyncio.Event | threading.Event | None = None,
    ready_flag: asyncio.Event | threading.Event | None = None,
) -> None:
    """Run the operator until `stop_flag` is set."""
    registry, _runtime = build_registry(settings, kube, describer)
    namespaces = [settings.namespace] if settings.namespace else []
    await kopf.operator(
        registry=registry,
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
    kube = Kube.from_environment(settings.field_manager, kubeconfig)
    if describer is None:
        describer = describe_over_grpc(settings.describe_timeout_seconds)
    if asyncio.run(_run(settings, kube, describer)):
        sys.exit(1)  # lost the lease: restart as a standby


async def _run(settings: OperatorSettings, kube: Kube, describer: Describer) -> bool:
    """Run until a signal (False) or until the leadership lease is lost (True)."""
    loop = asyncio.get_running_loop()
    # An asyncio.Event, not a threading.Event: kopf would wait for a threading
    # one in an executor thread, and that thread would outlive a signal stop.
    stop = asyncio.Event()
    threads_stop = threading.Event()
    lost = False

    def stop_all() -> None:
        stop.set()
        threads_stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop_all)
    try:
        if settings.leader_election:
            elector = LeaseElector(
                kube.api_client, settings.lease_namespace, settings.lease_name, settings.identity
            )
            if not await asyncio.to_thread(elector.wait_for_leadership, threads_stop):
                return False

            def on_lost() -> None:
                nonlocal lost
                lost = True
                loop.call_soon_threadsafe(stop_all)

            threading.Thread(
                target=elector.keep_renewing,
                args=(threads_stop, on_lost),
                name="lease",
                daemon=True,
            ).start()
        await operate(settings, kube, describer=describer, stop_flag=stop)
    finally:
        threads_stop.set()
    return lost
