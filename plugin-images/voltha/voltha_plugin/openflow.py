"""OpenFlow 1.3 as VOLTHA's logical devices take it: subscriber flows built, any flow read back.

A subscriber's service is two flows on the OLT's logical device, like ONOS'
olt app writes them:

* upstream: ``IN_PORT`` = the ONU's UNI, ``VLAN_VID`` = c-tag -> push 802.1Q,
  set ``VLAN_VID`` = s-tag, output the NNI;
* downstream: ``IN_PORT`` = NNI, ``VLAN_VID`` = s-tag, ``METADATA`` =
  c-tag << 32 | UNI -> pop the VLAN, output the UNI (the metadata keeps the
  downstream flows of subscribers sharing an s-tag apart).

Both carry a cookie derived from the OLT and the subscriber id.
``flow_json`` reads any flow back with VLAN ids as numbers (without
OpenFlow's "present" bit) and actions by name.
"""

from __future__ import annotations

import hashlib
from typing import Any, Final

from voltha_protos import openflow_13_pb2

_OFP = openflow_13_pb2

#: OpenFlow's "VLAN id present" bit, OR-ed into a VLAN_VID match or set-field.
VLAN_PRESENT: Final = _OFP.OFPVID_PRESENT
LINK_DOWN: Final = _OFP.OFPPS_LINK_DOWN
ALL_COOKIE_BITS: Final = 0xFFFF_FFFF_FFFF_FFFF
_ETHERTYPE_8021Q: Final = 0x8100


def subscriber_flows(
    *,
    cookie: int,
    uni_port: int,
    nni_port: int,
    c_tag: int,
    s_tag: int,
    priority: int,
    table_id: int,
) -> tuple[openflow_13_pb2.ofp_flow_mod, openflow_13_pb2.ofp_flow_mod]:
    """The (upstream, downstream) flow mods of one subscriber."""
    common = {"cookie": cookie, "table_id": table_id, "priority": priority}
    upstream = _OFP.ofp_flow_mod(
        command=_OFP.OFPFC_ADD,
        match=_match(in_port=uni_port, vlan_vid=c_tag),
        instructions=[
            _apply_actions(
                _OFP.ofp_action(
                    type=_OFP.OFPAT_PUSH_VLAN,
                    push=_OFP.ofp_action_push(ethertype=_ETHERTYPE_8021Q),
                ),
                _OFP.ofp_action(
                    type=_OFP.OFPAT_SET_FIELD,
                    set_field=_OFP.ofp_action_set_field(
                        field=_oxm(_OFP.OFPXMT_OFB_VLAN_VID, vlan_vid=s_tag | VLAN_PRESENT)
                    ),
                ),
                _output(nni_port),
            )
        ],
        **common,
    )
    downstream = _OFP.ofp_flow_mod(
        command=_OFP.OFPFC_ADD,
        match=_match(in_port=nni_port, vlan_vid=s_tag, metadata=(c_tag << 32) | uni_port),
        instructions=[_apply_actions(_OFP.ofp_action(type=_OFP.OFPAT_POP_VLAN), _output(uni_port))],
        **common,
    )
    return upstream, downstream


def delete_by_cookie(cookie: int) -> openflow_13_pb2.ofp_flow_mod:
    """A flow mod deleting every flow with ``cookie``, in every table."""
    return _OFP.ofp_flow_mod(
        command=_OFP.OFPFC_DELETE,
        cookie=cookie,
        cookie_mask=ALL_COOKIE_BITS,
        table_id=_OFP.OFPTT_ALL,
        out_port=_OFP.OFPP_ANY,
        out_group=_OFP.OFPG_ANY,
    )


def _oxm(field_type: int, **value: Any) -> openflow_13_pb2.ofp_oxm_field:
    return _OFP.ofp_oxm_field(
        oxm_class=_OFP.OFPXMC_OPENFLOW_BASIC,
        ofb_field=_OFP.ofp_oxm_ofb_field(type=field_type, **value),
    )


def _match(
    *, in_port: int, vlan_vid: int, metadata: int | None = None
) -> openflow_13_pb2.ofp_match:
    fields = [
        _oxm(_OFP.OFPXMT_OFB_IN_PORT, port=in_port),
        _oxm(_OFP.OFPXMT_OFB_VLAN_VID, vlan_vid=vlan_vid | VLAN_PRESENT),
    ]
    if metadata is not None:
        fields.append(_oxm(_OFP.OFPXMT_OFB_METADATA, table_metadata=metadata))
    return _OFP.ofp_match(type=_OFP.OFPMT_OXM, oxm_fields=fields)


def _output(port: int) -> openflow_13_pb2.ofp_action:
    return _OFP.ofp_action(
        type=_OFP.OFPAT_OUTPUT,
        output=_OFP.ofp_action_output(port=port, max_len=_OFP.OFPCML_NO_BUFFER),
    )


def _apply_actions(*actions: openflow_13_pb2.ofp_action) -> openflow_13_pb2.ofp_instruction:
    return _OFP.ofp_instruction(
        type=_OFP.OFPIT_APPLY_ACTIONS,
        actions=_OFP.ofp_instruction_actions(actions=list(actions)),
    )


def flow_key(flow: Any) -> tuple[int, int, bytes]:
    """What identifies a flow in its table: table, priority and match (OpenFlow 1.3, 6.4)."""
    return flow.table_id, flow.priority, flow.match.SerializeToString(deterministic=True)


def delete_strict(flow: openflow_13_pb2.ofp_flow_stats) -> openflow_13_pb2.ofp_flow_mod:
    """A flow mod deleting exactly ``flow``."""
    return _OFP.ofp_flow_mod(
        command=_OFP.OFPFC_DELETE_STRICT,
        cookie=flow.cookie,
        cookie_mask=ALL_COOKIE_BITS,
        table_id=flow.table_id,
        priority=flow.priority,
        match=flow.match,
        out_port=_OFP.OFPP_ANY,
        out_group=_OFP.OFPG_ANY,
    )


def subscriber_cookie(olt_id: str, subscriber_id: str) -> int:
    """A stable 63-bit cookie naming one subscriber's flows on one OLT."""
    digest = hashlib.sha256(f"{olt_id}\0{subscriber_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") & 0x7FFF_FFFF_FFFF_FFFF


# --- reading flows back -------------------------------------------------------------------

#: Match fields whose values read better in hex.
_HEX_FIELDS: Final = {"metadata", "eth_type", "tunnel_id"}


def flow_json(flow: openflow_13_pb2.ofp_flow_stats) -> dict[str, Any]:
    """One flow, readable: ``{"in_port": 16, "vlan_vid": 101}``, ``[{"push_vlan": "0x8100"}]``."""
    return {
        "id": str(flow.id),
        "table_id": flow.table_id,
        "priority": flow.priority,
        "cookie": f"{flow.cookie:#018x}",
        "match": {
            name: value
            for name, value in (_field(field.ofb_field) for field in flow.match.oxm_fields)
        },
        "actions": [
            action for instruction in flow.instructions for action in _instruction(instruction)
        ],
        "packet_count": flow.packet_count,
        "byte_count": flow.byte_count,
    }


def _field(field: openflow_13_pb2.ofp_oxm_ofb_field) -> tuple[str, Any]:
    name = _OFP.oxm_ofb_field_types.Name(field.type).removeprefix("OFPXMT_OFB_").lower()
    which = field.WhichOneof("value")
    value = getattr(field, which) if which else None
    if name == "vlan_vid" and isinstance(value, int):
        return name, (value & ~VLAN_PRESENT) if value & VLAN_PRESENT else "untagged"
    if name in _HEX_FIELDS and isinstance(value, int):
        return name, f"{value:#x}"
    return name, value


def _instruction(instruction: openflow_13_pb2.ofp_instruction) -> list[dict[str, Any]]:
    kind = instruction.type
    if kind in (_OFP.OFPIT_APPLY_ACTIONS, _OFP.OFPIT_WRITE_ACTIONS):
        return [_action(action) for action in instruction.actions.actions]
    if kind == _OFP.OFPIT_GOTO_TABLE:
        return [{"goto_table": instruction.goto_table.table_id}]
    if kind == _OFP.OFPIT_WRITE_METADATA:
        return [{"write_metadata": f"{instruction.write_metadata.metadata:#x}"}]
    if kind == _OFP.OFPIT_METER:
        return [{"meter": instruction.meter.meter_id}]
    if kind == _OFP.OFPIT_CLEAR_ACTIONS:
        return [{"clear_actions": True}]
    return [{_OFP.ofp_instruction_type.Name(kind).removeprefix("OFPIT_").lower(): True}]


def _action(action: openflow_13_pb2.ofp_action) -> dict[str, Any]:
    kind = action.type
    if kind == _OFP.OFPAT_OUTPUT:
        port = action.output.port
        return {"output": _PORT_NAMES.get(port, port)}
    if kind == _OFP.OFPAT_PUSH_VLAN:
        return {"push_vlan": f"{action.push.ethertype:#06x}"}
    if kind == _OFP.OFPAT_POP_VLAN:
        return {"pop_vlan": True}
    if kind == _OFP.OFPAT_SET_FIELD:
        name, value = _field(action.set_field.field.ofb_field)
        return {f"set_{name}": value}
    if kind == _OFP.OFPAT_GROUP:
        return {"group": action.group.group_id}
    return {_OFP.ofp_action_type.Name(kind).removeprefix("OFPAT_").lower(): True}


_PORT_NAMES: Final = {
    _OFP.OFPP_CONTROLLER: "controller",
    _OFP.OFPP_IN_PORT: "in_port",
    _OFP.OFPP_FLOOD: "flood",
    _OFP.OFPP_ALL: "all",
    _OFP.OFPP_LOCAL: "local",
}
