"""The plugin protocol: versioned gRPC packages (`v1`), generated from `.proto` files.

Regenerate with `hack/generate-proto.sh`; `tests/sdk/test_protocol_drift.py`
fails when the committed code no longer matches the `.proto`.
"""
