//! The two small top-level sections: `[gateway]` (id, state directory, profile directories,
//! log level) and `[store]` (the buffer's bounds, sizes with units). Validation only: the one
//! I/O is checking that an existing `state_dir` is a directory.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::diag::Diags;
use super::doc::{Field, Section};
use super::points;
use super::profiles;
use super::{GatewayConfig, StoreConfig};

/// Default directories searched for profiles (the built-in profiles always come last).
pub const DEFAULT_PROFILE_DIRS: &[&str] = &["/etc/gasdtu/profiles", "/usr/share/gasdtu/profiles"];
pub const DEFAULT_STATE_DIR: &str = "/var/lib/gasdtu";

pub(super) fn default_dirs() -> Vec<String> {
    DEFAULT_PROFILE_DIRS.iter().map(|s| s.to_string()).collect()
}

pub(super) fn parse_gateway(
    d: &mut Diags<'_>,
    mut sec: Section<'_, '_>,
    base_dir: &Path,
) -> Option<GatewayConfig> {
    let f = sec.string(d, "id");
    let id = match sec.required(d, "id", "this gateway's id, [A-Za-z0-9_-]{1,64}", f) {
        Field::Value(s, sp) => {
            if points::valid_name(&s) {
                Some(s)
            } else {
                d.error(
                    &sec.key_path("id"),
                    Some(sp),
                    format!("invalid gateway id {s:?}: use 1 to 64 of A-Z a-z 0-9 _ - (it becomes an MQTT topic level)"),
                );
                None
            }
        }
        _ => None,
    };
    let state_dir = match sec.string(d, "state_dir") {
        Field::Value(s, sp) if s.is_empty() => {
            d.error(&sec.key_path("state_dir"), Some(sp), "must not be empty");
            None
        }
        // Relative to the config file's directory, as profile_dirs (not to the working
        // directory, which is / under systemd).
        Field::Value(s, sp) => match std::fs::metadata(resolve_path(&s, base_dir)) {
            // A missing directory is created by the daemon; anything else in its place is not
            // usable and would only fail at start.
            Ok(m) if !m.is_dir() => {
                d.error(
                    &sec.key_path("state_dir"),
                    Some(sp),
                    format!("{s:?} exists and is not a directory"),
                );
                None
            }
            _ => Some(s),
        },
        f => f.or(DEFAULT_STATE_DIR.to_string()),
    };
    let profile_dirs = sec.strings(d, "profile_dirs").or(default_dirs());
    let log_level = match sec.string(d, "log_level") {
        Field::Value(s, sp) => {
            if tracing_subscriber::EnvFilter::try_new(&s).is_ok() && !s.trim().is_empty() {
                Some(s)
            } else {
                d.error(
                    &sec.key_path("log_level"),
                    Some(sp),
                    format!("invalid log level {s:?}: use error, warn, info, debug, trace or a tracing filter"),
                );
                None
            }
        }
        f => f.or("info".to_string()),
    };
    let commissioned = sec.boolean(d, "commissioned").or(true);
    let socket = match sec.string(d, "socket") {
        Field::Value(s, sp) if s.is_empty() => {
            d.error(&sec.key_path("socket"), Some(sp), "must not be empty");
            None
        }
        f => f.opt().ok().map(|s| s.map(|s| resolve_path(&s, base_dir))),
    };
    sec.finish(d, |_| None);
    Some(GatewayConfig {
        id: id?,
        state_dir: resolve_path(&state_dir?, base_dir),
        profile_dirs: profiles::resolve_dirs(&profile_dirs?, base_dir),
        log_level: log_level?,
        commissioned: commissioned?,
        socket: socket?,
    })
}

/// `p` as is when absolute, else under `base_dir` (the config file's directory).
pub fn resolve_path(p: &str, base_dir: &Path) -> PathBuf {
    let p = PathBuf::from(p);
    if p.is_absolute() {
        p
    } else {
        base_dir.join(p)
    }
}

/// `[store]`: bounds of the buffer.
pub(super) fn parse_store(d: &mut Diags<'_>, mut sec: Section<'_, '_>) -> Option<StoreConfig> {
    let def = StoreConfig::default();
    let max_bytes = parse_size(d, &mut sec, "max_bytes", 1 << 20, 1 << 40).or(def.max_bytes);
    let day = Duration::from_secs(86400);
    let max_age = sec
        .duration(d, "max_age", Duration::from_secs(3600), day * 3650)
        .or(def.max_age);
    let history = sec
        .duration(d, "history", Duration::ZERO, day * 3650)
        .or(def.history);
    sec.finish(d, |_| None);
    Some(StoreConfig {
        max_bytes: max_bytes?,
        max_age: max_age?,
        history: history?,
    })
}

/// A byte size: an integer, or a string with a unit (`"512MiB"`, `"2GB"`, `"64KiB"`).
fn parse_size(
    d: &mut Diags<'_>,
    sec: &mut Section<'_, '_>,
    key: &str,
    lo: u64,
    hi: u64,
) -> Field<u64> {
    let path = sec.key_path(key);
    let range = format!("out of range {lo}..={hi} bytes (1 MiB ..= 1 TiB)");
    // Try the string form first, then the integer form (each records its own type error).
    if let Field::Value(n, sp) = sec.int(&mut Diags::new("", ""), key, 0, i64::MAX) {
        let n = n as u64;
        if n < lo || n > hi {
            d.error(&path, Some(sp), format!("{n} is {range}"));
            return Field::Invalid;
        }
        return Field::Value(n, sp);
    }
    match sec.string(&mut Diags::new("", ""), key) {
        Field::Value(s, sp) => {
            let t = s.trim();
            let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
            let (num, unit) = t.split_at(split);
            let mult: Option<u64> = match unit.trim() {
                "" | "B" => Some(1),
                "KB" | "kB" => Some(1000),
                "MB" => Some(1_000_000),
                "GB" => Some(1_000_000_000),
                "KiB" => Some(1 << 10),
                "MiB" => Some(1 << 20),
                "GiB" => Some(1 << 30),
                _ => None,
            };
            match (num.parse::<u64>().ok(), mult) {
                (Some(n), Some(m)) => match n.checked_mul(m) {
                    Some(v) if v >= lo && v <= hi => Field::Value(v, sp),
                    _ => {
                        d.error(&path, Some(sp), format!("{s:?} is {range}"));
                        Field::Invalid
                    }
                },
                _ => {
                    d.error(
                        &path,
                        Some(sp),
                        format!("invalid size {s:?}: write bytes as an integer or e.g. \"512MiB\", \"2GB\""),
                    );
                    Field::Invalid
                }
            }
        }
        Field::Absent => Field::Absent,
        Field::Invalid => {
            let msg = match sec.int(&mut Diags::new("", ""), key, i64::MIN, i64::MAX) {
                Field::Value(n, _) => format!("{n} is {range}"),
                _ => "expected a size: an integer (bytes) or a string such as \"512MiB\"".into(),
            };
            d.error(&path, sec.value_span(key), msg);
            Field::Invalid
        }
    }
}
