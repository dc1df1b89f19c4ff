//! The `[remote]` section: the Ed25519 public keys that may sign commands and config pushes,
//! the unsigned opt-in, the confirm window and history depth of config pushes, and
//! `[remote.writes]`, the allow-list of points remote commands may write (each must exist and
//! be writable; optional min/max on numeric points). Every error carries its key path and
//! line:column, like every other section; no I/O. Keys are parsed by `remote::sign` (a leaf:
//! it depends on nothing in the crate), so `config` stays below `remote::request`.

use std::time::Duration;

use super::diag::Diags;
use super::doc::{Field, Section};
use super::{DeviceConfig, RemoteConfig, RemoteWrite};
use crate::model::DataType;
use crate::remote::sign;

/// Bounds of `confirm_within` (also of a push's own `confirm_within`).
/// 5 s is the floor: below it a broker reconnect cannot be told from a dead uplink.
pub const MIN_CONFIRM_WITHIN: Duration = Duration::from_secs(5);
pub const MAX_CONFIRM_WITHIN: Duration = Duration::from_secs(86_400);
/// Most public keys in `[remote] keys`.
pub const MAX_KEYS: usize = 16;
/// Bounds of `keep_configs`.
pub const MAX_KEEP_CONFIGS: i64 = 50;

/// Parse `[remote]` against the parsed devices (for `[remote.writes]`).
pub(crate) fn parse_remote(
    d: &mut Diags<'_>,
    mut sec: Section<'_, '_>,
    devices: &[DeviceConfig],
) -> Option<RemoteConfig> {
    let def = RemoteConfig::default();
    let mut ok = true;
    let keys_path = sec.key_path("keys");
    let keys = match sec.strings_spanned(d, "keys") {
        Field::Value(items, span) => {
            if items.len() > MAX_KEYS {
                d.error(
                    &keys_path,
                    Some(span),
                    format!("{} keys: at most {MAX_KEYS} are allowed", items.len()),
                );
                ok = false;
            }
            let mut keys: Vec<[u8; 32]> = Vec::new();
            for (i, (text, sp)) in items.iter().enumerate().take(MAX_KEYS) {
                match sign::parse_public_key(text.trim()) {
                    Ok(k) if keys.contains(&k) => {
                        d.error(
                            &format!("{keys_path}[{i}]"),
                            Some(sp.clone()),
                            format!("key {} is listed twice", sign::key_id(&k)),
                        );
                        ok = false;
                    }
                    Ok(k) => keys.push(k),
                    Err(why) => {
                        d.error(
                            &format!("{keys_path}[{i}]"),
                            Some(sp.clone()),
                            format!(
                                "not an Ed25519 public key: {why} (`gasdtu keygen` prints one)"
                            ),
                        );
                        ok = false;
                    }
                }
            }
            Some(keys)
        }
        Field::Absent => Some(Vec::new()),
        Field::Invalid => None,
    };
    let unsigned = sec.boolean(d, "allow_unsigned");
    let unsigned_span = unsigned.span();
    let allow_unsigned = unsigned.or(def.allow_unsigned);
    let confirm_within = sec
        .duration(d, "confirm_within", MIN_CONFIRM_WITHIN, MAX_CONFIRM_WITHIN)
        .or(def.confirm_within);
    let keep_configs = sec
        .int(d, "keep_configs", 1, MAX_KEEP_CONFIGS)
        .or(def.keep_configs as i64);
    let writes = match sec.table(d, "writes") {
        Field::Value(w, _) => parse_writes(d, w, devices),
        Field::Absent => Some(Vec::new()),
        Field::Invalid => None,
    };
    sec.finish(d, |_| None);

    if let (Some(keys), Some(true)) = (&keys, allow_unsigned) {
        let path = sec_path_key(&keys_path, "allow_unsigned");
        if keys.is_empty() {
            d.warn(
                &path,
                unsigned_span,
                "unsigned writes and config pushes are accepted: anyone who can publish to the \
                 broker can operate valves and replace this configuration (configure [remote] \
                 keys instead)",
            );
        } else {
            d.warn(
                &path,
                unsigned_span,
                "has no effect: with keys, every request must be signed",
            );
        }
    }
    if !ok {
        return None;
    }
    Some(RemoteConfig {
        keys: keys?,
        allow_unsigned: allow_unsigned?,
        confirm_within: confirm_within?,
        keep_configs: keep_configs? as usize,
        writes: writes?,
    })
}

/// `remote.keys` -> `remote.<key>`.
fn sec_path_key(keys_path: &str, key: &str) -> String {
    match keys_path.rsplit_once('.') {
        Some((base, _)) => format!("{base}.{key}"),
        None => key.to_string(),
    }
}

/// `[remote.writes]`: `"device.point" = {}` or `{ min = .., max = .. }`.
fn parse_writes(
    d: &mut Diags<'_>,
    mut sec: Section<'_, '_>,
    devices: &[DeviceConfig],
) -> Option<Vec<RemoteWrite>> {
    let mut out = Vec::new();
    let mut ok = true;
    for (name, mut entry) in sec.named_tables(d) {
        let path = entry.path.clone();
        let span = entry.span.clone();
        let min = entry.float(d, "min");
        let max = entry.float(d, "max");
        let (min_span, max_span) = (min.span(), max.span());
        let (min, max) = match (min.opt(), max.opt()) {
            (Ok(a), Ok(b)) => (a, b),
            _ => {
                ok = false;
                (None, None)
            }
        };
        entry.finish(d, |_| None);
        let Some((dev, point)) = name.split_once('.') else {
            d.error(
                &path,
                span,
                format!(
                    "{name:?} is not \"device.point\" (quote the key: \"valve1.close\" = {{}})"
                ),
            );
            ok = false;
            continue;
        };
        let Some(device) = devices.iter().find(|x| x.name == dev) else {
            d.error(&path, span, format!("no device `{dev}` in [devices]"));
            ok = false;
            continue;
        };
        let Some(spec) = device.points.iter().find(|p| p.name == point) else {
            let computed = device.computed.iter().any(|c| c.name == point);
            d.error(
                &path,
                span,
                if computed {
                    format!("`{point}` of device `{dev}` is a computed point: it cannot be written")
                } else {
                    format!("device `{dev}` has no point `{point}`")
                },
            );
            ok = false;
            continue;
        };
        if !spec.writable {
            d.error(
                &path,
                span,
                format!("point `{point}` of device `{dev}` is not writable (declare it `writable = true`)"),
            );
            ok = false;
            continue;
        }
        if min.is_some() || max.is_some() {
            let numeric = !matches!(
                spec.data_type,
                DataType::Bool | DataType::BitOfRegister(_) | DataType::String(_)
            );
            if !numeric {
                d.error(
                    &path,
                    min_span.clone().or(max_span.clone()).or(span.clone()),
                    format!("`{point}` of device `{dev}` is not numeric: min and max apply to numbers only"),
                );
                ok = false;
                continue;
            }
        }
        if let (Some(a), Some(b)) = (min, max) {
            if a > b {
                d.error(
                    &format!("{path}.min"),
                    min_span,
                    format!("min ({a}) is above max ({b})"),
                );
                ok = false;
                continue;
            }
        }
        out.push(RemoteWrite {
            device: dev.to_string(),
            point: point.to_string(),
            min,
            max,
        });
    }
    sec.finish(d, |_| None);
    out.sort_by(|a, b| (&a.device, &a.point).cmp(&(&b.device, &b.point)));
    ok.then_some(out)
}
