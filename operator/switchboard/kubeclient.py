"""How every Switchboard process finds its Kubernetes API server."""

from __future__ import annotations

from kubernetes import client as k8s
from kubernetes import config as k8s_config


def api_client(kubeconfig: str | None = None) -> k8s.ApiClient:
    """In a pod: its ServiceAccount; elsewhere: `kubeconfig`, or the default kubeconfig."""
    if kubeconfig is None:
        try:
            k8s_config.load_incluster_config()  # type: ignore[no-untyped-call]
            return k8s.ApiClient()
        except k8s_config.ConfigException:
            pass
    client: k8s.ApiClient = k8s_config.new_client_from_config(config_file=kubeconfig)  # type: ignore[no-untyped-call]
    return client
