//! What `gasdtu check` prints about the points that will run: `show_device` renders the
//! resolved points of one device as a table (name, table, address, type, order, scale,
//! offset, unit, published, and where each came from: profile, point set, override, the
//! device's order, defaults) and `published_lines` one count line per device. Pure: text from
//! a `Loaded`, no I/O; names from the file are escaped.

use crate::model::{DataType, PointSpec};

use super::escape;
use super::load::Loaded;
use super::merge::{BaseKind, OrderFrom, PointOrigin, Written};
use super::DeviceConfig;

/// Whether a read point goes upstream (`publish = false` keeps it local); the one place that
/// answers it for `check`.
fn published(p: &PointSpec) -> bool {
    p.publish
}

fn base_label(b: &Option<BaseKind>) -> String {
    match b {
        Some(BaseKind::Profile(id)) => format!("profile {}", escape(id)),
        Some(BaseKind::Set(n)) => format!("set {}", escape(n)),
        None => "device".to_string(),
    }
}

/// The "from" column: the point's base, the keys the device wrote over it, and where the
/// order came from when the point does not pin its own.
fn from_text(o: Option<&PointOrigin>, base: &Option<BaseKind>, order_matters: bool) -> String {
    let Some(o) = o else {
        return "?".to_string();
    };
    let mut parts = vec![base_label(&o.base)];
    let overridden: Vec<&str> = o
        .keys
        .iter()
        .filter(|(_, w)| *w == Written::Override)
        .map(|(k, _)| k.as_str())
        .collect();
    if !overridden.is_empty() {
        parts.push(format!("override: {}", escape(&overridden.join(", "))));
    }
    let base_default = match base {
        Some(BaseKind::Profile(_)) => "order: profile default",
        Some(BaseKind::Set(_)) => "order: set default",
        None => "order: default",
    };
    match o.order_from.filter(|_| order_matters) {
        Some(OrderFrom::Device) => parts.push("order: device".to_string()),
        Some(OrderFrom::BaseDefault) => parts.push(base_default.to_string()),
        Some(OrderFrom::Default) => parts.push("order: default".to_string()),
        _ => {}
    }
    parts.join("; ")
}

fn number(x: f64) -> String {
    format!("{x}")
}

/// Lay out rows in columns two spaces apart (the last column unpadded).
fn columns(rows: &[Vec<String>]) -> Vec<String> {
    let n = rows.iter().map(|r| r.len()).max().unwrap_or(0);
    let mut widths = vec![0usize; n];
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    rows.iter()
        .map(|r| {
            let mut line = String::from("  ");
            for (i, c) in r.iter().enumerate() {
                line.push_str(c);
                if i + 1 < r.len() {
                    let pad = widths[i] - c.chars().count() + 2;
                    line.push_str(&" ".repeat(pad));
                }
            }
            line.trim_end().to_string()
        })
        .collect()
}

/// One device's resolved points, or `None` when the config has no device of that name.
pub fn show_device(loaded: &Loaded, name: &str) -> Option<Vec<String>> {
    let dev = loaded.config.devices.iter().find(|d| d.name == name)?;
    let origins = loaded.origins.get(name);
    let base = origins.and_then(|o| o.base.clone());
    let mut out = Vec::new();
    let order_note = match origins.and_then(|o| {
        o.points
            .iter()
            .find(|p| p.order_from == Some(OrderFrom::Device))
    }) {
        Some(_) => ", device order set",
        None => "",
    };
    out.push(format!(
        "device {}: bus {}, unit {}, {}{order_note}, poll {}{}",
        escape(&dev.name),
        escape(&dev.bus),
        dev.unit,
        match &base {
            Some(b) => base_label(&Some(b.clone())),
            None => "own points".to_string(),
        },
        humantime::format_duration(dev.poll),
        if dev.enabled { "" } else { " (disabled)" }
    ));
    if let Some(o) = origins {
        if !o.dropped.is_empty() {
            out.push(format!(
                "  dropped from the {}: {}",
                base_label(&o.base),
                escape(&o.dropped.join(", "))
            ));
        }
    }
    let origin = |n: &str, computed: bool| {
        origins.and_then(|o| {
            o.points
                .iter()
                .find(|p| p.name == n && p.computed == computed)
        })
    };
    let mut rows = vec![[
        "point", "table", "address", "type", "order", "scale", "offset", "unit", "publish", "from",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect::<Vec<_>>()];
    for p in &dev.points {
        let numeric = !matches!(
            p.data_type,
            DataType::Bool | DataType::BitOfRegister(_) | DataType::String(_)
        );
        let bits = p.table.is_bits() || matches!(p.data_type, DataType::BitOfRegister(_));
        rows.push(vec![
            escape(&p.name).into_owned(),
            p.table.to_string(),
            p.address.to_string(),
            p.data_type.to_string(),
            // The order means nothing to single bits.
            if bits {
                "-".to_string()
            } else {
                p.order.to_string()
            },
            if numeric { number(p.scale) } else { "-".into() },
            if numeric {
                number(p.offset)
            } else {
                "-".into()
            },
            p.unit
                .as_deref()
                .map(|u| escape(u).into_owned())
                .unwrap_or_else(|| "-".into()),
            if published(p) { "yes" } else { "no" }.to_string(),
            from_text(origin(&p.name, false), &base, !bits),
        ]);
    }
    out.extend(columns(&rows));
    for c in &dev.computed {
        let terms: Vec<String> = c
            .terms
            .iter()
            .map(|(t, k)| {
                if *k == 1.0 {
                    escape(t).into_owned()
                } else {
                    format!("{} x {}", escape(t), number(*k))
                }
            })
            .collect();
        out.push(format!(
            "  computed {} = {}{} (publish yes; from {})",
            escape(&c.name),
            terms.join(" + "),
            c.unit
                .as_deref()
                .map(|u| format!(" {}", escape(u)))
                .unwrap_or_default(),
            from_text(origin(&c.name, true), &base, false)
        ));
    }
    out.push(count_line(dev));
    Some(out)
}

fn count_line(dev: &DeviceConfig) -> String {
    let read = dev.points.len();
    let computed = dev.computed.len();
    let published = dev.points.iter().filter(|p| published(p)).count() + computed;
    format!(
        "device {}: {} points ({read} read, {computed} computed), {published} published",
        escape(&dev.name),
        read + computed
    )
}

/// One line per device: how many of its points are published.
pub fn published_lines(loaded: &Loaded) -> Vec<String> {
    loaded.config.devices.iter().map(count_line).collect()
}
