"""Local mode: the same resource YAML, run without Kubernetes (`switchboard up`)."""
