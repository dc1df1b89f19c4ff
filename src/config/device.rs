//! One `[devices.<name>]` entry: bus and unit, poll schedule, read limits, and its points,
//! merged from its profile (looked up once per document) or point set and its own entries
//! (`merge`: overrides, drops, additions), then checked as a whole (computed terms, request
//! plan, 16-bit byte order). Pure apart from reading profile files.

use std::collections::HashMap;
use std::ops::Range;
use std::path::PathBuf;
use std::time::Duration;

use crate::modbus::planner::Limits;

use super::bus::Kind;
use super::diag::Diags;
use super::doc::{Field, Section};
use super::merge::{self, Base, DeviceOrigins};
use super::point_sets::PointSets;
use super::points;
use super::profiles::{self, Profile};
use super::DeviceConfig;

/// What a device entry is checked against.
pub(crate) struct DeviceCtx<'a> {
    pub bus_kinds: &'a HashMap<String, Option<Kind>>,
    pub profile_dirs: &'a [PathBuf],
    pub point_sets: &'a PointSets<'a, 'a>,
}

pub(crate) fn parse_device(
    d: &mut Diags<'_>,
    name: &str,
    mut sec: Section<'_, '_>,
    ctx: &DeviceCtx<'_>,
    cache: &mut HashMap<String, Option<Profile>>,
) -> Option<(DeviceConfig, Option<Range<usize>>, DeviceOrigins)> {
    let prefix = sec.path.clone();
    points::check_name(d, &prefix, sec.span.clone(), name);
    let f = sec.string(d, "bus");
    let (bus, bus_kind) = match sec.required(d, "bus", "the name of a [buses.<name>] section", f) {
        Field::Value(b, sp) => match ctx.bus_kinds.get(&b) {
            Some(k) => (Some(b), *k),
            None => {
                let mut known: Vec<&String> = ctx.bus_kinds.keys().collect();
                known.sort();
                let known: Vec<&str> = known.iter().map(|s| s.as_str()).collect();
                d.error(
                    &sec.key_path("bus"),
                    Some(sp),
                    format!(
                        "no bus named `{b}` (buses: {})",
                        if known.is_empty() {
                            "none".to_string()
                        } else {
                            known.join(", ")
                        }
                    ),
                );
                (None, None)
            }
        },
        _ => (None, None),
    };
    let f = sec.int(d, "unit", 0, 255);
    let unit_field = sec.required(d, "unit", "Modbus unit id 1..=247", f);
    let unit_span = unit_field.span();
    let unit = match unit_field {
        Field::Value(u, sp) => {
            if u == 0 {
                d.error(
                    &sec.key_path("unit"),
                    Some(sp),
                    "unit 0 is the broadcast address and cannot be polled: use 1..=247",
                );
                None
            } else if u == 255 && bus_kind == Some(Kind::Tcp) || u <= 247 {
                Some(u as u8)
            } else if u == 255 {
                d.error(
                    &sec.key_path("unit"),
                    Some(sp),
                    "unit 255 is only allowed on kind = \"tcp\" buses: use 1..=247",
                );
                None
            } else {
                d.error(
                    &sec.key_path("unit"),
                    Some(sp),
                    format!("unit {u} is reserved: use 1..=247 (255 on tcp)"),
                );
                None
            }
        }
        _ => None,
    };
    let poll_field = sec.duration(
        d,
        "poll",
        Duration::from_secs(1),
        Duration::from_secs(86400),
    );
    let poll_span = poll_field.span();
    let poll = poll_field.or(Duration::from_secs(300));
    let phase_field = sec.duration(d, "phase", Duration::ZERO, Duration::from_secs(86400));
    let phase_span = phase_field.span();
    let phase = phase_field.or(Duration::ZERO);
    if let (Some(p), Some(ph)) = (poll, phase) {
        if ph >= p {
            d.error(
                &sec.key_path("phase"),
                phase_span,
                format!(
                    "phase {} must be shorter than poll {}",
                    humantime::format_duration(ph),
                    humantime::format_duration(p)
                ),
            );
        }
        if poll_span.is_some() && (p.subsec_nanos() != 0 || 86400 % p.as_secs().max(1) != 0) {
            d.warn(
                &sec.key_path("poll"),
                poll_span,
                format!("poll {} does not divide a day evenly: polls will not fall on the same clock times every day", humantime::format_duration(p)),
            );
        }
    }
    let max_registers = sec.int(d, "max_registers", 1, 125).opt();
    let max_gap = sec.int(d, "max_gap", 0, 125).opt();
    let offline_after = sec.int(d, "offline_after", 1, 10_000).or(3);
    let enabled = sec.boolean(d, "enabled").or(true);
    let order = points::parse_order(&mut sec, d);
    // The profile, looked up once per id for the whole document.
    let profile_field = sec.string(d, "profile");
    let profile_field_given = !matches!(profile_field, Field::Absent);
    let (profile_id, profile, profile_ok) = match profile_field {
        Field::Value(id, sp) if !points::valid_name(&id) => {
            d.error(
                &sec.key_path("profile"),
                Some(sp),
                format!("invalid profile id {id:?}: use 1 to 64 of A-Z a-z 0-9 _ - (the file is <id>.toml)"),
            );
            (None, None, false)
        }
        Field::Value(id, sp) => {
            let path = sec.key_path("profile");
            let entry = match cache.get(&id) {
                Some(Some(p)) => Some(p.clone()),
                Some(None) => {
                    d.error(
                        &path,
                        Some(sp),
                        format!("profile {id:?} is unavailable (see the errors above)"),
                    );
                    None
                }
                None => {
                    let found = match profiles::find_profile(&id, ctx.profile_dirs) {
                        Ok(Some(p)) => Some(p),
                        Ok(None) => {
                            d.error(
                                &path,
                                Some(sp),
                                profiles::not_found_message(&id, ctx.profile_dirs),
                            );
                            None
                        }
                        Err(errs) => {
                            let n = super::diag::error_count(&errs);
                            d.extend(errs);
                            d.error(
                                &path,
                                Some(sp),
                                format!(
                                    "profile {id:?} is invalid ({n} errors in the profile file)"
                                ),
                            );
                            None
                        }
                    };
                    cache.insert(id.clone(), found.clone());
                    found
                }
            };
            let ok = entry.is_some();
            (Some(id), entry, ok)
        }
        Field::Absent => (None, None, true),
        Field::Invalid => (None, None, false),
    };
    // Or a point set of this config file.
    let set_field = sec.string(d, "point_set");
    let set_given = !matches!(set_field, Field::Absent);
    let (set, set_ok) = match set_field {
        Field::Value(n, sp) => {
            let path = sec.key_path("point_set");
            if profile_field_given {
                d.error(
                    &path,
                    Some(sp),
                    "use either `profile` or `point_set`, not both (a point set holds the whole register map)",
                );
                (None, false)
            } else {
                match ctx.point_sets.get(&n) {
                    Some(s) if s.ok => (Some(s), true),
                    Some(_) => {
                        d.error(
                            &path,
                            Some(sp),
                            format!("point set `{n}` is invalid (see its errors)"),
                        );
                        (None, false)
                    }
                    None => {
                        let known: Vec<&str> = ctx.point_sets.keys().map(|k| k.as_str()).collect();
                        d.error(
                            &path,
                            Some(sp),
                            format!(
                                "no point set named `{n}` (point sets: {})",
                                if known.is_empty() {
                                    "none; define one as [point_sets.<name>]".to_string()
                                } else {
                                    known.join(", ")
                                }
                            ),
                        );
                        (None, false)
                    }
                }
            }
        }
        Field::Absent => (None, true),
        Field::Invalid => (None, false),
    };
    // Poll fast, report slow: `report` (default: every poll), `deadband` (point -> deadband for
    // report by exception) and `report_last` (points sent as last value only).
    let report_field = sec.duration(
        d,
        "report",
        Duration::from_secs(1),
        Duration::from_secs(86400),
    );
    let report_span = report_field.span();
    let report = match (report_field.or(Duration::ZERO), poll) {
        (Some(r), Some(p)) if r.is_zero() => Some(p),
        (Some(r), Some(p)) if r < p => {
            d.error(
                &sec.key_path("report"),
                report_span,
                format!(
                    "report {} is shorter than poll {}: report at most as often as you poll",
                    humantime::format_duration(r),
                    humantime::format_duration(p)
                ),
            );
            None
        }
        (Some(r), _) => Some(r),
        _ => None,
    };
    let mut deadband_keys: Vec<(String, Range<usize>)> = Vec::new();
    let mut deadbands = std::collections::BTreeMap::new();
    if let Field::Value(mut db, _) = sec.table(d, "deadband") {
        for (point, span, x) in db.numbers(d) {
            match x {
                Some(x) if x >= 0.0 => {
                    deadbands.insert(point.clone(), x);
                }
                Some(_) => d.error(
                    &db.key_path(&point),
                    Some(span.clone()),
                    "a deadband must be zero or positive",
                ),
                None => {}
            }
            deadband_keys.push((point, span));
        }
    }
    let report_last_field = sec.strings(d, "report_last");
    let report_last_span = report_last_field.span();
    let report_last: Vec<String> = match report_last_field {
        Field::Value(v, _) => v,
        _ => Vec::new(),
    };
    let device_order = order.flatten();
    let device_order_span = sec.value_span("order");
    // The base: a profile (its text parsed again so overrides merge key by key) or a point set.
    let profile_doc = profile
        .as_ref()
        .and_then(|p| toml::de::DeTable::parse(&p.text).ok());
    let profile_base = profile
        .as_ref()
        .map(|p| Base::from_profile(p, profile_doc.as_ref().map(|t| t.get_ref())));
    let base: Option<&Base<'_, '_>> = match (&profile_base, &set) {
        (Some(b), _) => Some(b),
        (None, Some(s)) => Some(&s.base),
        (None, None) => None,
    };
    let merged = if base.is_none() && (profile_field_given || set_given) {
        // The profile or set named is missing or broken (reported above): judging the
        // device's entries without it would only pile up errors.
        sec.skip(&["drop", "points", "computed"]);
        merge::Merged::default()
    } else {
        merge::merge_entries(
            d,
            &mut sec,
            name,
            base,
            device_order.map(|o| (o, device_order_span.clone())),
        )
    };
    let sec_span = sec.span.clone();
    sec.finish(d, |_| None);
    let base_ok = profile_ok && set_ok;
    let (pts, comp) = (merged.points, merged.computed);
    if pts.is_empty() && merged.ok && base_ok && base.is_none() && profile_id.is_none() {
        d.error(
            &prefix,
            sec_span.clone(),
            "device has no points: set `profile` or `point_set`, or add [devices.<name>.points.<point>] entries",
        );
    }
    let max_registers = max_registers.ok()?;
    let max_gap = max_gap.ok()?;
    let limits = Limits {
        max_registers: max_registers
            .map(|v| v as u16)
            .or(base.and_then(|b| b.max_registers))
            .unwrap_or(125),
        max_gap: max_gap
            .map(|v| v as u16)
            .or(base.and_then(|b| b.max_gap))
            .unwrap_or(10),
    };
    if base_ok {
        points::check_set(d, &prefix, &pts, &comp, &merged.broken, limits);
        super::byte_order::warn_byte_swapped_16bit(
            d,
            &prefix,
            sec_span,
            device_order_span,
            &pts,
            &merged.origins,
            base.map(|b| &b.kind),
        );
    }
    // Reporting settings must name points of this device.
    let known =
        |n: &str| pts.iter().any(|p| p.spec.name == n) || comp.iter().any(|c| c.spec.name == n);
    for (point, span) in &deadband_keys {
        if !known(point) {
            d.error(
                &format!("{prefix}.deadband.{point}"),
                Some(span.clone()),
                format!("device `{name}` has no point `{point}`"),
            );
        }
    }
    for point in &report_last {
        if !known(point) {
            d.error(
                &format!("{prefix}.report_last"),
                report_last_span.clone(),
                format!("device `{name}` has no point `{point}`"),
            );
        }
    }
    if !(merged.ok && base_ok) {
        return None;
    }
    let origins = DeviceOrigins {
        base: base.map(|b| b.kind.clone()),
        dropped: merged.dropped,
        points: merged.origins,
    };
    Some((
        DeviceConfig {
            name: name.to_string(),
            bus: bus?,
            unit: unit?,
            poll: poll?,
            phase: phase?,
            max_registers: limits.max_registers,
            max_gap: limits.max_gap,
            offline_after: offline_after? as u32,
            enabled: enabled?,
            profile: profile_id,
            points: pts.into_iter().map(|p| p.spec).collect(),
            computed: comp.into_iter().map(|c| c.spec).collect(),
            report: report?,
            deadbands,
            report_last: report_last.into_iter().collect(),
        },
        unit_span,
        origins,
    ))
}
