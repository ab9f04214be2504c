"""Fiber access management on VOLTHA's northbound gRPC API (``voltha.VolthaService``).

The plugin is a thin, typed layer over the RPCs VOLTHA itself offers, using the
generated code of the ``voltha-protos`` package (never hand-written protos)::

    provision_olt          CreateDevice(type, host_and_port) -> EnableDevice
    provision_onu          EnableOnuSerialNumber(OLT, PON port, serial) [-> EnableDevice]
    enable_onu/disable_onu EnableDevice / DisableDevice on the ONU found by serial number
    enable_device/disable_device   EnableDevice / DisableDevice by id (an OLT too)
    enable_port/disable_port       EnablePort / DisablePort
    discover_devices       ListDevices, filtered
    list_devices           ListDevices + ListDevicePorts, OLTs with their ONUs
    get_device_status      GetDevice + ListDevicePorts
    configure_device       UpdateDevice, ListDevicePmConfigs -> UpdateDevicePmConfigs
    reboot_device          RebootDevice
    delete_device          DeleteDevice
    add_subscriber_flow    UpdateLogicalDeviceFlowTable: two OFPFC_ADD, then old flows out
    remove_subscriber_flow UpdateLogicalDeviceFlowTable, one OFPFC_DELETE by cookie
    list_flows             ListLogicalDeviceFlows, readable
    collect_metrics        ListDevicePmConfigs + port counters from ListDevicePorts
    get_alarms             the plugin's alarm log, fed by ReceiveChangeEvents and polling
    get_topology           ListLogicalDevices + ListLogicalDevicePorts (+ flows)
    list_adapters          ListAdapters + ListDeviceTypes
    list_components        GetVoltha + ListCoreInstances + ListAdapters

Modules: ``plugin`` (lifecycle and operations), ``connection`` (the channel,
error translation, health), ``openflow`` (flows built and read), ``views``
(protobuf to JSON), ``alarms`` (what events mean, the alarm log), ``monitor``
(background tasks), ``schemas`` (params schemas).
"""

from .plugin import VolthaPlugin

__all__ = ["VolthaPlugin"]
