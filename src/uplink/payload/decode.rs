//! `decode` for `gasdtu decode` and tests (pure core): recognises every payload gasdtu
//! publishes and turns it into JSON. Data messages (JSON, or compact CBOR converted into the
//! documented JSON shape), alarm and event messages, `cmd/res` results, `config/state`, the
//! retained `health` and the retained `status` text (`online`, `offline`, `asleep`, shown as
//! `{"status": …}`). JSON payloads are checked against their kind's required fields and passed
//! through unchanged: serde_json's `float_roundtrip` parser reads every number back to the
//! double it was written from, so no value moves by an ulp. Anything else is an error that
//! says what the bytes looked like.

use std::collections::BTreeMap;
use std::fmt;

use ciborium::Value as Cbor;
use serde_json::{json, Map, Value as Json};

use super::{float_json, CodecError};
use crate::time::rfc3339_ms;

/// What a payload was recognised as (by its content; the topic is not needed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadKind {
    /// `<root>/data`, JSON.
    DataJson,
    /// `<root>/data`, compact CBOR.
    DataCbor,
    /// `<root>/data`, JSON format 2 (`"v": 2`), printed in the format 1 shape.
    DataJsonV2,
    /// `<root>/data`, CBOR format 2 (key 5), printed in the format 1 shape.
    DataCborV2,
    Alarm,
    Event,
    /// `<root>/cmd/res`.
    CommandResult,
    /// `<root>/config/state` (retained).
    ConfigState,
    /// `<root>/health` (retained).
    Health,
    /// `<root>/status` (retained): `online`, `offline` (also the last will), `asleep`.
    Status,
}

impl PayloadKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PayloadKind::DataJson => "data (JSON)",
            PayloadKind::DataCbor => "data (CBOR)",
            PayloadKind::DataJsonV2 => "data (JSON, format 2)",
            PayloadKind::DataCborV2 => "data (CBOR, format 2)",
            PayloadKind::Alarm => "alarm",
            PayloadKind::Event => "event",
            PayloadKind::CommandResult => "cmd/res",
            PayloadKind::ConfigState => "config/state",
            PayloadKind::Health => "health",
            PayloadKind::Status => "status",
        }
    }
}

impl fmt::Display for PayloadKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The retained status texts gasdtu publishes on `<root>/status`.
pub const STATUS_TEXTS: [&str; 3] = ["online", "offline", "asleep"];

/// Turn a captured payload into JSON (see `decode_kind`).
pub fn decode(bytes: &[u8]) -> Result<Json, CodecError> {
    decode_kind(bytes).map(|(_, v)| v)
}

/// Recognise a captured payload and turn it into JSON. Text (UTF-8) is JSON or a status word;
/// anything else is CBOR. Trailing whitespace (a capture tool's newline) is ignored.
pub fn decode_kind(bytes: &[u8]) -> Result<(PayloadKind, Json), CodecError> {
    // A gasdtu CBOR message starts with a map header (0xa0-0xbf), never a UTF-8 start byte.
    let Ok(text) = std::str::from_utf8(bytes) else {
        let v: Cbor = ciborium::from_reader(bytes).map_err(|e| {
            CodecError::Malformed(format!(
                "binary payload starting {} is not CBOR: {e}",
                hex_start(bytes)
            ))
        })?;
        return cbor_to_json(&v);
    };
    let text = text.trim_ascii();
    let trimmed = text.as_bytes();
    if trimmed.is_empty() {
        return Err(CodecError::Malformed("empty payload".into()));
    }
    if STATUS_TEXTS.contains(&text) {
        return Ok((PayloadKind::Status, json!({ "status": text })));
    }
    if trimmed[0] == b'{' {
        let v: Json = serde_json::from_str(text)
            .map_err(|e| CodecError::Malformed(format!("invalid JSON: {e}")))?;
        if let Json::Object(m) = &v {
            if m.get("v").and_then(Json::as_u64) == Some(2) && m.contains_key("sch") {
                return Ok((PayloadKind::DataJsonV2, super::v2_decode::json_v2(m)?));
            }
        }
        let kind = json_kind(&v)?;
        return Ok((kind, v));
    }
    if let Ok(other) = serde_json::from_str::<Json>(text) {
        return Err(CodecError::Malformed(format!(
            "JSON {} is not a gasdtu message (gasdtu publishes JSON objects)",
            json_type(&other)
        )));
    }
    // Shown with escapes (`{:?}`): the text may hold control characters.
    let shown: String = text.chars().take(40).collect();
    Err(CodecError::Malformed(format!(
        "text {:?}{} is neither JSON nor a status word ({})",
        shown,
        if shown.len() < text.len() { "…" } else { "" },
        STATUS_TEXTS.join(", ")
    )))
}

fn hex_start(b: &[u8]) -> String {
    let mut s: String = b
        .iter()
        .take(8)
        .map(|x| format!("{x:02x}"))
        .collect::<Vec<_>>()
        .join(" ");
    if b.len() > 8 {
        s.push_str(" …");
    }
    s
}

fn json_type(v: &Json) -> &'static str {
    match v {
        Json::Null => "null",
        Json::Bool(_) => "boolean",
        Json::Number(_) => "number",
        Json::String(_) => "string",
        Json::Array(_) => "array",
        Json::Object(_) => "object",
    }
}

fn malformed(kind: PayloadKind, what: String) -> CodecError {
    CodecError::Malformed(format!("{kind} message: {what}"))
}

/// `key` is present with the type `want` names.
fn need(
    m: &Map<String, Json>,
    kind: PayloadKind,
    key: &str,
    want: &str,
    ok: fn(&Json) -> bool,
) -> Result<(), CodecError> {
    match m.get(key) {
        Some(v) if ok(v) => Ok(()),
        Some(v) => Err(malformed(
            kind,
            format!("`{key}` is {}, not {want}", json_type(v)),
        )),
        None => Err(malformed(kind, format!("no `{key}`"))),
    }
}

fn is_str(v: &Json) -> bool {
    v.is_string()
}
fn is_u64(v: &Json) -> bool {
    v.is_u64()
}
fn is_obj(v: &Json) -> bool {
    v.is_object()
}
fn is_str_or_null(v: &Json) -> bool {
    v.is_string() || v.is_null()
}

/// Which message a JSON object is, with its required fields checked.
fn json_kind(v: &Json) -> Result<PayloadKind, CodecError> {
    let Json::Object(m) = v else {
        return Err(CodecError::Malformed("JSON is not an object".into()));
    };
    let has = |k: &str| m.contains_key(k);
    let kind = if has("data") && has("hist") {
        PayloadKind::DataJson
    } else if has("alarm") {
        PayloadKind::Alarm
    } else if has("event") || (has("body") && m.len() <= 4) {
        // An alarm or event body that is not an object travels wrapped as `body`.
        PayloadKind::Event
    } else if has("last_seq") && !has("seq") {
        PayloadKind::Health
    } else if has("op") && has("status") {
        PayloadKind::CommandResult
    } else if has("status") && (has("version") || has("push") || has("errors")) {
        PayloadKind::ConfigState
    } else {
        let keys: Vec<&str> = m.keys().map(String::as_str).take(12).collect();
        return Err(CodecError::Malformed(format!(
            "JSON object with keys [{}]{} is none of gasdtu's messages (data, alarm, event, \
             cmd/res, config/state, health)",
            keys.join(", "),
            if m.len() > keys.len() { ", …" } else { "" }
        )));
    };
    need(m, kind, "gw", "a string", is_str)?;
    if kind != PayloadKind::Health {
        need(m, kind, "seq", "an unsigned integer", is_u64)?;
    }
    match kind {
        PayloadKind::DataJson => check_data(m)?,
        PayloadKind::Alarm => need(m, kind, "alarm", "a string", is_str)?,
        PayloadKind::Event => {
            if !m.contains_key("body") {
                need(m, kind, "event", "a string", is_str)?;
            }
        }
        PayloadKind::Health => {
            need(m, kind, "last_seq", "an unsigned integer", is_u64)?;
            need(m, kind, "t", "a string", is_str)?;
        }
        PayloadKind::CommandResult => {
            need(m, kind, "id", "a string or null", is_str_or_null)?;
            need(m, kind, "op", "a string or null", is_str_or_null)?;
            need(m, kind, "status", "a string", is_str)?;
        }
        PayloadKind::ConfigState => need(m, kind, "status", "a string", is_str)?,
        PayloadKind::DataCbor
        | PayloadKind::DataJsonV2
        | PayloadKind::DataCborV2
        | PayloadKind::Status => {}
    }
    Ok(kind)
}

/// The documented shape of a JSON data message.
fn check_data(m: &Map<String, Json>) -> Result<(), CodecError> {
    let k = PayloadKind::DataJson;
    need(m, k, "hist", "a boolean", Json::is_boolean)?;
    let Some(Json::Array(devices)) = m.get("data") else {
        return Err(malformed(k, "`data` is not an array".into()));
    };
    for (i, d) in devices.iter().enumerate() {
        let Json::Object(d) = d else {
            return Err(malformed(k, format!("data[{i}] is not an object")));
        };
        need(d, k, "dev", "a string", is_str).map_err(|e| at(e, i))?;
        if d.contains_key("unit") {
            need(d, k, "unit", "an object", is_obj).map_err(|e| at(e, i))?;
        }
        let Some(Json::Array(reads)) = d.get("reads") else {
            return Err(malformed(k, format!("data[{i}].reads is not an array")));
        };
        for (j, r) in reads.iter().enumerate() {
            let ok = match r {
                Json::Object(r) => {
                    r.get("t").is_some_and(is_str)
                        && r.get("v").is_some_and(is_obj)
                        && r.get("bad").is_none_or(is_obj)
                }
                _ => false,
            };
            if !ok {
                return Err(malformed(
                    k,
                    format!("data[{i}].reads[{j}] is not {{\"t\": text, \"v\": {{…}}, \"bad\"?: {{…}}}}"),
                ));
            }
        }
    }
    Ok(())
}

fn at(e: CodecError, i: usize) -> CodecError {
    match e {
        CodecError::Malformed(s) => CodecError::Malformed(format!("{s} (data[{i}])")),
        other => other,
    }
}

fn bad(what: &str) -> CodecError {
    CodecError::Malformed(format!("CBOR message: {what}"))
}

fn as_i64(v: &Cbor, what: &str) -> Result<i64, CodecError> {
    match v {
        Cbor::Integer(i) => i64::try_from(*i).map_err(|_| bad(what)),
        _ => Err(bad(what)),
    }
}

fn as_array<'a>(v: &'a Cbor, what: &str) -> Result<&'a [Cbor], CodecError> {
    match v {
        Cbor::Array(a) => Ok(a),
        _ => Err(bad(what)),
    }
}

fn as_text<'a>(v: &'a Cbor, what: &str) -> Result<&'a str, CodecError> {
    match v {
        Cbor::Text(s) => Ok(s),
        _ => Err(bad(what)),
    }
}

/// A CBOR value slot as JSON (bool, integer up to 64 bits, float by the Numbers rule, text);
/// shared by both formats' decoders.
pub(super) fn cbor_value_json(v: &Cbor) -> Result<Json, CodecError> {
    Ok(match v {
        Cbor::Bool(b) => Json::Bool(*b),
        Cbor::Integer(i) => {
            let n = i128::from(*i);
            if let Ok(x) = i64::try_from(n) {
                Json::from(x)
            } else if let Ok(x) = u64::try_from(n) {
                Json::from(x)
            } else {
                return Err(bad("integer value out of range"));
            }
        }
        Cbor::Float(x) => float_json(*x),
        Cbor::Text(s) => Json::from(s.as_str()),
        _ => return Err(bad("value of unsupported type")),
    })
}

/// A CBOR data message of either format: key 4 (devices) is format 1, key 5 (schemas)
/// format 2.
fn cbor_to_json(v: &Cbor) -> Result<(PayloadKind, Json), CodecError> {
    let Cbor::Map(m) = v else {
        return Err(bad("top level is not a map"));
    };
    let mut fields: BTreeMap<i64, &Cbor> = BTreeMap::new();
    for (k, v) in m {
        fields.insert(as_i64(k, "map key is not an integer")?, v);
    }
    let get = |k: i64, what: &str| fields.get(&k).copied().ok_or_else(|| bad(what));
    let gw = as_text(get(0, "missing gateway (0)")?, "gateway (0) is not text")?;
    let seq = match get(1, "missing seq (1)")? {
        Cbor::Integer(i) => u64::try_from(*i).map_err(|_| bad("seq (1) out of range"))?,
        _ => return Err(bad("seq (1) is not an integer")),
    };
    let hist = match get(2, "missing hist (2)")? {
        Cbor::Bool(b) => *b,
        _ => return Err(bad("hist (2) is not a boolean")),
    };
    let base = as_i64(get(3, "missing base time (3)")?, "base time (3)")?;
    if !fields.contains_key(&4) {
        if let Some(schemas) = fields.get(&5) {
            let v = super::v2_decode::cbor_v2(gw, seq, hist, base, schemas)?;
            return Ok((PayloadKind::DataCborV2, v));
        }
    }
    let mut data = Vec::new();
    for d in as_array(get(4, "missing devices (4)")?, "devices (4) not an array")? {
        let d = as_array(d, "device is not an array")?;
        let [name, names, units, reads] = d else {
            return Err(bad("device needs 4 elements"));
        };
        let name = as_text(name, "device name")?;
        let names: Vec<&str> = as_array(names, "point names")?
            .iter()
            .map(|n| as_text(n, "point name"))
            .collect::<Result<_, _>>()?;
        let units = as_array(units, "units")?;
        if units.len() != names.len() {
            return Err(bad("units and point names differ in length"));
        }
        let mut unit = Map::new();
        for (n, u) in names.iter().zip(units) {
            match u {
                Cbor::Null => {}
                u => {
                    unit.insert(n.to_string(), Json::from(as_text(u, "unit")?));
                }
            }
        }
        let mut t = base;
        let mut out_reads = Vec::new();
        for r in as_array(reads, "reads")? {
            let r = as_array(r, "read is not an array")?;
            if r.len() < 2 || r.len() > 3 {
                return Err(bad("read needs 2 or 3 elements"));
            }
            t = t
                .checked_add(as_i64(&r[0], "read time delta")?)
                .ok_or_else(|| bad("read time out of range"))?;
            let values = as_array(&r[1], "read values")?;
            if values.len() != names.len() {
                return Err(bad("read values and point names differ in length"));
            }
            let mut v = Map::new();
            for (n, x) in names.iter().zip(values) {
                if *x != Cbor::Null {
                    v.insert(n.to_string(), cbor_value_json(x)?);
                }
            }
            let mut o = Map::new();
            o.insert("t".into(), Json::from(rfc3339_ms(t)));
            o.insert("v".into(), Json::Object(v));
            if let Some(Cbor::Map(b)) = r.get(2) {
                let mut bm = Map::new();
                for (i, reason) in b {
                    let i = as_i64(i, "bad index")?;
                    let n = usize::try_from(i)
                        .ok()
                        .and_then(|i| names.get(i))
                        .ok_or_else(|| bad("bad index out of range"))?;
                    bm.insert(n.to_string(), Json::from(as_text(reason, "bad reason")?));
                }
                o.insert("bad".into(), Json::Object(bm));
            } else if r.len() == 3 {
                return Err(bad("bad map is not a map"));
            }
            out_reads.push(Json::Object(o));
        }
        let mut dev = Map::new();
        dev.insert("dev".into(), Json::from(name));
        if !unit.is_empty() {
            dev.insert("unit".into(), Json::Object(unit));
        }
        dev.insert("reads".into(), Json::Array(out_reads));
        data.push(Json::Object(dev));
    }
    Ok((
        PayloadKind::DataCbor,
        json!({"gw": gw, "seq": seq, "hist": hist, "data": data}),
    ))
}
