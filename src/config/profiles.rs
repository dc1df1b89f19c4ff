//! Device profiles: reusable register maps that put a vendor's registers onto the standard gas
//! data model (canonical point names and units). Profiles are TOML files searched in the
//! configured profile directories, then among the built-in copies of configs/profiles/*.toml
//! compiled into the binary, so a gateway works with no profile files installed. Profile
//! files are validated with the same point code as inline device points; their errors name
//! the profile file. `<state_dir>/profiles/` (profiles installed by config pushes) is always
//! searched before the configured directories; profiles carried by a push are validated in
//! memory (`parse_pushed`) and shadow files of the same name. Reading a profile file is the
//! only I/O here.

use std::path::{Path, PathBuf};

use crate::modbus::planner::Limits;
use crate::model::{ComputedSpec, PointSpec, WordOrder};

use super::diag::{ConfigError, Diags};
use super::doc::{parse_document, Field, Section};
use super::points::{self, ComputedDraft, PointDraft};

/// A resolved, validated profile.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    pub id: String,
    pub name: String,
    /// The published document the register map follows (vendor manual and version).
    pub follows: String,
    pub description: String,
    /// Order of multi-register values unless a point names its own (a device's `order`
    /// replaces this).
    pub default_order: WordOrder,
    pub max_registers: Option<u16>,
    pub max_gap: Option<u16>,
    pub points: Vec<PointSpec>,
    pub computed: Vec<ComputedSpec>,
}

static BUILTIN: &[(&str, &str)] = &[
    (
        "evc-dcba",
        include_str!("../../configs/profiles/evc-dcba.toml"),
    ),
    (
        "mvt-dpspt",
        include_str!("../../configs/profiles/mvt-dpspt.toml"),
    ),
    (
        "turbine-bcd",
        include_str!("../../configs/profiles/turbine-bcd.toml"),
    ),
    (
        "turbine-bcd48",
        include_str!("../../configs/profiles/turbine-bcd48.toml"),
    ),
    (
        "pt-float",
        include_str!("../../configs/profiles/pt-float.toml"),
    ),
    (
        "pt-int16",
        include_str!("../../configs/profiles/pt-int16.toml"),
    ),
];

/// The profiles compiled into the binary: (id, TOML text).
pub fn builtin() -> &'static [(&'static str, &'static str)] {
    BUILTIN
}

/// Find profile `id`: `<dir>/<id>.toml` in each of `dirs` in order (missing directories and
/// files are skipped), then the built-in profiles. Errors name the profile file.
pub fn resolve_profile(id: &str, dirs: &[PathBuf]) -> Result<Profile, Vec<ConfigError>> {
    match find_profile(id, dirs) {
        Ok(Some(p)) => Ok(p),
        Ok(None) => Err(vec![ConfigError {
            origin: "profile".to_string(),
            path: String::new(),
            line: None,
            column: None,
            message: not_found_message(id, dirs),
        }]),
        Err(e) => Err(e),
    }
}

pub(crate) fn not_found_message(id: &str, dirs: &[PathBuf]) -> String {
    let searched: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
    let builtins: Vec<&str> = BUILTIN.iter().map(|(i, _)| *i).collect();
    format!(
        "unknown profile {id:?}: no {id}.toml in [{}] and no built-in profile of that name (built-in: {})",
        searched.join(", "),
        builtins.join(", ")
    )
}

/// Like `resolve_profile`, but "not found" is `Ok(None)` so callers can report it where the
/// profile was asked for.
pub(crate) fn find_profile(
    id: &str,
    dirs: &[PathBuf],
) -> Result<Option<Profile>, Vec<ConfigError>> {
    if !points::valid_name(id) {
        return Err(vec![ConfigError {
            origin: "profile".to_string(),
            path: String::new(),
            line: None,
            column: None,
            message: format!("invalid profile id {id:?}: use 1 to 64 of A-Z a-z 0-9 _ -"),
        }]);
    }
    for dir in dirs {
        let path = dir.join(format!("{id}.toml"));
        match super::file::read_bounded(&path, super::file::MAX_CONFIG_BYTES) {
            Ok(bytes) => {
                let origin = path.display().to_string();
                return match super::file::utf8(bytes) {
                    Ok(text) => parse_profile_as(&text, &origin, id).map(Some),
                    Err(bad) => Err(vec![ConfigError {
                        origin,
                        path: String::new(),
                        line: Some(bad.line),
                        column: Some(bad.column),
                        message: bad.message(),
                    }]),
                };
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                return Err(vec![ConfigError {
                    origin: path.display().to_string(),
                    path: String::new(),
                    line: None,
                    column: None,
                    message: format!("cannot read profile: {e}"),
                }])
            }
        }
    }
    match BUILTIN.iter().find(|(i, _)| *i == id) {
        Some((_, text)) => parse_profile_as(text, &format!("builtin:{id}"), id).map(Some),
        None => Ok(None),
    }
}

fn parse_profile_as(text: &str, origin: &str, id: &str) -> Result<Profile, Vec<ConfigError>> {
    let p = parse_profile(text, origin)?;
    if p.id != id {
        return Err(vec![ConfigError {
            origin: origin.to_string(),
            path: "profile.id".to_string(),
            line: None,
            column: None,
            message: format!(
                "profile id {:?} does not match its file name {id}.toml",
                p.id
            ),
        }]);
    }
    Ok(p)
}

/// Parse and validate one profile document. `origin` names it in errors.
pub fn parse_profile(text: &str, origin: &str) -> Result<Profile, Vec<ConfigError>> {
    let mut d = Diags::new(origin, text);
    let Some(doc) = parse_document(&mut d, text) else {
        return Err(d.take_errors());
    };
    let mut root = Section::new(String::new(), None, doc.get_ref());
    let header = match root.table(&mut d, "profile") {
        Field::Value(sec, _) => parse_header(&mut d, sec),
        Field::Absent => {
            d.error(
                "profile",
                Some(0..1),
                "missing [profile] section (id, name, follows, description, default_order)",
            );
            None
        }
        Field::Invalid => None,
    };
    let default_order = header.as_ref().map(|h| h.default_order).unwrap_or_default();
    let entries = points::parse_entries(&mut d, &mut root, default_order);
    root.finish(&mut d, |_| None);
    if entries.points.is_empty() && entries.ok {
        d.error_at_end(
            "points",
            "a profile needs at least one [points.<name>] entry",
        );
    }
    if let Some(h) = &header {
        let limits = Limits {
            max_registers: h.max_registers.unwrap_or(125),
            max_gap: h.max_gap.unwrap_or(10),
        };
        points::check_set(
            &mut d,
            "",
            &entries.points,
            &entries.computed,
            &entries.broken,
            limits,
        );
    }
    match header {
        Some(h) if !d.has_errors() => Ok(Profile {
            id: h.id,
            name: h.name,
            follows: h.follows,
            description: h.description,
            default_order: h.default_order,
            max_registers: h.max_registers,
            max_gap: h.max_gap,
            points: entries
                .points
                .into_iter()
                .map(|p: PointDraft| p.spec)
                .collect(),
            computed: entries
                .computed
                .into_iter()
                .map(|c: ComputedDraft| c.spec)
                .collect(),
        }),
        _ => Err(d.take_errors()),
    }
}

struct Header {
    id: String,
    name: String,
    follows: String,
    description: String,
    default_order: WordOrder,
    max_registers: Option<u16>,
    max_gap: Option<u16>,
}

fn parse_header(d: &mut Diags<'_>, mut sec: Section<'_, '_>) -> Option<Header> {
    let f = sec.string(d, "id");
    let id = match sec.required(d, "id", "the profile's id, equal to its file name", f) {
        Field::Value(s, sp) => {
            points::check_name(d, &sec.key_path("id"), Some(sp), &s);
            Some(s)
        }
        _ => None,
    };
    let text = |sec: &mut Section<'_, '_>, d: &mut Diags<'_>, key: &str, what: &str| {
        let f = sec.string(d, key);
        match sec.required(d, key, what, f) {
            Field::Value(s, _) => Some(s),
            _ => None,
        }
    };
    let name = text(&mut sec, d, "name", "a human name");
    let follows = text(
        &mut sec,
        d,
        "follows",
        "the document the register map follows",
    );
    let description = text(&mut sec, d, "description", "what the device is");
    let f = sec.string(d, "default_order");
    let default_order = match sec.required(d, "default_order", "ABCD, CDAB, BADC or DCBA", f) {
        Field::Value(s, sp) => match WordOrder::parse(&s) {
            Some(o) => Some(o),
            None => {
                d.error(
                    &sec.key_path("default_order"),
                    Some(sp),
                    format!("unknown order {s:?}: use ABCD, CDAB, BADC or DCBA"),
                );
                None
            }
        },
        _ => None,
    };
    let max_registers = sec.int(d, "max_registers", 1, 125).opt();
    let max_gap = sec.int(d, "max_gap", 0, 125).opt();
    sec.finish(d, |_| None);
    Some(Header {
        id: id?,
        name: name?,
        follows: follows?,
        description: description?,
        default_order: default_order?,
        max_registers: max_registers.ok()?.map(|v| v as u16),
        max_gap: max_gap.ok()?.map(|v| v as u16),
    })
}

/// Resolve relative profile directories against the config file's directory.
pub(crate) fn resolve_dirs(dirs: &[String], base_dir: &Path) -> Vec<PathBuf> {
    dirs.iter()
        .map(|d| {
            let p = PathBuf::from(d);
            if p.is_absolute() {
                p
            } else {
                base_dir.join(p)
            }
        })
        .collect()
}

/// The name of the directory under `state_dir` that holds the profiles installed by config
/// pushes (managed by `remote::install`; a link to the profile set in force).
pub const STATE_PROFILES: &str = "profiles";

/// At most this many profiles travel with one config push.
pub const MAX_PUSHED_PROFILES: usize = 32;

/// The directories searched for profiles, in order: `<state_dir>/profiles`, then `configured`.
pub(crate) fn search_dirs(state_dir: &Path, configured: &[PathBuf]) -> Vec<PathBuf> {
    let mut dirs = Vec::with_capacity(configured.len() + 1);
    dirs.push(state_dir.join(STATE_PROFILES));
    dirs.extend(configured.iter().cloned());
    dirs
}

/// Validate the profiles a config push carries (name, TOML text). Each valid one maps to
/// `Some(profile)`, an invalid one to `None` (a device naming it is then "unavailable") with
/// its errors, named `push:<name>.toml`. More than `MAX_PUSHED_PROFILES` is one error and
/// none of them is looked at; a name given twice is an error.
pub(crate) fn parse_pushed(
    extra: &[(String, String)],
) -> (Vec<(String, Option<Profile>)>, Vec<ConfigError>) {
    let mut out: Vec<(String, Option<Profile>)> = Vec::new();
    let mut errors = Vec::new();
    let err = |origin: String, message: String| ConfigError {
        origin,
        path: String::new(),
        line: None,
        column: None,
        message,
    };
    if extra.len() > MAX_PUSHED_PROFILES {
        errors.push(err(
            "push".to_string(),
            format!(
                "{} profiles pushed: at most {MAX_PUSHED_PROFILES} travel with one config",
                extra.len()
            ),
        ));
        return (out, errors);
    }
    for (name, text) in extra {
        let origin = format!("push:{}.toml", super::escape(name));
        if !points::valid_name(name) {
            errors.push(err(
                origin,
                format!(
                    "invalid pushed profile name {:?}: use 1 to 64 of A-Z a-z 0-9 _ -",
                    super::escape(name)
                ),
            ));
            continue;
        }
        if out.iter().any(|(n, _)| n == name) {
            errors.push(err(origin, format!("profile {name:?} is pushed twice")));
            continue;
        }
        match parse_profile_as(text, &origin, name) {
            Ok(p) => out.push((name.clone(), Some(p))),
            Err(e) => {
                errors.extend(e);
                out.push((name.clone(), None));
            }
        }
    }
    (out, errors)
}
