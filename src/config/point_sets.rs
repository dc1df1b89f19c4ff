//! Config-level point sets: `[point_sets.<name>]` defines a register map once in the config
//! file (`order`, `max_registers`, `max_gap`, `description`, `[point_sets.<name>.points.*]`,
//! `[point_sets.<name>.computed.*]`, the same entries as a profile) and devices use it with
//! `point_set = "<name>"`, under the same override and drop rules as a profile (`merge`). A set
//! is validated once where it is written; its entries stay borrowed from the document so
//! device overrides can merge key by key. No I/O.

use std::collections::BTreeMap;
use std::ops::Range;

use crate::modbus::planner::Limits;
use crate::model::WordOrder;

use super::diag::Diags;
use super::doc::{Field, Section};
use super::merge::{self, Base, BaseComputed, BaseKind, BasePoint};
use super::points;

/// One `[point_sets.<name>]`.
#[derive(Debug, Clone)]
pub(crate) struct PointSet<'a, 'i> {
    pub base: Base<'a, 'i>,
    /// The set had no errors (a device using a broken set reports it once, no more).
    pub ok: bool,
    /// Where the set's name is written.
    pub span: Option<Range<usize>>,
}

/// Every `[point_sets.*]` of the document, by name.
pub(crate) type PointSets<'a, 'i> = BTreeMap<String, PointSet<'a, 'i>>;

/// Read `[point_sets]` from the document root (absent: no sets).
pub(crate) fn parse_point_sets<'a, 'i>(
    d: &mut Diags<'_>,
    root: &mut Section<'a, 'i>,
) -> PointSets<'a, 'i> {
    let mut sets = PointSets::new();
    if let Field::Value(mut sec, _) = root.table(d, "point_sets") {
        for (name, entry) in sec.named_tables(d) {
            let set = parse_set(d, &name, entry);
            sets.insert(name, set);
        }
        sec.finish(d, |_| None);
    }
    sets
}

fn parse_set<'a, 'i>(d: &mut Diags<'_>, name: &str, mut sec: Section<'a, 'i>) -> PointSet<'a, 'i> {
    let span = sec.span.clone();
    points::check_name(d, &sec.path, span.clone(), name);
    let errors_before = d.count();
    let order = points::parse_order(&mut sec, d);
    let default_order = order.flatten().unwrap_or(WordOrder::Abcd);
    let max_registers = sec.int(d, "max_registers", 1, 125).opt();
    let max_gap = sec.int(d, "max_gap", 0, 125).opt();
    let _ = sec.string(d, "description");
    let entries = points::parse_entries(d, &mut sec, default_order);
    let (mut raw_points, mut raw_computed) = (Vec::new(), Vec::new());
    for p in &entries.points {
        raw_points.push(merge::raw_entry(&sec, "points", &p.spec.name));
    }
    for c in &entries.computed {
        raw_computed.push(merge::raw_entry(&sec, "computed", &c.spec.name));
    }
    let path = sec.path.clone();
    sec.finish(d, |_| None);
    if entries.points.is_empty() && entries.ok {
        d.error(
            &path,
            span.clone(),
            format!(
                "point set `{name}` has no points: add [point_sets.{name}.points.<point>] entries"
            ),
        );
    }
    let max_registers = max_registers.ok().flatten().map(|v| v as u16);
    let max_gap = max_gap.ok().flatten().map(|v| v as u16);
    let limits = Limits {
        max_registers: max_registers.unwrap_or(125),
        max_gap: max_gap.unwrap_or(10),
    };
    points::check_set(
        d,
        &path,
        &entries.points,
        &entries.computed,
        &entries.broken,
        limits,
    );
    let ok = d.count() == errors_before && entries.ok && order.is_some();
    PointSet {
        base: Base {
            kind: BaseKind::Set(name.to_string()),
            default_order,
            max_registers,
            max_gap,
            points: entries
                .points
                .into_iter()
                .zip(raw_points)
                .map(|(p, raw)| BasePoint {
                    spec: p.spec,
                    raw,
                    span: p.span,
                })
                .collect(),
            computed: entries
                .computed
                .into_iter()
                .zip(raw_computed)
                .map(|(c, raw)| BaseComputed {
                    spec: c.spec,
                    raw,
                    span: c.span,
                })
                .collect(),
            same_file: true,
        },
        ok,
        span,
    }
}

/// Warn about sets no device uses (after the devices were parsed; `origins` by device).
pub(crate) fn warn_unused(
    d: &mut Diags<'_>,
    sets: &PointSets<'_, '_>,
    origins: &BTreeMap<String, merge::DeviceOrigins>,
) {
    for (name, set) in sets {
        let used = origins
            .values()
            .any(|o| matches!(&o.base, Some(BaseKind::Set(n)) if n == name));
        if set.ok && !used {
            d.warn(
                &format!("point_sets.{name}"),
                set.span.clone(),
                format!("point set `{name}` is used by no device (point_set = \"{name}\")"),
            );
        }
    }
}
