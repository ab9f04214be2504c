"""A test network-automation integration: two devices in memory, one extra operation."""

from __future__ import annotations

from typing import Any

from switchboard.sdk import NetworkAutomationPlugin, PermanentError, operation


class MiniOlt(NetworkAutomationPlugin):
    vendor = "voltha"

    async def initialize(self) -> None:
        self.devices: dict[str, dict[str, Any]] = {"olt-1": {}, "olt-2": {}}

    async def discover_devices(self, params: dict[str, Any]) -> Any:
        return sorted(self.devices)

    async def configure_device(self, params: dict[str, Any]) -> Any:
        self._device(params["device_id"]).update(params["settings"])
        return {"configured": params["device_id"]}

    async def get_device_status(self, params: dict[str, Any]) -> Any:
        return {"device_id": params["device_id"], "settings": self._device(params["device_id"])}

    @operation(
        name="reboot_device",
        schema={"type": "object", "properties": {"device_id": {"type": "string"}}},
        description="Reboot one device.",
    )
    async def reboot(self, params: dict[str, Any]) -> Any:
        return {"rebooted": params.get("device_id", "all")}

    def _device(self, device_id: str) -> dict[str, Any]:
        if device_id not in self.devices:
            raise PermanentError(f"device {device_id!r} is unknown")
        return self.devices[device_id]
