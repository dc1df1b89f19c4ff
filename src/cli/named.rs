//! Configured devices and points for `gasdtu read DEVICE [POINT]` and `gasdtu write DEVICE
//! POINT VALUE`: what to read (the point's bus, unit, table, address and codec from the
//! config; a computed point through its inputs), the refusal of raw options that would
//! contradict the config, and how the results are shown (engineering value with its unit,
//! the register it came from, the raw words). Pure: the verbs do the I/O.

use std::collections::BTreeMap;

use crate::config::lookup::{find_device, find_point, Found};
use crate::config::Config;
use crate::model::{ComputedSpec, PointSpec, Value};

use super::values::{json_value, show_raw, show_value, Codec};

/// What one row of a named read shows.
#[derive(Debug, Clone, PartialEq)]
pub enum Row {
    Point(PointSpec),
    /// A computed point; its inputs are read as points of their own.
    Computed(ComputedSpec),
}

impl Row {
    pub fn name(&self) -> &str {
        match self {
            Row::Point(p) => &p.name,
            Row::Computed(c) => &c.name,
        }
    }
}

/// A configured device and the rows to read from it.
#[derive(Debug, Clone, PartialEq)]
pub struct Named {
    pub device: String,
    pub bus: String,
    pub unit: u8,
    pub rows: Vec<Row>,
    /// The read points the rows need, each once (a computed row's inputs included).
    pub reads: Vec<PointSpec>,
}

/// Resolve `device` and `point` (or every point of the device) in `config`.
pub fn resolve(config: &Config, device: &str, point: Option<&str>) -> Result<Named, String> {
    let dev = find_device(config, device).map_err(|e| e.to_string())?;
    let rows: Vec<Row> = match point {
        Some(name) => match find_point(dev, name).map_err(|e| e.to_string())? {
            Found::Point(p) => vec![Row::Point(p.clone())],
            Found::Computed(c) => vec![Row::Computed(c.clone())],
        },
        None => dev
            .points
            .iter()
            .cloned()
            .map(Row::Point)
            .chain(dev.computed.iter().cloned().map(Row::Computed))
            .collect(),
    };
    let mut reads: Vec<PointSpec> = Vec::new();
    let mut need = |p: &PointSpec| {
        if !reads.iter().any(|r| r.name == p.name) {
            reads.push(p.clone());
        }
    };
    // A `scale_from` point needs its decimals register, read in the same run.
    let decimals_of = |p: &PointSpec| {
        p.scale_from
            .as_deref()
            .and_then(|from| dev.points.iter().find(|q| q.name == from))
    };
    for row in &rows {
        match row {
            Row::Point(p) => {
                need(p);
                if let Some(d) = decimals_of(p) {
                    need(d);
                }
            }
            Row::Computed(c) => {
                for (input, _) in &c.terms {
                    // The loader checked that every term names a read point of the device.
                    if let Some(p) = dev.points.iter().find(|p| &p.name == input) {
                        need(p);
                        if let Some(d) = decimals_of(p) {
                            need(d);
                        }
                    }
                }
            }
        }
    }
    Ok(Named {
        device: dev.name.clone(),
        bus: dev.bus.clone(),
        unit: dev.unit,
        rows,
        reads,
    })
}

/// The raw options a configured point replaces, if any were given: an error naming them.
pub fn refuse_raw_options(verb: &str, given: &[&str]) -> Result<(), String> {
    if given.is_empty() {
        return Ok(());
    }
    Err(format!(
        "{} cannot be used with a configured DEVICE and POINT: the config gives bus, unit, \
         address, type, order and scale (use raw addressing, e.g. `gasdtu {verb} --bus NAME \
         --unit N --address A`, to override them)",
        given.join(", ")
    ))
}

/// What reading one point gave: its raw words and value, or the error text.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    pub raw: Vec<u16>,
    pub value: Result<Value, String>,
}

/// The value of a computed point: the weighted sum of its inputs (any failed input fails it).
pub fn compute(c: &ComputedSpec, readings: &BTreeMap<String, Reading>) -> Result<Value, String> {
    let mut sum = 0.0f64;
    for (input, factor) in &c.terms {
        let x = match readings.get(input).map(|r| &r.value) {
            Some(Ok(Value::Int(i))) => *i as f64,
            Some(Ok(Value::UInt(u))) => *u as f64,
            Some(Ok(Value::Float(f))) => *f,
            Some(Ok(other)) => return Err(format!("input {input} is not a number ({other})")),
            Some(Err(e)) => return Err(format!("input {input}: {e}")),
            None => return Err(format!("input {input} was not read")),
        };
        sum += x * factor;
    }
    Ok(Value::Float(sum))
}

/// "volume_int + volume_frac" or "a + 10000 x b" for a computed row.
fn formula(c: &ComputedSpec) -> String {
    c.terms
        .iter()
        .map(|(name, f)| {
            if *f == 1.0 {
                name.clone()
            } else {
                format!("{f} x {name}")
            }
        })
        .collect::<Vec<_>>()
        .join(" + ")
}

/// An error short enough for a table cell (the whole message goes to stderr).
fn brief(e: &str) -> String {
    if e.chars().count() <= 48 {
        e.to_string()
    } else {
        format!("{}…", super::scan::gist(e))
    }
}

fn with_unit(text: String, unit: &Option<String>) -> String {
    match unit {
        Some(u) => format!("{text} {}", crate::config::escape(u)),
        None => text,
    }
}

/// One row's cells: point, value (with unit), where it is read, raw words; and whether it
/// failed.
fn cells(row: &Row, readings: &BTreeMap<String, Reading>) -> ([String; 4], bool) {
    match row {
        Row::Point(p) => {
            let codec = Codec::of_point(p);
            let r = readings.get(&p.name);
            let (value, failed) = match r.map(|r| &r.value) {
                Some(Ok(v)) => (with_unit(codec.show(v), &p.unit), false),
                Some(Err(e)) => (format!("error: {}", brief(e)), true),
                None => ("error: not read".to_string(), true),
            };
            let raw = r.map(|r| show_raw(p.table, &r.raw)).unwrap_or_default();
            let at = format!("{} {} {}", p.table, p.address, codec.short());
            ([p.name.clone(), value, at, raw], failed)
        }
        Row::Computed(c) => {
            let (value, failed) = match compute(c, readings) {
                Ok(v) => (
                    with_unit(show_value(&v, crate::model::DataType::F64, true), &c.unit),
                    false,
                ),
                Err(e) => (format!("error: {}", brief(&e)), true),
            };
            let at = format!("computed = {}", formula(c));
            ([c.name.clone(), value, at, String::new()], failed)
        }
    }
}

/// The human table of a named read; true when a row failed.
pub fn render_table(n: &Named, readings: &BTreeMap<String, Reading>) -> (String, bool) {
    let mut failed = false;
    let mut rows = vec![[
        "point".to_string(),
        "value".to_string(),
        "register".to_string(),
        "raw".to_string(),
    ]];
    for row in &n.rows {
        let (c, f) = cells(row, readings);
        failed |= f;
        rows.push(c);
    }
    let w: Vec<usize> = (0..3)
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = format!(
        "{}  unit {}  bus {}\n",
        crate::config::escape(&n.device),
        n.unit,
        crate::config::escape(&n.bus)
    );
    for r in rows {
        let line = format!(
            "{:<w0$}  {:<w1$}  {:<w2$}  {}",
            r[0],
            r[1],
            r[2],
            r[3],
            w0 = w[0],
            w1 = w[1],
            w2 = w[2]
        );
        out.push_str(line.trim_end());
        out.push('\n');
    }
    (out, failed)
}

/// JSON lines of a named read, one per row; true when a row failed.
pub fn render_json(n: &Named, readings: &BTreeMap<String, Reading>) -> (String, bool) {
    let mut out = String::new();
    let mut failed = false;
    for row in &n.rows {
        let mut line = serde_json::json!({
            "device": n.device,
            "point": row.name(),
            "unit": n.unit,
            "bus": n.bus,
        });
        let (value, eng_unit) = match row {
            Row::Point(p) => {
                let codec = Codec::of_point(p);
                line["table"] = p.table.to_string().into();
                line["address"] = p.address.into();
                line["type"] = p.data_type.to_string().into();
                line["order"] = p.order.to_string().into();
                line["scale"] = p.scale.into();
                line["offset"] = p.offset.into();
                let r = readings.get(&p.name);
                if let Some(r) = r {
                    line["raw"] = r.raw.clone().into();
                    line["hex"] = show_raw(p.table, &r.raw).into();
                }
                let value = match r.map(|r| &r.value) {
                    Some(Ok(v)) => Ok((v.clone(), codec.show(v))),
                    Some(Err(e)) => Err(e.clone()),
                    None => Err("not read".to_string()),
                };
                (value, &p.unit)
            }
            Row::Computed(c) => {
                line["computed"] = formula(c).into();
                let value = compute(c, readings)
                    .map(|v| (v.clone(), show_value(&v, crate::model::DataType::F64, true)));
                (value, &c.unit)
            }
        };
        if let Some(u) = eng_unit {
            line["engineering_unit"] = u.clone().into();
        }
        match value {
            Ok((v, text)) => {
                line["value"] = json_value(&v);
                line["text"] = text.into();
            }
            Err(e) => {
                failed = true;
                line["error"] = e.into();
            }
        }
        out.push_str(&line.to_string());
        out.push('\n');
    }
    (out, failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A config with inline points (built by the loader, as `gasdtu read` gets them).
    const SITE: &str = r#"
[gateway]
id = "site"
profile_dirs = []

[buses.lan]
kind = "tcp"
host = "127.0.0.1"

[devices.evc1]
bus = "lan"
unit = 2

[devices.evc1.points.pressure]
table = "holding"
address = 2
type = "i16"
scale = 0.1
unit = "kPa"

[devices.evc1.points.vol_int]
table = "holding"
address = 4
type = "u32"
unit = "m3"

[devices.evc1.points.vol_frac]
table = "holding"
address = 6
type = "f32"
unit = "m3"

[devices.evc1.computed.volume]
terms = { vol_int = 1.0, vol_frac = 1.0 }
unit = "m3"
"#;

    fn config() -> Config {
        match crate::config::parse_str(SITE, "site.toml", std::path::Path::new("/nonexistent")) {
            Ok(l) => l.config,
            Err(e) => panic!("fixture does not load: {e:?}"),
        }
    }

    /// evc1's pressure and its computed volume, as one read would show them.
    fn named() -> Named {
        let cfg = config();
        let mut n = resolve(&cfg, "evc1", Some("pressure")).unwrap();
        let v = resolve(&cfg, "evc1", Some("volume")).unwrap();
        n.rows.extend(v.rows);
        n.reads.extend(v.reads);
        n
    }

    #[test]
    fn names_resolve_to_what_must_be_read() {
        let cfg = config();
        let reads = |point: Option<&str>| -> Vec<String> {
            let n = resolve(&cfg, "evc1", point).unwrap();
            assert_eq!((n.bus.as_str(), n.unit), ("lan", 2));
            n.reads.iter().map(|p| p.name.clone()).collect()
        };
        assert_eq!(reads(Some("pressure")), ["pressure"]);
        // A computed point reads its inputs.
        let mut v = reads(Some("volume"));
        v.sort();
        assert_eq!(v, ["vol_frac", "vol_int"]);
        // The whole device reads each point once.
        assert_eq!(reads(None).len(), 3);
        assert_eq!(resolve(&cfg, "evc1", None).unwrap().rows.len(), 4);
        let e = resolve(&cfg, "evc1", Some("flow")).unwrap_err();
        assert!(e.starts_with("device `evc1` has no point `flow`"), "{e}");
        let e = resolve(&cfg, "evc9", None).unwrap_err();
        assert_eq!(e, "no device `evc9` in the config (devices: evc1)");
    }

    fn readings(rows: &[(&str, &[u16], Result<Value, &str>)]) -> BTreeMap<String, Reading> {
        rows.iter()
            .map(|(n, raw, v)| {
                (
                    n.to_string(),
                    Reading {
                        raw: raw.to_vec(),
                        value: v.clone().map_err(String::from),
                    },
                )
            })
            .collect()
    }

    #[test]
    fn a_named_read_shows_values_with_units_and_where_they_came_from() {
        let n = named();
        let r = readings(&[
            ("pressure", &[0xFC7C], Ok(Value::Float(-899.6))),
            ("vol_int", &[0x0100, 0x0000], Ok(Value::UInt(16_777_216))),
            ("vol_frac", &[0x3F00, 0x0000], Ok(Value::Float(0.5))),
        ]);
        let (text, failed) = render_table(&n, &r);
        assert!(!failed);
        assert_eq!(
            text,
            "evc1  unit 2  bus lan\n\
             point     value          register                       raw\n\
             pressure  -899.6 kPa     holding 2 i16 x 0.1            FC7C\n\
             volume    16777216.5 m3  computed = vol_frac + vol_int\n"
        );
        let (json, failed) = render_json(&n, &r);
        assert!(!failed);
        let lines: Vec<serde_json::Value> = json
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines[0]["device"], "evc1");
        assert_eq!(lines[0]["point"], "pressure");
        assert_eq!(lines[0]["text"], "-899.6");
        assert_eq!(lines[0]["engineering_unit"], "kPa");
        assert_eq!(lines[0]["hex"], "FC7C");
        assert_eq!(lines[1]["value"], serde_json::json!(16_777_216.5));
        assert_eq!(lines[1]["computed"], "vol_frac + vol_int");
    }

    #[test]
    fn a_failed_input_fails_its_computed_point() {
        let n = named();
        let r = readings(&[
            ("pressure", &[], Err("exception 2 (illegal data address)")),
            ("vol_int", &[0, 1], Ok(Value::UInt(1))),
        ]);
        let (text, failed) = render_table(&n, &r);
        assert!(failed);
        assert!(
            text.contains("pressure  error: exception 2 (illegal data address)"),
            "{text}"
        );
        assert!(
            text.contains("error: input vol_frac was not read"),
            "{text}"
        );
        let (json, _) = render_json(&n, &r);
        assert!(json.contains(r#""error":"exception 2 (illegal data address)""#));
    }

    #[test]
    fn raw_options_are_refused_with_a_device() {
        assert_eq!(refuse_raw_options("read", &[]), Ok(()));
        let e = refuse_raw_options("read", &["--address", "--type"]).unwrap_err();
        assert!(e.starts_with("--address, --type cannot be used with a configured DEVICE"));
    }
}
