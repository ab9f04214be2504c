"""The Switchboard API: resource models (the single source of truth) and contract names."""
