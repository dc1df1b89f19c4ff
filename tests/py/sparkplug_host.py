"""An independent Sparkplug B host application for tests/sparkplug_host*.rs (issue 14).

Built on pysparkplug 0.6.1 (its MQTT Client over paho-mqtt, its Topic parser, its payload
classes and their protobuf descriptor, run by Google's protobuf runtime): nothing here comes
from gasdtu. It connects over mutual TLS to the broker at 127.0.0.1:PORT, subscribes (QoS 1)
to `spBv1.0/<group>/#` and prints one JSON line per event on stdout:

  {"event": "subscribed", "n": N}           the subscription is in place (N-th time)
  {"event": "connected" | "disconnected", "rc": RC}
  {"type": "DDATA", "topic": ..., ...}       one line per received message, see `describe`
                                             (with "dup": the broker's DUP flag)
  {"event": "network_error", "error": ...}   paho's loop failed; the host reconnects
  {"ack": "<cmd>", "ok": true, ...}          the answer to each stdin command
  {"ack": "<cmd>", "ok": false, "error": "..."}

Commands are JSON lines on stdin (at most 64 KiB each):

  {"cmd": "rebirth", "edge": E}                       NCMD `Node Control/Rebirth` = true
  {"cmd": "dcmd", "edge": E, "device": D, "metrics": [{"alias": A} or {"name": N},
     + "datatype": "UInt16" (a pysparkplug DataType name) , "value": V], "timestamp": MS?}
  {"cmd": "state", "host": H, "online": true|false}   retained STATE (Sparkplug 3.0 JSON)
  {"cmd": "raw", "topic": T, "hex": H}                these exact bytes (QoS 1)
  {"cmd": "ping"}

Every publish is QoS 1 and acked once the broker's PUBACK arrived (at most 10 s); the ack
of `rebirth`/`dcmd` carries the topic and payload hex it sent (so a test can send the very
same bytes again with `raw`). The session is persistent (clean_session off, fixed client
id) so that messages published while this host reconnects after a broker restart are
queued by the broker, not lost: a test can then expect to see everything.

Decoding: each payload is decoded by pysparkplug's class for its message type, aliases and
datatypes resolved through the last NBIRTH/DBIRTH of that node/device (an NBIRTH forgets the
node's DBIRTHs, as a host must). pysparkplug 0.6.1 has two known bugs: NDeath.decode drops a
present timestamp (inverted HasField), and it refuses small signed integers written
sign-extended (its issue 26; Tahu and Ignition write them so). For NDEATH the timestamp is
read from the protobuf message; when pysparkplug refuses a payload, it is decoded from the
raw protobuf message here instead and the line says `"decoder": "raw"` with pysparkplug's
error in `"pysparkplug_error"`. Metric properties are always read from the protobuf message
(pysparkplug's Metric has none).

Usage: sparkplug_host.py --port PORT --group G --ca CA --cert CERT --key KEY --client-id ID
"""

import argparse
import json
import math
import sys
import threading
import time

import pysparkplug
from pysparkplug import DataType, MessageType, Metric, QoS, Topic
from pysparkplug import _protobuf as pb

MAX_LINE = 64 * 1024
MAX_METRICS = 64
PUBACK_WAIT_S = 10.0

_out_lock = threading.Lock()


def emit(obj):
    with _out_lock:
        sys.stdout.write(json.dumps(obj, separators=(",", ":")) + "\n")
        sys.stdout.flush()


def jsonable(v):
    if isinstance(v, float) and (math.isnan(v) or math.isinf(v)):
        return repr(v)
    if isinstance(v, bytes):
        return v.hex()
    return v


def signed(v, bits):
    v &= (1 << bits) - 1
    return v - (1 << bits) if v >= 1 << (bits - 1) else v


# Raw protobuf value of a metric -> Python value, for the datatypes gasdtu sends. Small
# signed integers are read from their low bits, so both the sign-extended (Tahu) and the
# width-masked form give the same number.
RAW_DECODE = {
    DataType.INT8: lambda v: signed(v, 8),
    DataType.INT16: lambda v: signed(v, 16),
    DataType.INT32: lambda v: signed(v, 32),
    DataType.INT64: lambda v: signed(v, 64),
}


def prop_value(pv):
    field = pv.WhichOneof("value")
    return {
        "type": pv.type if pv.HasField("type") else None,
        "is_null": pv.is_null,
        "value": jsonable(getattr(pv, field)) if field else None,
    }


def props_of(r):
    props = {}
    if r.HasField("properties"):
        for k, v in zip(r.properties.keys, r.properties.values):
            props[k] = prop_value(v)
    return props


def dtype_name(code):
    try:
        return DataType(code).name
    except ValueError:
        return f"unknown({code})"


class Births:
    """Names and datatypes by alias from the last births, per (edge, device)."""

    def __init__(self):
        self.births = {}  # (edge, device) -> {"by_alias": {alias: name}, "dtype": {name: code}}

    def record(self, edge, device, raw_pb):
        if device is None:
            # A new NBIRTH starts a new session: the node's DBIRTHs are void.
            for key in [k for k in self.births if k[0] == edge]:
                del self.births[key]
        by_alias, dtype = {}, {}
        for r in raw_pb.metrics:
            if r.HasField("alias") and r.HasField("name"):
                by_alias[r.alias] = r.name
            if r.HasField("name"):
                dtype[r.name] = r.datatype
        self.births[(edge, device)] = {"by_alias": by_alias, "dtype": dtype}

    def resolve(self, edge, device, r):
        """(name, datatype code) of raw metric `r`, through the birth when needed."""
        b = self.births.get((edge, device))
        name = r.name if r.HasField("name") else None
        if name is None and b is not None and r.HasField("alias"):
            name = b["by_alias"].get(r.alias)
        code = r.datatype if r.HasField("datatype") and r.datatype != 0 else None
        if code is None and b is not None and name is not None:
            code = b["dtype"].get(name)
        return name, code


def masked_small_ints(raw_pb, births, topic):
    """The payload with sign-extended Int8/16/32 values width-masked (the form pysparkplug
    0.6.1 accepts), or None when there is none."""
    copy = pb.Payload()
    copy.CopyFrom(raw_pb)
    changed = False
    for r in copy.metrics:
        _, code = births.resolve(topic.edge_node_id, topic.device_id, r)
        if r.WhichOneof("value") != "int_value" or code is None:
            continue
        bits = {DataType.INT8: 8, DataType.INT16: 16, DataType.INT32: 32}.get(code)
        if bits and bits < 32 and r.int_value >= 1 << bits:
            r.int_value &= (1 << bits) - 1
            changed = True
    return copy.SerializeToString() if changed else None


def describe(topic_str, raw, qos, retain, dup, births, pysparkplug_births):
    """One JSON object for a received message."""
    entry = {"topic": topic_str, "qos": qos, "retain": retain, "dup": dup}
    try:
        topic = Topic.from_str(topic_str)
    except Exception as e:
        entry.update(type=None, error=f"topic: {type(e).__name__}: {e}")
        return entry
    kind = str(topic.message_type)
    entry.update(
        type=kind,
        group=topic.group_id,
        edge=topic.edge_node_id,
        device=topic.device_id,
    )
    if kind == "STATE":
        entry["host"] = topic.sparkplug_host_id
        try:
            st = pysparkplug.State.decode(raw)
            entry.update(online=st.online, timestamp=st.timestamp)
        except Exception as e:
            entry["error"] = f"STATE: {type(e).__name__}: {e}"
        return entry
    try:
        raw_pb = pb.Payload.FromString(raw)
    except Exception as e:
        entry["error"] = f"protobuf: {type(e).__name__}: {e}"
        return entry
    entry["timestamp"] = raw_pb.timestamp if raw_pb.HasField("timestamp") else None
    entry["seq"] = raw_pb.seq if raw_pb.HasField("seq") else None
    key = (topic.edge_node_id, topic.device_id)

    # pysparkplug first; a payload it refuses only for sign-extended small integers (its
    # issue 26) is given to it again with those values width-masked.
    decoded = None
    try:
        cls = topic.message_type.payload
        if kind == "NDEATH":
            p = cls.decode(raw)
            decoded = [p.bd_seq_metric]
        else:
            masked = masked_small_ints(raw_pb, births, topic)
            if masked is not None:
                entry["masked_sign_extended"] = True
            p = cls.decode(masked or raw, birth=pysparkplug_births.get(key))
            decoded = list(getattr(p, "metrics", ()))
            if kind == "NBIRTH":
                for k in [k for k in pysparkplug_births if k[0] == topic.edge_node_id]:
                    del pysparkplug_births[k]
            if kind in ("NBIRTH", "DBIRTH"):
                pysparkplug_births[key] = p
        entry["decoder"] = "pysparkplug"
    except Exception as e:
        entry["decoder"] = "raw"
        entry["pysparkplug_error"] = f"{type(e).__name__}: {e}"
    if kind in ("NBIRTH", "DBIRTH"):
        births.record(topic.edge_node_id, topic.device_id, raw_pb)

    metrics = []
    for i, r in enumerate(raw_pb.metrics):
        name, code = births.resolve(topic.edge_node_id, topic.device_id, r)
        field = r.WhichOneof("value")
        m = {
            "name": name,
            "alias": r.alias if r.HasField("alias") else None,
            "datatype": dtype_name(code) if code is not None else None,
            "datatype_code": code,
            "timestamp": r.timestamp if r.HasField("timestamp") else None,
            "is_historical": r.is_historical,
            "is_null": r.is_null,
            "properties": props_of(r),
        }
        if decoded is not None and i < len(decoded):
            d = decoded[i]
            m["value"] = jsonable(d.value)
            if d.name is not None:
                m["name"] = d.name
            m["datatype"] = d.datatype.name
        elif field is None or r.is_null:
            m["value"] = None
        else:
            v = getattr(r, field)
            try:
                conv = RAW_DECODE.get(DataType(code)) if code is not None else None
            except ValueError:
                conv = None
            m["value"] = jsonable(conv(v) if conv else v)
        metrics.append(m)
    entry["metrics"] = metrics
    if kind in ("NBIRTH", "NDEATH"):
        bd = [m["value"] for m in metrics if m["name"] == "bdSeq"]
        entry["bd_seq"] = bd[0] if bd else None
    return entry


class Host(pysparkplug.Client):
    """pysparkplug's Client with the raw message kept (decoding is `describe`'s, so that a
    payload pysparkplug refuses is still reported), a persistent session and a SUBACK
    event. The two paho-level settings are reached through the Client's paho client."""

    def __init__(self, client_id, tls):
        super().__init__(
            client_id=client_id,
            transport_config=tls,
            client_options=pysparkplug.ClientOptions(
                reconnection_delay_min=1, reconnection_delay_max=1
            ),
        )
        # pysparkplug always asks for a clean session; a test host must not miss what the
        # broker received while it was reconnecting.
        self._client._clean_session = False
        self.subscribed = 0
        self.births = Births()
        self.pysparkplug_births = {}

        def on_subscribe(_c, _u, _mid, _granted):
            self.subscribed += 1
            emit({"event": "subscribed", "n": self.subscribed})

        def on_disconnect(_c, _u, rc):
            emit({"event": "disconnected", "rc": rc})

        self._client.on_subscribe = on_subscribe
        self._client.on_disconnect = on_disconnect

    def _handle_message(self, mqtt_message):
        return mqtt_message

    def on_message(self, _client, msg):
        try:
            emit(
                describe(
                    msg.topic,
                    bytes(msg.payload),
                    msg.qos,
                    bool(msg.retain),
                    bool(msg.dup),
                    self.births,
                    self.pysparkplug_births,
                )
            )
        except Exception as e:  # never let a payload stop the host
            emit({"topic": msg.topic, "type": None, "error": f"{type(e).__name__}: {e}"})

    def publish_bytes(self, topic, payload, retain=False):
        info = self._client.publish(topic, payload, qos=1, retain=retain)
        if info.rc != 0:
            raise RuntimeError(f"publish on {topic} refused by paho (rc {info.rc})")
        info.wait_for_publish(timeout=PUBACK_WAIT_S)
        if not info.is_published():
            raise RuntimeError(f"no PUBACK for {topic} within {PUBACK_WAIT_S} s")


def need(obj, key, kind):
    v = obj.get(key)
    if not isinstance(v, kind) or isinstance(v, bool) and kind is not bool:
        raise ValueError(f"`{key}` must be a {kind.__name__}, got {v!r}")
    return v


def cmd_metric(i, spec):
    if not isinstance(spec, dict):
        raise ValueError(f"metrics[{i}] must be an object")
    name, alias = spec.get("name"), spec.get("alias")
    if name is None and alias is None:
        raise ValueError(f"metrics[{i}] needs a name or an alias")
    if name is not None and not isinstance(name, str):
        raise ValueError(f"metrics[{i}].name must be a string")
    if alias is not None and (not isinstance(alias, int) or isinstance(alias, bool) or alias < 0):
        raise ValueError(f"metrics[{i}].alias must be an unsigned integer")
    dt = spec.get("datatype")
    try:
        datatype = DataType[dt.upper()] if isinstance(dt, str) else DataType(dt)
    except (KeyError, ValueError):
        raise ValueError(f"metrics[{i}].datatype {dt!r} is not a Sparkplug datatype")
    return Metric(
        timestamp=None,
        name=name,
        alias=alias,
        datatype=datatype,
        value=spec.get("value"),
    )


def run_command(host, line):
    try:
        req = json.loads(line)
    except ValueError as e:
        return {"ack": None, "ok": False, "error": f"not JSON: {e}"}
    if not isinstance(req, dict):
        return {"ack": None, "ok": False, "error": "a command is a JSON object"}
    cmd = req.get("cmd")
    ack = {"ack": cmd}
    try:
        now = pysparkplug.get_current_timestamp()
        if cmd == "ping":
            pass
        elif cmd == "rebirth":
            edge = need(req, "edge", str)
            topic = Topic(group_id=host.group, message_type=MessageType.NCMD, edge_node_id=edge)
            payload = pysparkplug.NCmd(
                timestamp=now,
                metrics=(
                    Metric(
                        timestamp=now,
                        name="Node Control/Rebirth",
                        datatype=DataType.BOOLEAN,
                        value=True,
                    ),
                ),
            ).encode(include_dtypes=True)
            host.publish_bytes(str(topic), payload)
            ack.update(topic=str(topic), hex=payload.hex())
        elif cmd == "dcmd":
            edge, device = need(req, "edge", str), need(req, "device", str)
            specs = need(req, "metrics", list)
            if not 1 <= len(specs) <= MAX_METRICS:
                raise ValueError(f"`metrics` must hold 1 to {MAX_METRICS} metrics")
            ts = req.get("timestamp", now)
            if not isinstance(ts, int) or isinstance(ts, bool) or ts < 0:
                raise ValueError("`timestamp` must be milliseconds since the epoch")
            topic = Topic(
                group_id=host.group,
                message_type=MessageType.DCMD,
                edge_node_id=edge,
                device_id=device,
            )
            payload = pysparkplug.DCmd(
                timestamp=ts, metrics=tuple(cmd_metric(i, s) for i, s in enumerate(specs))
            ).encode(include_dtypes=True)
            host.publish_bytes(str(topic), payload)
            ack.update(topic=str(topic), hex=payload.hex())
        elif cmd == "state":
            h, online = need(req, "host", str), need(req, "online", bool)
            topic = Topic(message_type=MessageType.STATE, sparkplug_host_id=h)
            payload = pysparkplug.State(timestamp=now, online=online).encode()
            host.publish_bytes(str(topic), payload, retain=True)
            ack.update(topic=str(topic))
        elif cmd == "raw":
            topic, hx = need(req, "topic", str), need(req, "hex", str)
            try:
                payload = bytes.fromhex(hx)
            except ValueError:
                raise ValueError("`hex` is not hexadecimal")
            host.publish_bytes(topic, payload)
            ack.update(topic=topic)
        else:
            raise ValueError(f"unknown command {cmd!r} (rebirth, dcmd, state, raw, ping)")
    except Exception as e:
        ack.update(ok=False, error=f"{type(e).__name__}: {e}")
        return ack
    ack["ok"] = True
    return ack


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--group", required=True)
    ap.add_argument("--ca", required=True)
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--client-id", required=True)
    ap.add_argument("--keepalive", type=int, default=5)
    a = ap.parse_args()
    tls = pysparkplug.TLSConfig(ca_certs=a.ca, certfile=a.cert, keyfile=a.key)
    host = Host(a.client_id, tls)
    host.group = a.group
    host.subscribe(
        Topic(group_id=a.group, message_type=pysparkplug.MULTI_LEVEL_WILDCARD),
        QoS.AT_LEAST_ONCE,
        host.on_message,
    )

    def on_connect(_c):
        emit({"event": "connected", "rc": 0})

    # The broker is addressed as localhost: the test certificate names localhost. paho
    # 1.6.1's own network thread dies on an ssl.SSLEOFError raised while writing to a broker
    # that is going away (mosquitto stopped by a test): this thread runs paho's loop and, on
    # such an error, reconnects and runs it again, so the host survives broker restarts.
    def network():
        try:
            host.connect(
                "localhost",
                port=a.port,
                keepalive=a.keepalive,
                callback=on_connect,
                blocking=True,
            )
            return
        except Exception as e:
            emit({"event": "network_error", "error": f"{type(e).__name__}: {e}"})
        while True:
            try:
                host._client.reconnect()
                host._client.loop_forever(retry_first_connection=True)
                return
            except Exception as e:
                emit({"event": "network_error", "error": f"{type(e).__name__}: {e}"})
                time.sleep(0.2)

    threading.Thread(target=network, daemon=True).start()
    while True:
        line = sys.stdin.readline(MAX_LINE + 1)
        if not line:
            break
        if len(line) > MAX_LINE:
            emit({"ack": None, "ok": False, "error": f"command longer than {MAX_LINE} bytes"})
            # Skip the rest of the overlong line.
            while line and not line.endswith("\n"):
                line = sys.stdin.readline(MAX_LINE)
            continue
        if line.strip():
            emit(run_command(host, line))
    host._client.disconnect()


if __name__ == "__main__":
    main()
