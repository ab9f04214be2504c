"""The plugin's two background tasks, from ``activate`` until ``deactivate``.

* ``follow_change_events`` subscribes to ``ReceiveChangeEvents`` and logs
  every event as an alarm or event; the stream is re-opened with backoff when
  it breaks.
* ``monitor_devices`` lists the devices every ``interval`` seconds and logs
  each state change; while VOLTHA is unreachable it probes more often, so the
  plugin reports SERVING again soon after VOLTHA is back.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

import grpc
from google.protobuf import empty_pb2
from voltha_protos import device_pb2

from switchboard.sdk import Backoff, PluginError, RetryableError, Unauthenticated

from .alarms import AlarmLog, DeviceState, from_change_event, from_device_state
from .connection import PROBE_TIMEOUT, VolthaConnection


class Monitor:
    """Feeds the alarm log from VOLTHA; see the module docstring."""

    def __init__(
        self,
        voltha: VolthaConnection,
        log: AlarmLog,
        interval: float,
        logger: logging.Logger,
    ) -> None:
        self.voltha = voltha
        self.log = log
        self.interval = interval
        self.logger = logger
        self.stream_connected = False
        self.device_states: dict[str, DeviceState] = {}

    async def follow_change_events(self) -> None:
        backoff = Backoff(0.2, max(self.interval, 1.0))
        while True:
            call = self.voltha.stub.ReceiveChangeEvents(
                empty_pb2.Empty(), metadata=self.voltha.metadata
            )
            try:
                await call.wait_for_connection()
                self.stream_connected = True
                backoff.reset()
                self.logger.info("Subscribed to VOLTHA change events")
                async for event in call:
                    found = from_change_event(event)
                    if found is not None:
                        await self.log.append(found)
            except grpc.aio.AioRpcError as error:
                if error.code() == grpc.StatusCode.UNAVAILABLE:
                    await self.voltha.note("unreachable", f"event stream: {error.details()}")
                elif error.code() == grpc.StatusCode.UNAUTHENTICATED:
                    await self.voltha.note("unauthenticated")
            except Exception:
                self.logger.exception("Failed to read VOLTHA change events")
            finally:
                call.cancel()
                if self.stream_connected:
                    self.logger.warning("Lost the VOLTHA change event stream")
                self.stream_connected = False
            await asyncio.sleep(backoff.next())

    async def monitor_devices(self) -> None:
        interval = self.interval
        backoff = Backoff(min(0.5, interval), interval)
        while True:
            try:
                devices: Any = await self.voltha.call(
                    "ListDevices", empty_pb2.Empty(), timeout=min(PROBE_TIMEOUT, interval * 5)
                )
            except RetryableError:
                # Unreachable: probe more often than the interval until VOLTHA is back.
                await asyncio.sleep(backoff.next())
                continue
            except Unauthenticated:
                pass  # said once, when VOLTHA first refused; health is NOT_SERVING
            except PluginError as error:
                self.logger.warning("Device monitoring failed", extra={"error": error.message})
            except Exception:
                self.logger.exception("Device monitoring failed")
            else:
                backoff.reset()
                await self.note_device_states(devices.items)
            await asyncio.sleep(interval)

    async def note_device_states(self, devices: Iterable[device_pb2.Device]) -> None:
        seen = set()
        for device in devices:
            seen.add(device.id)
            found = from_device_state(device, self.device_states.get(device.id))
            self.device_states[device.id] = (
                device.admin_state,
                device.oper_status,
                device.connect_status,
            )
            if found is not None:
                await self.log.append(found)
        for gone in set(self.device_states) - seen:
            del self.device_states[gone]

    def forget(self, device_id: str) -> None:
        self.device_states.pop(device_id, None)
