"""Switchboard: communication channels and vendor integrations as plugins on Kubernetes."""

__version__ = "0.1.0"
