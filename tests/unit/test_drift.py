"""Drift detection, without a cluster: what counts as a change the operator undoes."""

from __future__ import annotations

from typing import Any

from switchboard.controller import drift

DESIRED: dict[str, Any] = {
    "apiVersion": "v1",
    "kind": "Service",
    "metadata": {"name": "sms-plugin", "namespace": "t", "labels": {"a": "b"}},
    "spec": {"ports": [{"name": "grpc", "port": 50051}], "selector": {"a": "b"}},
}


def _live(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": "sms-plugin",
            "namespace": "t",
            "labels": {"a": "b", "added-by": "someone"},
            "uid": "u",
            "resourceVersion": "7",
            "managedFields": [],
        },
        "spec": {
            "ports": [{"name": "grpc", "port": "50051", "protocol": "TCP"}],
            "selector": {"a": "b"},
            "clusterIP": "10.0.0.9",
            **spec,
        },
        "status": {"loadBalancer": {}},
    }


def test_fields_the_server_or_others_add_are_not_drift() -> None:
    assert drift.in_sync(DESIRED, _live())


def test_a_changed_owned_field_or_a_missing_object_is_drift() -> None:
    assert not drift.in_sync(DESIRED, _live(ports=[{"name": "grpc", "port": 50052}]))
    assert not drift.in_sync(DESIRED, _live(selector={"a": "c"}))
    assert not drift.in_sync(DESIRED, None)
    extra_port = _live(ports=[{"name": "grpc", "port": 50051}, {"name": "x", "port": 1}])
    assert not drift.in_sync(DESIRED, extra_port)


def test_contains_compares_numbers_and_their_strings_alike() -> None:
    assert drift.contains({"cpu": 1}, {"cpu": "1"})
    assert not drift.contains({"cpu": 1}, {"cpu": "2"})
    assert not drift.contains([1, 2], [1])


def test_owned_fields_make_a_merge_patch_that_replaces_lists_whole() -> None:
    patch = drift.owned_fields(DESIRED)
    assert patch["spec"]["ports"] == [{"name": "grpc", "port": 50051}]
    assert patch["metadata"] == {"labels": {"a": "b"}}
    assert "apiVersion" not in patch and "kind" not in patch
