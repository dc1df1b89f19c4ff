//! Point and computed-point entries, shared by device profiles and inline device points: turns
//! one `[points.<name>]` / `[computed.<name>]` table into a `PointSpec` / `ComputedSpec`, and
//! checks a device's (or profile's) whole point set: computed terms, address ranges and what
//! the request planner accepts. No I/O.

use std::ops::Range;

use crate::modbus::planner::{self, Limits, PlanError};
use crate::modbus::registers;
use crate::model::{ComputedSpec, DataType, PointSpec, Table, WordOrder};

use super::diag::Diags;
use super::doc::{join, Field, Section};

/// Type names accepted in `type = "..."`, for messages.
pub(crate) const TYPE_NAMES: &str =
    "bit, u16, i16, u32, i32, u64, i64, f32, f64, bcd16, bcd32, bcd48, intreal, string";

/// A point as written, before it is merged into a device.
#[derive(Debug, Clone)]
pub(crate) struct PointDraft {
    pub spec: PointSpec,
    /// Key span of the entry in its own file (`None` once it crosses into another file).
    pub span: Option<Range<usize>>,
}

/// A computed point as written.
#[derive(Debug, Clone)]
pub(crate) struct ComputedDraft {
    pub spec: ComputedSpec,
    pub span: Option<Range<usize>>,
    /// Key span of each term, parallel to `spec.terms`.
    pub term_spans: Vec<Option<Range<usize>>>,
}

/// `[A-Za-z0-9_-]{1,64}`: names that become MQTT topic levels or JSON keys.
/// The optional `order` key: `Some(None)` when absent, `Some(Some(o))` when valid, `None`
/// after reporting an invalid one.
pub(crate) fn parse_order(
    sec: &mut Section<'_, '_>,
    d: &mut Diags<'_>,
) -> Option<Option<WordOrder>> {
    match sec.string(d, "order") {
        Field::Value(s, sp) => match WordOrder::parse(&s) {
            Some(o) => Some(Some(o)),
            None => {
                d.error(
                    &sec.key_path("order"),
                    Some(sp),
                    format!("unknown order {s:?}: use ABCD, CDAB, BADC or DCBA"),
                );
                None
            }
        },
        Field::Absent => Some(None),
        Field::Invalid => None,
    }
}

pub(crate) fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

pub(crate) fn check_name(d: &mut Diags<'_>, path: &str, span: Option<Range<usize>>, name: &str) {
    if !valid_name(name) {
        d.error(
            path,
            span,
            format!("invalid name {name:?}: use 1 to 64 of A-Z a-z 0-9 _ -"),
        );
    }
}

/// Parse one `[points.<name>]` entry. `default_order` applies when the entry names none.
pub(crate) fn parse_point(
    d: &mut Diags<'_>,
    mut sec: Section<'_, '_>,
    name: &str,
    default_order: WordOrder,
) -> Option<PointDraft> {
    let span = sec.span.clone();
    check_name(d, &sec.path, span.clone(), name);
    let f = sec.string(d, "table");
    let table = match sec.required(d, "table", "coil, discrete, input or holding", f) {
        Field::Value(s, sp) => match Table::parse(&s) {
            Some(t) => Some(t),
            None => {
                d.error(
                    &sec.key_path("table"),
                    Some(sp),
                    format!("unknown table {s:?}: use coil, discrete, input or holding"),
                );
                None
            }
        },
        _ => None,
    };
    let f = sec.int(d, "address", 0, 65535);
    let address_field = sec.required(d, "address", "0-based protocol address", f);
    let address_span = address_field.span();
    let address = match address_field {
        Field::Value(a, _) => Some(a as u16),
        _ => None,
    };
    let f = sec.string(d, "type");
    let type_field = sec.required(d, "type", TYPE_NAMES, f);
    let bit = sec.int(d, "bit", 0, 15);
    let length = sec.int(d, "length", 1, 250);
    let order = parse_order(&mut sec, d);
    let scale = sec.float(d, "scale");
    let offset = sec.float(d, "offset");
    let unit = sec.string(d, "unit").or(String::new());
    let unit_ok = unit.is_some();
    let writable = sec.boolean(d, "writable");
    let writable_span = writable.span();
    let writable = writable.or(false);
    let decimals = sec.int(d, "decimals", 0, MAX_POINT_DECIMALS as i64);
    let decimals_span = decimals.span();
    let scale_from = sec.string(d, "scale_from");
    let scale_from_span = scale_from.span();
    let publish = sec.boolean(d, "publish").or(true);

    // The data type, refined by table, bit and length.
    let data_type = match (&type_field, table) {
        (Field::Value(t, tspan), Some(table)) => {
            resolve_type(d, &sec, t, tspan.clone(), table, &bit, &length)
        }
        _ => None,
    };
    let scale_span = scale.span();
    let offset_span = offset.span();
    let scale = scale.or(1.0);
    let offset = offset.or(0.0);
    if let Some(dt) = data_type {
        let numeric = !matches!(
            dt,
            DataType::Bool | DataType::BitOfRegister(_) | DataType::String(_)
        );
        if !numeric {
            if scale_span.is_some() && scale != Some(1.0) {
                d.error(
                    &sec.key_path("scale"),
                    scale_span.clone(),
                    format!("scale applies only to numeric types, not {dt}"),
                );
            }
            if offset_span.is_some() && offset != Some(0.0) {
                d.error(
                    &sec.key_path("offset"),
                    offset_span,
                    format!("offset applies only to numeric types, not {dt}"),
                );
            }
        }
    }
    if scale == Some(0.0) {
        d.error(
            &sec.key_path("scale"),
            scale_span.clone(),
            "scale must not be 0 (the value would be constant)",
        );
    }
    let (scale, decimals, scale_from) = decimal_keys(
        d,
        &sec,
        data_type,
        (scale, scale_span),
        (decimals, decimals_span),
        (scale_from, scale_from_span),
    );
    if let (Some(table), Some(true)) = (table, writable) {
        if !matches!(table, Table::Coil | Table::HoldingRegister) {
            d.error(
                &sec.key_path("writable"),
                writable_span.clone(),
                format!(
                    "{table} points are read-only: only coil and holding points may be writable"
                ),
            );
        } else if let Some(DataType::BitOfRegister(_)) = data_type {
            d.error(
                &sec.key_path("writable"),
                writable_span.clone(),
                "a bit of a register cannot be writable: writing it would overwrite the other 15 bits",
            );
        }
    }
    if let (Some(Some(_)), Some(true)) = (&scale_from, writable) {
        d.error(
            &sec.key_path("writable"),
            writable_span.clone(),
            "a point with scale_from cannot be writable: its decimals are only known when read",
        );
    }
    if let (Some(a), Some(dt)) = (address, data_type) {
        let end = a as u32 + dt.width() as u32;
        if end > 65536 {
            d.error(
                &sec.key_path("address"),
                address_span,
                format!(
                    "{dt} at address {a} needs {} registers and runs past address 65535",
                    dt.width()
                ),
            );
        }
    }
    sec.finish(d, |_| None);
    if !unit_ok {
        return None;
    }
    Some(PointDraft {
        spec: PointSpec {
            name: name.to_string(),
            table: table?,
            address: address?,
            data_type: data_type?,
            order: order?.unwrap_or(default_order),
            scale: scale?,
            offset: offset?,
            unit: unit.filter(|u| !u.is_empty()),
            writable: writable?,
            scale_from: scale_from?,
            publish: publish?,
        },
        span,
    })
    .filter(|_| decimals.is_some())
}

/// Most implied decimals `decimals = N` takes (a bcd48 has twelve digits).
pub(crate) const MAX_POINT_DECIMALS: u8 = 12;

/// The decimal keys of a point: `decimals = N` (implied decimals, the same as scale = 10^-N,
/// divided exactly) and `scale_from = "<point>"` (decimals read from the device) apply to
/// integer and BCD types only and exclude each other and a `scale` other than 1 (with
/// `scale_from`, `scale` stays available for a unit conversion after the shift). Returns the
/// effective scale, `Some(())` when the keys are valid, and the `scale_from` name.
type Keyed<T> = (Field<T>, Option<Range<usize>>);
fn decimal_keys(
    d: &mut Diags<'_>,
    sec: &Section<'_, '_>,
    data_type: Option<DataType>,
    (scale, scale_span): (Option<f64>, Option<Range<usize>>),
    (decimals, decimals_span): Keyed<i64>,
    (scale_from, scale_from_span): Keyed<String>,
) -> (Option<f64>, Option<()>, Option<Option<String>>) {
    let mut ok = Some(());
    let decimals = match decimals {
        Field::Value(n, _) => Some(n as u8),
        Field::Absent => None,
        Field::Invalid => {
            ok = None;
            None
        }
    };
    let scale_from = match scale_from {
        Field::Value(n, _) => Some(Some(n)),
        Field::Absent => Some(None),
        Field::Invalid => None,
    };
    let mut scale = scale;
    let numeric_key = |key: &str, span: Option<Range<usize>>, d: &mut Diags<'_>| {
        if let Some(dt) = data_type.filter(|dt| !dt.is_integer()) {
            let hint = if matches!(dt, DataType::F32 | DataType::F64 | DataType::IntReal) {
                " (a float carries its own decimals; use scale)"
            } else {
                ""
            };
            d.error(
                &sec.key_path(key),
                span,
                format!("`{key}` applies to integer and BCD types only, not {dt}{hint}"),
            );
            false
        } else {
            true
        }
    };
    if let Some(k) = decimals {
        if !numeric_key("decimals", decimals_span.clone(), d) {
            ok = None;
        }
        if scale_span.is_some() {
            d.error(
                &sec.key_path("decimals"),
                decimals_span.clone(),
                "use either `decimals` or `scale`, not both (decimals = N is scale = 10^-N)",
            );
            ok = None;
        }
        if k > 0 {
            scale = scale.map(|_| registers::decimal_scale(k));
        }
    }
    if let Some(Some(from)) = &scale_from {
        if !numeric_key("scale_from", scale_from_span.clone(), d) {
            ok = None;
        }
        if decimals.is_some() {
            d.error(
                &sec.key_path("scale_from"),
                scale_from_span.clone(),
                format!("use either `decimals` or `scale_from`, not both (the decimals come from `{from}`)"),
            );
            ok = None;
        }
        if !valid_name(from) {
            d.error(
                &sec.key_path("scale_from"),
                scale_from_span,
                format!("invalid point name {from:?} in scale_from"),
            );
            ok = None;
        }
    }
    (scale, ok, scale_from)
}

fn resolve_type(
    d: &mut Diags<'_>,
    sec: &Section<'_, '_>,
    t: &str,
    tspan: Range<usize>,
    table: Table,
    bit: &Field<i64>,
    length: &Field<i64>,
) -> Option<DataType> {
    let is_bit = matches!(t, "bit" | "bool");
    let is_string = t == "string";
    let mut ok = true;
    if table.is_bits() && !is_bit {
        d.error(
            &sec.key_path("type"),
            Some(tspan.clone()),
            format!("{table} points are single bits: use type = \"bit\", not {t:?}"),
        );
        return None;
    }
    let bit_v = match bit {
        Field::Value(b, sp) => {
            if !is_bit {
                d.error(
                    &sec.key_path("bit"),
                    Some(sp.clone()),
                    format!("`bit` is only valid with type = \"bit\", not {t:?}"),
                );
                ok = false;
            } else if table.is_bits() {
                d.error(
                    &sec.key_path("bit"),
                    Some(sp.clone()),
                    format!(
                        "`bit` selects a bit of a register; {table} points are single bits already"
                    ),
                );
                ok = false;
            }
            Some(*b as u8)
        }
        Field::Invalid => {
            ok = false;
            None
        }
        Field::Absent => {
            if is_bit && !table.is_bits() {
                sec.missing(
                    d,
                    "bit",
                    "which bit 0..15 of the register, 0 = least significant",
                );
                ok = false;
            }
            None
        }
    };
    let length_v = match length {
        Field::Value(n, sp) => {
            if !is_string {
                d.error(
                    &sec.key_path("length"),
                    Some(sp.clone()),
                    format!("`length` is only valid with type = \"string\", not {t:?}"),
                );
                ok = false;
            }
            Some(*n as u16)
        }
        Field::Invalid => {
            ok = false;
            None
        }
        Field::Absent => {
            if is_string {
                sec.missing(d, "length", "string length in bytes");
                ok = false;
            }
            None
        }
    };
    let parsed = DataType::parse(t, if table.is_bits() { None } else { bit_v }, length_v);
    match parsed {
        Some(dt) if ok => Some(dt),
        Some(_) => None,
        None => {
            if !is_string {
                d.error(
                    &sec.key_path("type"),
                    Some(tspan),
                    format!("unknown type {t:?}: use one of {TYPE_NAMES}"),
                );
            }
            None
        }
    }
}

/// Parse one `[computed.<name>]` entry.
pub(crate) fn parse_computed(
    d: &mut Diags<'_>,
    mut sec: Section<'_, '_>,
    name: &str,
) -> Option<ComputedDraft> {
    let span = sec.span.clone();
    check_name(d, &sec.path, span.clone(), name);
    let f = sec.table(d, "terms");
    let terms = match sec.required(
        d,
        "terms",
        "point name = factor, e.g. { volume_int = 1.0, volume_frac = 1.0 }",
        f,
    ) {
        Field::Value(mut t, tspan) => {
            let items = t.numbers(d);
            if items.is_empty() {
                d.error(&t.path, Some(tspan), "needs at least one term");
            }
            let all_ok = items.iter().all(|(_, _, x)| x.is_some());
            if all_ok {
                Some(
                    items
                        .into_iter()
                        .map(|(n, sp, x)| ((n, x.unwrap_or(0.0)), Some(sp)))
                        .collect::<Vec<_>>(),
                )
            } else {
                None
            }
        }
        _ => None,
    };
    let unit = sec.string(d, "unit").or(String::new());
    sec.finish(d, |_| None);
    let terms = terms?;
    let unit = unit?;
    let (terms, term_spans): (Vec<_>, Vec<_>) = terms.into_iter().unzip();
    Some(ComputedDraft {
        spec: ComputedSpec {
            name: name.to_string(),
            terms,
            unit: (!unit.is_empty()).then_some(unit),
        },
        span,
        term_spans,
    })
}

/// The `[points.*]` and `[computed.*]` entries of one section.
#[derive(Debug, Default)]
pub(crate) struct Entries {
    pub points: Vec<PointDraft>,
    pub computed: Vec<ComputedDraft>,
    /// Names of entries that had errors (already reported): they still count as declared,
    /// so other checks do not pile up "no point named" errors on top.
    pub broken: Vec<String>,
    /// Every entry parsed (no errors in any of them).
    pub ok: bool,
}

/// Read every `[points.*]` (with `default_order`) and `[computed.*]` of a section.
pub(crate) fn parse_entries(
    d: &mut Diags<'_>,
    sec: &mut Section<'_, '_>,
    default_order: WordOrder,
) -> Entries {
    let mut e = Entries {
        ok: true,
        ..Entries::default()
    };
    match sec.table(d, "points") {
        Field::Value(mut t, _) => {
            for (name, entry) in t.named_tables(d) {
                match parse_point(d, entry, &name, default_order) {
                    Some(p) => e.points.push(p),
                    None => e.broken.push(name),
                }
            }
            t.finish(d, |_| None);
        }
        Field::Invalid => e.ok = false,
        Field::Absent => {}
    }
    match sec.table(d, "computed") {
        Field::Value(mut t, _) => {
            for (name, entry) in t.named_tables(d) {
                match parse_computed(d, entry, &name) {
                    Some(c) => e.computed.push(c),
                    None => e.broken.push(name),
                }
            }
            t.finish(d, |_| None);
        }
        Field::Invalid => e.ok = false,
        Field::Absent => {}
    }
    e.ok &= e.broken.is_empty();
    e
}

/// Check a complete point set (a profile, or a device after merging): computed points name
/// existing read points (not themselves, not other computed points, not strings), no name is
/// both read and computed, and the planner accepts the points under `limits`. `broken` names
/// entries that failed to parse: terms naming them are not judged again.
pub(crate) fn check_set(
    d: &mut Diags<'_>,
    prefix: &str,
    points: &[PointDraft],
    computed: &[ComputedDraft],
    broken: &[String],
    limits: Limits,
) {
    for c in computed {
        let cpath = join(&join(prefix, "computed"), &c.spec.name);
        if points.iter().any(|p| p.spec.name == c.spec.name) {
            d.error(
                &cpath,
                c.span.clone(),
                format!(
                    "`{}` is both a read point and a computed point",
                    c.spec.name
                ),
            );
        }
        for ((term, _), span) in c.spec.terms.iter().zip(&c.term_spans) {
            let tpath = join(&join(&cpath, "terms"), term);
            if broken.contains(term) {
                // The entry it names has its own errors.
            } else if *term == c.spec.name {
                d.error(&tpath, span.clone(), "a computed point cannot use itself");
            } else if computed.iter().any(|o| o.spec.name == *term) {
                d.error(
                    &tpath,
                    span.clone(),
                    format!("`{term}` is a computed point; terms must name read points"),
                );
            } else {
                match points.iter().find(|p| p.spec.name == *term) {
                    None => d.error(
                        &tpath,
                        span.clone(),
                        format!("no point named `{term}` in this device"),
                    ),
                    Some(p) if matches!(p.spec.data_type, DataType::String(_)) => d.error(
                        &tpath,
                        span.clone(),
                        format!("point `{term}` is a string and cannot be summed"),
                    ),
                    Some(_) => {}
                }
            }
        }
    }
    check_scale_from(d, prefix, points, computed, broken);
    let specs: Vec<PointSpec> = points.iter().map(|p| p.spec.clone()).collect();
    if let Err(e) = planner::plan(&specs, limits) {
        let (name, msg) = match &e {
            PlanError::TooWide { point, width, limit } => (
                point.clone(),
                format!("needs {width} registers in one read but max_registers is {limit}: raise max_registers or shorten the point"),
            ),
            PlanError::PastEnd { point, .. } => (point.clone(), e.to_string()),
        };
        let span = points
            .iter()
            .find(|p| p.spec.name == name)
            .and_then(|p| p.span.clone());
        d.error(&join(&join(prefix, "points"), &name), span, msg);
    }
}

/// Every `scale_from` names another read point of the same device (so it is planned and read in
/// the same cycle) holding a whole number: an integer or BCD point that takes no decimals from
/// a third point itself.
fn check_scale_from(
    d: &mut Diags<'_>,
    prefix: &str,
    points: &[PointDraft],
    computed: &[ComputedDraft],
    broken: &[String],
) {
    for p in points {
        let Some(from) = &p.spec.scale_from else {
            continue;
        };
        let name = &p.spec.name;
        let path = join(&join(&join(prefix, "points"), name), "scale_from");
        let why = if broken.contains(from) {
            continue;
        } else if from == name {
            "a point cannot take its decimals from itself".to_string()
        } else if computed.iter().any(|c| c.spec.name == *from) {
            format!("point `{name}` takes its decimals from `{from}`, a computed point: name a read point of the device")
        } else {
            match points.iter().find(|o| o.spec.name == *from) {
                None => format!(
                    "point `{name}` takes its decimals from `{from}`, but this device has no point `{from}`"
                ),
                Some(o) if !o.spec.data_type.is_integer() => format!(
                    "point `{name}` takes its decimals from `{from}`, a {} point: decimals are a whole number (an integer or BCD point)",
                    o.spec.data_type
                ),
                Some(o) if o.spec.scale_from.is_some() => format!(
                    "point `{name}` takes its decimals from `{from}`, which takes its own from `{}`: one level only",
                    o.spec.scale_from.as_deref().unwrap_or_default()
                ),
                Some(_) => continue,
            }
        };
        d.error(&path, p.span.clone(), why);
    }
}
