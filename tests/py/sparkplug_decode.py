"""Independent Sparkplug B decoder for tests/sparkplug.rs.

Reads {"messages": [{"topic": str, "hex": str}, ...]} on stdin and prints, per message, what
pysparkplug (an independent Sparkplug B implementation from PyPI, with its own generated
protobuf descriptor run by Google's protobuf runtime) makes of it: the topic parts, payload
timestamp and seq, and every metric (name and datatype resolved through the device's last
DBIRTH for DDATA, as a host application does), plus the metric properties read from the raw
protobuf message (pysparkplug's Metric has no properties). A message pysparkplug refuses is
reported as {"error": ...}: the Rust test decides whether that is expected.

Integer values are also given as they are on the wire ("wire") so the sign handling of small
signed types can be checked independently of pysparkplug's own conversion.
"""

import json
import math
import sys

import pysparkplug
from pysparkplug import _protobuf as pb


def jsonable(v):
    if isinstance(v, float) and (math.isnan(v) or math.isinf(v)):
        return repr(v)
    return v


def prop_value(pv):
    field = pv.WhichOneof("value")
    return {
        "type": pv.type if pv.HasField("type") else None,
        "is_null": pv.is_null,
        "value": jsonable(getattr(pv, field)) if field else None,
    }


def main():
    req = json.load(sys.stdin)
    births = {}
    out = []
    for msg in req["messages"]:
        raw = bytes.fromhex(msg["hex"])
        topic = pysparkplug.Topic.from_str(msg["topic"])
        kind = str(topic.message_type)
        entry = {
            "group_id": topic.group_id,
            "message_type": kind,
            "edge_node_id": topic.edge_node_id,
            "device_id": topic.device_id,
        }
        raw_pb = pb.Payload.FromString(raw)
        try:
            if kind == "NDEATH":
                p = pysparkplug.NDeath.decode(raw)
                metrics = [p.bd_seq_metric]
                # pysparkplug 0.6.1's NDeath.decode drops a timestamp that is present (its
                # HasField test is inverted): read it from the protobuf message.
                entry["timestamp"] = raw_pb.timestamp if raw_pb.HasField("timestamp") else None
                entry["seq"] = None
            else:
                cls = {
                    "NBIRTH": pysparkplug.NBirth,
                    "DBIRTH": pysparkplug.DBirth,
                    "NDATA": pysparkplug.NData,
                    "DDATA": pysparkplug.DData,
                    "DDEATH": pysparkplug.DDeath,
                }[kind]
                birth = births.get((topic.edge_node_id, topic.device_id))
                p = cls.decode(raw, birth=birth) if kind.endswith("DATA") else cls.decode(raw)
                if kind.endswith("BIRTH"):
                    births[(topic.edge_node_id, topic.device_id)] = p
                metrics = list(getattr(p, "metrics", ()))
                entry["timestamp"] = p.timestamp
                entry["seq"] = getattr(p, "seq", None)
        except Exception as e:  # reported, judged by the Rust side
            entry["error"] = f"{type(e).__name__}: {e}"
            out.append(entry)
            continue
        entry["metrics"] = []
        for m, r in zip(metrics, raw_pb.metrics):
            field = r.WhichOneof("value")
            props = {}
            if r.HasField("properties"):
                for k, v in zip(r.properties.keys, r.properties.values):
                    props[k] = prop_value(v)
            entry["metrics"].append(
                {
                    "name": m.name,
                    "alias": m.alias,
                    "datatype": m.datatype.name,
                    "wire_datatype": r.datatype if r.HasField("datatype") else None,
                    "value": jsonable(m.value),
                    "wire_field": field,
                    "wire": jsonable(getattr(r, field)) if field else None,
                    "timestamp": m.timestamp,
                    "is_historical": m.is_historical,
                    "is_null": m.is_null,
                    "properties": props,
                }
            )
        out.append(entry)
    json.dump({"messages": out}, sys.stdout)


if __name__ == "__main__":
    main()
