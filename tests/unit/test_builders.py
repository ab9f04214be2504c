"""The builders, without a cluster: what each resource becomes."""

from __future__ import annotations

import ipaddress
import json
from typing import Any

from switchboard.api import constants
from switchboard.api.models import CommunicationPlugin, VendorIntegration
from switchboard.controller import builders
from switchboard.controller.settings import OperatorSettings
from tests.support.resources import communication_plugin, vendor_integration

SETTINGS = OperatorSettings(api_server_cidrs=["10.96.0.1/32", "172.18.0.2/32"])


def _cp(**spec: Any) -> CommunicationPlugin:
    body = communication_plugin("sms", **spec)
    body["metadata"].update(namespace="tenant-a", uid="uid-1")
    return CommunicationPlugin.model_validate(body)


def _vi(**spec: Any) -> VendorIntegration:
    body = vendor_integration("voltha", **spec)
    body["metadata"].update(namespace="tenant-a", uid="uid-2")
    return VendorIntegration.model_validate(body)


def _egress(resource: CommunicationPlugin | VendorIntegration) -> list[dict[str, Any]]:
    egress: list[dict[str, Any]] = builders.network_policy(resource, SETTINGS)["spec"]["egress"]
    return egress


def _reachable(egress: list[dict[str, Any]], address: str, port: int) -> bool:
    """Whether a NetworkPolicy's egress rules let a TCP connection to address:port out."""
    ip = ipaddress.ip_address(address)
    for rule in egress:
        ports = rule.get("ports")
        if ports is not None and not any(p["port"] == port for p in ports):
            continue
        peers = rule.get("to")
        if peers is None:
            return True
        for peer in peers:
            block = peer["ipBlock"]
            network = ipaddress.ip_network(block["cidr"])
            if ip.version != network.version or ip not in network:
                continue
            if not any(ip in ipaddress.ip_network(cut) for cut in block.get("except", [])):
                return True
    return False


METADATA, API_SERVER, NODE_DNS = "169.254.169.254", "10.96.0.1", "169.254.20.10"


def test_standard_reaches_provider_ports_but_never_metadata_or_the_api_server() -> None:
    egress = _egress(_cp())
    assert _reachable(egress, "203.0.113.7", 443)
    assert _reachable(egress, "203.0.113.7", 587)
    assert not _reachable(egress, "203.0.113.7", 5432)
    assert not _reachable(egress, METADATA, 80)
    assert not _reachable(egress, METADATA, 443)
    assert not _reachable(egress, API_SERVER, 443)
    assert not _reachable(egress, "172.18.0.2", 443)
    assert not _reachable(egress, "fe80::1", 443)
    assert _reachable(egress, "2001:db8::1", 443)
    # DNS goes anywhere, node-local caches on link-local addresses included.
    assert _reachable(egress, NODE_DNS, 53)


def test_minimal_and_elevated_differ_in_ports_only() -> None:
    minimal, elevated = (
        _egress(_vi(securityLevel="minimal")),
        _egress(_vi(securityLevel="elevated")),
    )
    assert _reachable(minimal, "203.0.113.7", 443)
    assert not _reachable(minimal, "203.0.113.7", 80)
    assert _reachable(elevated, "203.0.113.7", 55555)
    assert not _reachable(elevated, METADATA, 80)
    assert not _reachable(elevated, API_SERVER, 6443)


def test_system_reaches_everything() -> None:
    egress = _egress(_vi(securityLevel="system"))
    assert egress == [{}]
    assert _reachable(egress, METADATA, 80) and _reachable(egress, API_SERVER, 443)


def test_declared_egress_allows_exactly_what_it_names_at_a_low_level() -> None:
    # VOLTHA on 55555 and PostgreSQL on 5432 without `elevated`.
    resource = _vi(
        securityLevel="standard",
        egress=[
            {"cidrs": ["10.20.0.0/16"], "ports": [{"port": 55555}]},
            {"ports": [{"port": 5432}]},
        ],
    )
    egress = _egress(resource)
    assert _reachable(egress, "10.20.3.4", 55555)
    assert not _reachable(egress, "10.21.3.4", 55555)
    assert _reachable(egress, "198.51.100.9", 5432)
    assert not _reachable(egress, "198.51.100.9", 443), "the level's defaults are replaced"
    assert not _reachable(egress, METADATA, 5432)
    assert not _reachable(egress, API_SERVER, 5432)


def test_a_declared_range_that_holds_forbidden_ranges_has_them_cut_out() -> None:
    egress = _egress(_vi(egress=[{"cidrs": ["0.0.0.0/0", "169.254.0.0/24"]}]))
    assert _reachable(egress, "198.51.100.9", 8443)
    assert not _reachable(egress, METADATA, 80)
    assert not _reachable(egress, "169.254.0.5", 80), "a range inside link-local is dropped"
    rule = egress[1]
    assert rule["to"] == [
        {
            "ipBlock": {
                "cidr": "0.0.0.0/0",
                "except": ["10.96.0.1/32", "169.254.0.0/16", "172.18.0.2/32"],
            }
        }
    ]


def test_udp_ports_are_declared_as_udp() -> None:
    egress = _egress(_vi(egress=[{"ports": [{"port": 161, "protocol": "UDP"}]}]))
    assert egress[1]["ports"] == [{"protocol": "UDP", "port": 161}]


def test_only_router_and_operator_pods_may_reach_a_plugin() -> None:
    policy = builders.network_policy(_cp(), SETTINGS)["spec"]
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    (ingress,) = policy["ingress"]
    assert ingress["ports"] == [{"protocol": "TCP", "port": constants.PLUGIN_GRPC_PORT}]
    selected = [peer["podSelector"]["matchLabels"] for peer in ingress["from"]]
    assert selected == [SETTINGS.router_pod_labels, SETTINGS.operator_pod_labels]


def test_the_deployment_runs_restricted_without_a_token_and_mounts_only_references() -> None:
    inputs = builders.Inputs(secret_checksum="abc")
    deployment = builders.deployment(
        _cp(secretRef={"name": "twilio"}, config={"token": "${TOKEN}"}), SETTINGS, inputs
    )
    pod = deployment["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["serviceAccountName"] == "sms-plugin"
    assert pod["securityContext"]["runAsNonRoot"] is True
    (container,) = pod["containers"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert {"name": "secrets", "secret": {"secretName": "twilio", "defaultMode": 0o440}} in pod[
        "volumes"
    ]
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations[constants.ANNOTATION_SECRET_CHECKSUM] == "abc"
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    system = builders.deployment(_vi(securityLevel="system"), SETTINGS, inputs)
    assert system["spec"]["template"]["spec"]["automountServiceAccountToken"] is True


def test_config_is_rendered_as_written_and_a_change_changes_the_checksum() -> None:
    resource = _cp(config={"from": "+1500", "token": "${TOKEN}"})
    config_map = builders.config_map(resource)
    assert json.loads(config_map["data"]["config.json"]) == {"from": "+1500", "token": "${TOKEN}"}
    other = _cp(config={"from": "+1501", "token": "${TOKEN}"})
    assert builders.config_checksum(resource) != builders.config_checksum(other)


def test_children_follow_the_table_of_child_kinds() -> None:
    kinds = [c["kind"] for c in builders.children(_cp(replicas=2), SETTINGS, builders.Inputs())]
    assert kinds == [k.kind for k in builders.CHILD_KINDS]
    one = [c["kind"] for c in builders.children(_cp(), SETTINGS, builders.Inputs())]
    assert "PodDisruptionBudget" not in one
    own_account = builders.children(_cp(serviceAccountName="x"), SETTINGS, builders.Inputs())
    assert "ServiceAccount" not in [c["kind"] for c in own_account]
    for child in builders.children(_cp(replicas=2), SETTINGS, builders.Inputs()):
        assert child["metadata"]["name"] == "sms-plugin"
        assert child["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
        assert child["metadata"]["labels"][constants.LABEL_MANAGED_BY] == constants.MANAGED_BY


def test_environment_presets_set_replicas_and_a_budget() -> None:
    production = _vi(environment="production", image="r/v@sha256:" + "a" * 64)
    assert builders.replicas(production, SETTINGS) == 3
    assert builders.pod_disruption_budget(production, SETTINGS) is not None
    assert builders.replicas(_vi(replicas=1, environment="production"), SETTINGS) == 1
    assert builders.pod_disruption_budget(_cp(), SETTINGS) is None


def test_every_variable_the_deployment_sets_for_the_runtime_is_one_it_reads() -> None:
    from switchboard.sdk._settings import RuntimeSettings

    deployment = builders.deployment(_vi(environment="development"), SETTINGS, builders.Inputs())
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    env = {item["name"]: item.get("value") for item in container["env"]}
    read = {str(field.validation_alias) for field in RuntimeSettings.model_fields.values()}

    # Identity for the plugin's own use (documented), not runtime settings.
    identity = {"SWITCHBOARD_TENANT", "SWITCHBOARD_RESOURCE"}
    ours = {name for name in env if name.startswith("SWITCHBOARD_")} - identity
    assert ours <= read, ours - read
    assert env["SWITCHBOARD_PLUGIN_LOG_LEVEL"] == "DEBUG"  # the development preset
