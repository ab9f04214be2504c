"""How every Switchboard process finds its Kubernetes API server.

In a pod: its ServiceAccount (the token file is re-read, so bound tokens that
the kubelet rotates keep working); elsewhere: the kubeconfig given, or
`$KUBECONFIG`, or `~/.kube/config`. The operator talks through lightkube's
async client (`kube_config`); the router still through the `kubernetes`
client (`api_client`). Each import happens inside its function, so a process
loads only the client it uses.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kubernetes import client as k8s
    from lightkube.config.kubeconfig import SingleConfig


def kube_config(kubeconfig: str | None = None) -> SingleConfig:
    """The API server and credentials, for lightkube (the operator)."""
    from lightkube import KubeConfig

    config = KubeConfig.from_env() if kubeconfig is None else KubeConfig.from_file(kubeconfig)
    single = config.get()
    if single is None:  # a kubeconfig without a current context
        raise RuntimeError(f"{kubeconfig or 'the kubeconfig'} names no current context")
    return single


def api_client(kubeconfig: str | None = None) -> k8s.ApiClient:
    """The same, as a `kubernetes` ApiClient (the router)."""
    from kubernetes import client as k8s
    from kubernetes import config as k8s_config

    if kubeconfig is None:
        try:
            k8s_config.load_incluster_config()  # type: ignore[no-untyped-call]
            return k8s.ApiClient()
        except k8s_config.ConfigException:
            pass
    client: k8s.ApiClient = k8s_config.new_client_from_config(config_file=kubeconfig)  # type: ignore[no-untyped-call]
    return client
