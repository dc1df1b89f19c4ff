//! How a device's points come together from a base point set (a profile, or a config-level
//! `[point_sets.<name>]`) and the device's own entries, and where each field came from.
//!
//! The rules (docs/config.md, "Overrides"): a device entry `[devices.<d>.points.<p>]` naming a
//! point of its base overrides only the keys it writes, key by key, and keeps every other key
//! of the base point (table, address, type, order, scale, offset, unit and any key added
//! later); writing `type` drops the base's `bit` and `length` (they qualify the old type). An
//! entry naming no base point adds a point and needs table, address and type; one that lacks
//! them is taken for a misspelt override and refused naming device, base and point. `drop`
//! removes base points (and computed points) the unit does not have; a name the base does not
//! have is an error, and so is dropping a point a remaining computed point reads. A base
//! point that pins no `order` takes the device's `order`, else the base's default. Computed
//! entries merge the same way. No I/O.

use std::fmt;
use std::ops::Range;

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use crate::model::{ComputedSpec, PointSpec, WordOrder};

use super::diag::Diags;
use super::doc::{Field, Section};
use super::points::{self, ComputedDraft, PointDraft};
use super::profiles::Profile;

/// What a device's points are based on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BaseKind {
    /// A profile file (or a built-in profile), by id.
    Profile(String),
    /// A `[point_sets.<name>]` of the same config file.
    Set(String),
}

impl fmt::Display for BaseKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BaseKind::Profile(id) => write!(f, "profile `{id}`"),
            BaseKind::Set(name) => write!(f, "point set `{name}`"),
        }
    }
}

/// One read point of a base: resolved (with the base's default order) and as written.
#[derive(Debug, Clone)]
pub(crate) struct BasePoint<'a, 'i> {
    pub spec: PointSpec,
    pub raw: Option<&'a DeTable<'i>>,
    /// Key span in the config file (point sets), `None` for a profile's points.
    pub span: Option<Range<usize>>,
}

/// One computed point of a base.
#[derive(Debug, Clone)]
pub(crate) struct BaseComputed<'a, 'i> {
    pub spec: ComputedSpec,
    pub raw: Option<&'a DeTable<'i>>,
    pub span: Option<Range<usize>>,
}

/// A profile or point set as devices build on it.
#[derive(Debug, Clone)]
pub(crate) struct Base<'a, 'i> {
    pub kind: BaseKind,
    pub default_order: WordOrder,
    pub max_registers: Option<u16>,
    pub max_gap: Option<u16>,
    pub points: Vec<BasePoint<'a, 'i>>,
    pub computed: Vec<BaseComputed<'a, 'i>>,
    /// The base's values are in the config file itself (a point set): their spans are kept.
    /// A profile's are in another file: merged values are placed at the device's entry.
    pub same_file: bool,
}

impl<'a, 'i> Base<'a, 'i> {
    /// A profile as a base; `doc` is its text parsed again (for the keys as written).
    pub fn from_profile(p: &Profile, doc: Option<&'a DeTable<'i>>) -> Self {
        let raw_of = |section: &str, name: &str| {
            doc.and_then(|t| t.get(section))
                .and_then(|v| v.get_ref().as_table())
                .and_then(|t| t.get(name))
                .and_then(|v| v.get_ref().as_table())
        };
        Base {
            kind: BaseKind::Profile(p.id.clone()),
            default_order: p.default_order,
            max_registers: p.max_registers,
            max_gap: p.max_gap,
            points: p
                .points
                .iter()
                .map(|s| BasePoint {
                    spec: s.clone(),
                    raw: raw_of("points", &s.name),
                    span: None,
                })
                .collect(),
            computed: p
                .computed
                .iter()
                .map(|c| BaseComputed {
                    spec: c.clone(),
                    raw: raw_of("computed", &c.name),
                    span: None,
                })
                .collect(),
            same_file: false,
        }
    }

    fn names(&self) -> String {
        let mut v: Vec<&str> = self.points.iter().map(|p| p.spec.name.as_str()).collect();
        v.extend(self.computed.iter().map(|c| c.spec.name.as_str()));
        v.join(", ")
    }

    fn has(&self, name: &str) -> bool {
        self.points.iter().any(|p| p.spec.name == name)
            || self.computed.iter().any(|c| c.spec.name == name)
    }
}

/// Where a key of a resolved point was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    /// In the base point (profile or point set).
    Base,
    /// In the device's entry over a base point.
    Override,
    /// In the device's own (added) point.
    Inline,
}

/// Where a point's byte/word order came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderFrom {
    /// The point's own `order` key, written where `Written` says.
    Point(Written),
    /// The device's `order`.
    Device,
    /// The base's `default_order` (profile) or `order` (point set).
    BaseDefault,
    /// Nothing set: ABCD.
    Default,
}

/// Where one resolved point (read or computed) of a device came from.
#[derive(Debug, Clone, PartialEq)]
pub struct PointOrigin {
    pub name: String,
    pub computed: bool,
    /// `None`: the device's own point.
    pub base: Option<BaseKind>,
    /// Keys written for the point and where (sorted by key).
    pub keys: Vec<(String, Written)>,
    /// Read points only.
    pub order_from: Option<OrderFrom>,
}

impl PointOrigin {
    /// Where `key` was written, if anywhere (else it has its default).
    pub fn written(&self, key: &str) -> Option<Written> {
        self.keys.iter().find(|(k, _)| k == key).map(|(_, w)| *w)
    }
}

/// How one device's points were resolved (for `gasdtu check --show`).
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceOrigins {
    pub base: Option<BaseKind>,
    /// Base points the device dropped, in the order written.
    pub dropped: Vec<String>,
    /// In the order of the device's points, then its computed points.
    pub points: Vec<PointOrigin>,
}

/// The device's points after merging.
#[derive(Debug, Default)]
pub(crate) struct Merged {
    pub points: Vec<PointDraft>,
    pub computed: Vec<ComputedDraft>,
    /// Entries with errors (already reported) and dropped names: other checks do not pile
    /// "no point named" errors on them.
    pub broken: Vec<String>,
    /// Every entry parsed and every drop valid.
    pub ok: bool,
    pub origins: Vec<PointOrigin>,
    pub dropped: Vec<String>,
}

/// Keys written for one point and where.
type Keys = Vec<(String, Written)>;

/// Keys that qualify `type` and are not inherited when an override writes its own `type`.
const TYPE_QUALIFIERS: &[&str] = &["bit", "length"];

/// The base table with the override's keys written over it. Base values are placed at
/// `respan` when they come from another file.
fn overlay<'m>(
    base: &DeTable<'m>,
    over: &DeTable<'m>,
    respan: Option<Range<usize>>,
    drop_keys: &[&str],
) -> DeTable<'m> {
    let mut out = DeTable::new();
    for (k, v) in base.iter() {
        if drop_keys.contains(&k.get_ref().as_ref()) {
            continue;
        }
        match &respan {
            Some(r) => {
                out.insert(
                    Spanned::new(r.clone(), k.get_ref().clone()),
                    Spanned::new(r.clone(), v.get_ref().clone()),
                );
            }
            None => {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    for (k, v) in over.iter() {
        out.remove(k.get_ref().as_ref());
        out.insert(k.clone(), v.clone());
    }
    out
}

fn keys_of(t: Option<&DeTable<'_>>) -> Vec<String> {
    t.map(|t| t.iter().map(|(k, _)| k.get_ref().to_string()).collect())
        .unwrap_or_default()
}

fn origin_keys(
    base: Option<&DeTable<'_>>,
    over: Option<&DeTable<'_>>,
    own: Written,
) -> Vec<(String, Written)> {
    let over_keys = keys_of(over);
    let typed = over_keys.iter().any(|k| k == "type");
    let mut keys: Vec<(String, Written)> = keys_of(base)
        .into_iter()
        .filter(|k| !(over_keys.contains(k) || typed && TYPE_QUALIFIERS.contains(&k.as_str())))
        .map(|k| (k, Written::Base))
        .collect();
    keys.extend(over_keys.into_iter().map(|k| (k, own)));
    keys.sort_by(|a, b| a.0.cmp(&b.0));
    keys
}

/// Read the device's `drop`, `points` and `computed` and merge them onto `base`.
/// `device_order` is the device's `order` (with the span of its value).
pub(crate) fn merge_entries(
    d: &mut Diags<'_>,
    sec: &mut Section<'_, '_>,
    device: &str,
    base: Option<&Base<'_, '_>>,
    device_order: Option<(WordOrder, Option<Range<usize>>)>,
) -> Merged {
    let mut m = Merged {
        ok: true,
        ..Merged::default()
    };
    let default_order = device_order
        .as_ref()
        .map(|(o, _)| *o)
        .or(base.map(|b| b.default_order))
        .unwrap_or_default();
    let unpinned_from = match (&device_order, base) {
        (Some(_), _) => OrderFrom::Device,
        (None, Some(_)) => OrderFrom::BaseDefault,
        (None, None) => OrderFrom::Default,
    };

    // drop = ["temp2", ...]
    let mut drop_spans: Vec<(String, Range<usize>)> = Vec::new();
    match sec.strings_spanned(d, "drop") {
        Field::Value(items, span) => match base {
            None => {
                d.error(
                    &sec.key_path("drop"),
                    Some(span),
                    format!("device `{device}` has no profile or point_set to drop points from"),
                );
                m.ok = false;
            }
            Some(b) => {
                for (i, (name, sp)) in items.into_iter().enumerate() {
                    if !b.has(&name) {
                        d.error(
                            &format!("{}[{i}]", sec.key_path("drop")),
                            Some(sp),
                            format!(
                                "device `{device}`: {} has no point `{name}` to drop (its points: {})",
                                b.kind,
                                b.names()
                            ),
                        );
                        m.ok = false;
                    } else if !drop_spans.iter().any(|(n, _)| *n == name) {
                        drop_spans.push((name, sp));
                    }
                }
            }
        },
        Field::Invalid => m.ok = false,
        Field::Absent => {}
    }
    let dropped = |n: &str| drop_spans.iter().any(|(x, _)| x == n);

    // Read points: the base's (overridden where the device writes them), then additions.
    let mut overrides: Vec<(String, Option<PointDraft>, Keys)> = Vec::new();
    let mut added: Vec<(PointDraft, Vec<(String, Written)>)> = Vec::new();
    match sec.table(d, "points") {
        Field::Value(mut t, _) => {
            for (name, entry) in t.named_tables(d) {
                let over = entry.as_table();
                let base_point = base.and_then(|b| b.points.iter().find(|p| p.spec.name == name));
                if dropped(&name) {
                    d.error(
                        &entry.path,
                        entry.span.clone(),
                        format!("point `{name}` is both dropped and overridden: keep one"),
                    );
                    m.broken.push(name);
                    continue;
                }
                match (base, base_point) {
                    (Some(b), Some(bp)) => {
                        let Some(raw) = bp.raw else {
                            // Cannot happen (the base was parsed from this text); act as
                            // a replacement rather than fail.
                            let keys = origin_keys(None, Some(over), Written::Override);
                            let p = points::parse_point(d, entry, &name, default_order);
                            if p.is_none() {
                                m.broken.push(name.clone());
                            }
                            overrides.push((name, p, keys));
                            continue;
                        };
                        let typed = over.contains_key("type");
                        let respan = (!b.same_file).then(|| entry.span.clone()).flatten();
                        let merged =
                            overlay(raw, over, respan, if typed { TYPE_QUALIFIERS } else { &[] });
                        let keys = origin_keys(Some(raw), Some(over), Written::Override);
                        let msec = Section::new(entry.path.clone(), entry.span.clone(), &merged);
                        let p = points::parse_point(d, msec, &name, default_order);
                        if p.is_none() {
                            m.broken.push(name.clone());
                        }
                        overrides.push((name, p, keys));
                    }
                    (Some(b), None)
                        if ["table", "address", "type"]
                            .iter()
                            .any(|k| !over.contains_key(*k)) =>
                    {
                        if b.computed.iter().any(|c| c.spec.name == name) {
                            d.error(
                                &entry.path,
                                entry.span.clone(),
                                format!(
                                    "device `{device}`: `{name}` is a computed point of {}: override it under computed.{name}",
                                    b.kind
                                ),
                            );
                        } else {
                            d.error(
                                &entry.path,
                                entry.span.clone(),
                                format!(
                                    "device `{device}`: {} has no point `{name}` to override (its points: {}); a new point needs table, address and type",
                                    b.kind,
                                    b.names()
                                ),
                            );
                        }
                        m.broken.push(name);
                    }
                    _ => {
                        let keys = origin_keys(None, Some(over), Written::Inline);
                        match points::parse_point(d, entry, &name, default_order) {
                            Some(p) => added.push((p, keys)),
                            None => m.broken.push(name),
                        }
                    }
                }
            }
            t.finish(d, |_| None);
        }
        Field::Invalid => m.ok = false,
        Field::Absent => {}
    }
    if let Some(b) = base {
        for bp in &b.points {
            if dropped(&bp.spec.name) {
                continue;
            }
            if let Some(pos) = overrides.iter().position(|(n, _, _)| *n == bp.spec.name) {
                let (name, p, keys) = overrides.remove(pos);
                if let Some(p) = p {
                    let order_from = match keys.iter().find(|(k, _)| k == "order") {
                        Some((_, w)) => OrderFrom::Point(*w),
                        None => unpinned_from,
                    };
                    m.origins.push(PointOrigin {
                        name,
                        computed: false,
                        base: Some(b.kind.clone()),
                        keys,
                        order_from: Some(order_from),
                    });
                    m.points.push(p);
                }
                continue;
            }
            let keys = origin_keys(bp.raw, None, Written::Base);
            let pinned = match bp.raw {
                Some(r) => r.contains_key("order"),
                None => bp.spec.order != b.default_order,
            };
            let mut spec = bp.spec.clone();
            if !pinned {
                spec.order = default_order;
            }
            m.origins.push(PointOrigin {
                name: spec.name.clone(),
                computed: false,
                base: Some(b.kind.clone()),
                keys,
                order_from: Some(if pinned {
                    OrderFrom::Point(Written::Base)
                } else {
                    unpinned_from
                }),
            });
            m.points.push(PointDraft {
                spec,
                span: bp.span.clone(),
            });
        }
    }
    for (p, keys) in added {
        let order_from = if keys.iter().any(|(k, _)| k == "order") {
            OrderFrom::Point(Written::Inline)
        } else if device_order.is_some() {
            OrderFrom::Device
        } else if base.is_some() {
            OrderFrom::BaseDefault
        } else {
            OrderFrom::Default
        };
        m.origins.push(PointOrigin {
            name: p.spec.name.clone(),
            computed: false,
            base: None,
            keys,
            order_from: Some(order_from),
        });
        m.points.push(p);
    }

    merge_computed(d, sec, device, base, &drop_spans, &mut m);

    // A dropped point that a remaining computed point reads.
    for (name, span) in &drop_spans {
        for c in &m.computed {
            if c.spec.terms.iter().any(|(t, _)| t == name) {
                d.error(
                    &sec.key_path("drop"),
                    Some(span.clone()),
                    format!(
                        "device `{device}`: computed point `{}` reads `{name}`: drop `{}` too, or keep `{name}`",
                        c.spec.name, c.spec.name
                    ),
                );
                m.ok = false;
            }
        }
    }
    m.dropped = drop_spans.into_iter().map(|(n, _)| n).collect();
    m.broken.extend(m.dropped.iter().cloned());
    if m.broken.iter().any(|n| !m.dropped.contains(n)) {
        m.ok = false;
    }
    m
}

fn merge_computed(
    d: &mut Diags<'_>,
    sec: &mut Section<'_, '_>,
    device: &str,
    base: Option<&Base<'_, '_>>,
    drop_spans: &[(String, Range<usize>)],
    m: &mut Merged,
) {
    let dropped = |n: &str| drop_spans.iter().any(|(x, _)| x == n);
    let mut overrides: Vec<(String, Option<ComputedDraft>, Keys)> = Vec::new();
    let mut added: Vec<(ComputedDraft, Vec<(String, Written)>)> = Vec::new();
    match sec.table(d, "computed") {
        Field::Value(mut t, _) => {
            for (name, entry) in t.named_tables(d) {
                let over = entry.as_table();
                if dropped(&name) {
                    d.error(
                        &entry.path,
                        entry.span.clone(),
                        format!("computed point `{name}` is both dropped and overridden: keep one"),
                    );
                    m.broken.push(name);
                    continue;
                }
                let base_c = base.and_then(|b| {
                    b.computed
                        .iter()
                        .find(|c| c.spec.name == name)
                        .map(|c| (b, c.raw))
                });
                match base_c {
                    Some((b, Some(raw))) => {
                        let respan = (!b.same_file).then(|| entry.span.clone()).flatten();
                        let merged = overlay(raw, over, respan, &[]);
                        let keys = origin_keys(Some(raw), Some(over), Written::Override);
                        let msec = Section::new(entry.path.clone(), entry.span.clone(), &merged);
                        let c = points::parse_computed(d, msec, &name);
                        if c.is_none() {
                            m.broken.push(name.clone());
                        }
                        overrides.push((name, c, keys));
                    }
                    None if base.is_some() && !over.contains_key("terms") => {
                        if let Some(b) = base {
                            d.error(
                                &entry.path,
                                entry.span.clone(),
                                format!(
                                    "device `{device}`: {} has no computed point `{name}` to override (its points: {}); a new computed point needs terms",
                                    b.kind,
                                    b.names()
                                ),
                            );
                        }
                        m.broken.push(name);
                    }
                    _ => {
                        let keys = origin_keys(None, Some(over), Written::Inline);
                        match points::parse_computed(d, entry, &name) {
                            Some(c) => {
                                if base_c.is_some() {
                                    overrides.push((name, Some(c), keys));
                                } else {
                                    added.push((c, keys));
                                }
                            }
                            None => m.broken.push(name),
                        }
                    }
                }
            }
            t.finish(d, |_| None);
        }
        Field::Invalid => m.ok = false,
        Field::Absent => {}
    }
    if let Some(b) = base {
        for bc in &b.computed {
            if dropped(&bc.spec.name) {
                continue;
            }
            if let Some(pos) = overrides.iter().position(|(n, _, _)| *n == bc.spec.name) {
                let (name, c, keys) = overrides.remove(pos);
                if let Some(c) = c {
                    m.origins.push(PointOrigin {
                        name,
                        computed: true,
                        base: Some(b.kind.clone()),
                        keys,
                        order_from: None,
                    });
                    m.computed.push(c);
                }
                continue;
            }
            m.origins.push(PointOrigin {
                name: bc.spec.name.clone(),
                computed: true,
                base: Some(b.kind.clone()),
                keys: origin_keys(bc.raw, None, Written::Base),
                order_from: None,
            });
            m.computed.push(ComputedDraft {
                term_spans: vec![bc.span.clone(); bc.spec.terms.len()],
                spec: bc.spec.clone(),
                span: bc.span.clone(),
            });
        }
    }
    for (c, keys) in added {
        m.origins.push(PointOrigin {
            name: c.spec.name.clone(),
            computed: true,
            base: None,
            keys,
            order_from: None,
        });
        m.computed.push(c);
    }
}

/// Used by `point_sets` to turn a raw `[points.*]` sub-table lookup into the entry tables.
pub(crate) fn raw_entry<'a, 'i>(
    sec: &Section<'a, 'i>,
    section: &str,
    name: &str,
) -> Option<&'a DeTable<'i>> {
    sec.as_table()
        .get(section)
        .and_then(|v: &'a Spanned<DeValue<'i>>| v.get_ref().as_table())
        .and_then(|t| t.get(name))
        .and_then(|v| v.get_ref().as_table())
}
