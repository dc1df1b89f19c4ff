//! `gasdtu push CONFIG.toml --gateway ID [...] [--version V] [--profile FILE ...]`: validates
//! the config locally with exactly the code of `gasdtu check` (plus the pushed profiles) and
//! refuses to send one it refuses; otherwise builds the push body (sha256, profiles), signs it
//! per gateway, publishes to `<root>/config/set` and waits for a retained `config/state` about
//! THIS push (its `push` field names our version and sha256; the state of an earlier push is
//! ignored). Prints one line per gateway. Exit 0 when every gateway applied it, 1 when one
//! rejected or rolled it back (or local validation failed), 2 when one did not answer in time
//! (still `pending_confirm` included) or the broker could not be reached.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::config::read_bounded;
use crate::remote::request::{envelope, valid_version, MAX_PUSH_PAYLOAD, MAX_PUSH_PROFILES};
use crate::remote::sign::{hex, sha256, Kind};

use super::cmd::{prepare, OpsArgs};
use super::ops::{self, esc, Match, Outcome, Request};
use super::Global;

#[derive(Debug, clap::Args)]
pub struct PushArgs {
    /// The configuration to push.
    pub file: PathBuf,
    #[command(flatten)]
    pub common: OpsArgs,
    /// Version label (default: the file's sha256 prefix and the time).
    #[arg(long)]
    pub version: Option<String>,
    /// Profiles to send with it (name = file stem), at most 32.
    #[arg(long = "profile")]
    pub profiles: Vec<PathBuf>,
    /// Print each gateway's raw config/state JSON instead of a summary line.
    #[arg(long)]
    pub json: bool,
}

/// The push body for gateway `gw` (pure).
pub fn body(
    version: &str,
    gw: &str,
    expires_ms: i64,
    config: &str,
    profiles: &[(String, String)],
) -> String {
    let profiles: serde_json::Map<String, Value> = profiles
        .iter()
        .map(|(n, t)| (n.clone(), json!(t)))
        .collect();
    json!({
        "version": version, "gw": gw, "expires": expires_ms,
        "sha256": hex(&sha256(config.as_bytes())), "config": config, "profiles": profiles,
    })
    .to_string()
}

/// Classify a `config/state` for the push `(version, sha)` published as bytes whose sha256 is
/// `request_sha`. A state naming `request_sha256` is ours exactly when it names our bytes (a
/// refusal, also one whose body could not be read). Otherwise a state whose `push` names this
/// version and sha256 is ours; one naming only our version, or naming no push at all (older
/// gateways), counts only when `live` (published after we subscribed, so after our push went
/// out), never a retained one from earlier.
pub fn classify(version: &str, sha: &str, request_sha: &str, v: &Value, live: bool) -> Match {
    let ours = if let Some(r) = v.get("request_sha256").and_then(Value::as_str) {
        r == request_sha
    } else {
        match v.get("push") {
            Some(push) => {
                let same_version = push.get("version").and_then(Value::as_str) == Some(version);
                match push.get("sha256").and_then(Value::as_str) {
                    Some(s) => same_version && s == sha,
                    None => same_version && live,
                }
            }
            None => live,
        }
    };
    match (ours, v.get("status").and_then(Value::as_str)) {
        (false, _) => Match::Other,
        (true, Some("pending_confirm")) => Match::Interim,
        (true, _) => Match::Final,
    }
}

/// The line for one gateway's state and its exit code.
pub fn state_line(gw: &str, v: &Value) -> (String, u8) {
    let status = v.get("status").and_then(Value::as_str).unwrap_or("?");
    let mut line = format!("{gw}: {status}");
    if let Some(r) = v.get("reason").and_then(Value::as_str) {
        line.push_str(&format!(": {r}"));
    }
    let errors = v.get("errors").and_then(Value::as_array);
    for e in errors.into_iter().flatten().take(20) {
        let path = e.get("path").and_then(Value::as_str).unwrap_or("");
        let msg = e.get("message").and_then(Value::as_str).unwrap_or("");
        let at = match (
            e.get("line").and_then(Value::as_u64),
            e.get("col").and_then(Value::as_u64),
        ) {
            (Some(l), Some(c)) => format!(" ({l}:{c})"),
            _ => String::new(),
        };
        line.push_str(&format!("; {path}{at}: {msg}"));
    }
    (esc(&line), if status == "applied" { 0 } else { 1 })
}

fn read_text(path: &Path, limit: u64) -> Result<String, String> {
    let shown = esc(&path.display().to_string());
    let b = read_bounded(path, limit)
        .map_err(|e| format!("cannot read {shown}: {}", esc(&e.to_string())))?;
    String::from_utf8(b).map_err(|_| format!("{shown}: not UTF-8"))
}

pub async fn run(args: PushArgs, _global: &Global) -> anyhow::Result<u8> {
    // Local validation first: nothing is published for a config `check` refuses.
    let limit = MAX_PUSH_PAYLOAD as u64;
    let config = match read_text(&args.file, limit) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(2);
        }
    };
    if args.profiles.len() > MAX_PUSH_PROFILES {
        eprintln!("error: at most {MAX_PUSH_PROFILES} profiles");
        return Ok(2);
    }
    let mut profiles = Vec::new();
    for p in &args.profiles {
        let name = p
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("")
            .to_string();
        match read_text(p, limit) {
            Ok(t) => profiles.push((name, t)),
            Err(e) => {
                eprintln!("error: {e}");
                return Ok(2);
            }
        }
    }
    let origin = args.file.display().to_string();
    let base = args
        .file
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let loaded = match crate::config::parse_with_profiles(&config, &origin, &base, &profiles) {
        Ok(l) => l,
        Err(errors) => {
            for e in &errors {
                eprintln!("error: {e}");
            }
            let n = crate::config::error_count(&errors);
            println!(
                "{}: {n} error{}: not pushed",
                esc(&origin),
                if n == 1 { "" } else { "s" }
            );
            return Ok(1);
        }
    };
    for w in &loaded.warnings {
        eprintln!("warning: {w}");
    }
    // One config for many gateways is the operator's choice, but say so when the gateway id
    // it sets differs from a target's.
    for gw in &args.common.gateways {
        if loaded.config.gateway.id != *gw {
            eprintln!(
                "warning: {} sets [gateway] id = \"{}\", pushed to gateway {}",
                esc(&origin),
                esc(&loaded.config.gateway.id),
                esc(gw)
            );
        }
    }
    let p = match prepare(&args.common) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(2);
        }
    };
    let sha = hex(&sha256(config.as_bytes()));
    let version = args
        .version
        .clone()
        .unwrap_or_else(|| format!("{}-{}", &sha[..12], ops::now_ms()));
    if !valid_version(&version) {
        eprintln!(
            "error: --version {}: 1-64 of [A-Za-z0-9._:+-]",
            esc(&version)
        );
        return Ok(2);
    }
    let mut requests = Vec::new();
    for gw in &args.common.gateways {
        let root = p.cfg.root(gw);
        let b = body(&version, gw, p.expires_ms, &config, &profiles);
        let payload = envelope(&b, p.key.as_ref().map(|k| (k, Kind::Config, gw.as_str())));
        if payload.len() > MAX_PUSH_PAYLOAD {
            eprintln!(
                "error: the push is {} bytes, more than {MAX_PUSH_PAYLOAD}",
                payload.len()
            );
            return Ok(2);
        }
        requests.push(Request {
            gw: gw.clone(),
            topic: format!("{root}/config/set"),
            payload,
            answer_topic: format!("{root}/config/state"),
        });
    }
    let request_shas: Vec<String> = requests.iter().map(|r| hex(&sha256(&r.payload))).collect();
    let outcomes = ops::exchange(&p.cfg, &requests, p.timeout, true, |i, v, live| {
        classify(&version, &sha, &request_shas[i], v, live)
    })
    .await;
    let mut code = 0u8;
    for (r, o) in requests.iter().zip(outcomes) {
        let gw = esc(&r.gw);
        let (line, c) = match o {
            Outcome::Answered(v) if args.json => (v.to_string(), state_line(&r.gw, &v).1),
            Outcome::Answered(v) => state_line(&r.gw, &v),
            Outcome::Pending(_) => (
                format!("{gw}: pending_confirm (not confirmed within the timeout)"),
                2,
            ),
            Outcome::Queued | Outcome::TimedOut => (
                format!(
                    "{gw}: timeout (no config/state for {} within {})",
                    esc(&version),
                    humantime::format_duration(p.timeout)
                ),
                2,
            ),
            Outcome::Failed(e) => (format!("{gw}: error cannot reach the broker: {e}"), 2),
        };
        println!("{line}");
        code = code.max(c);
    }
    Ok(code)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remote::request::parse_push;

    #[test]
    fn the_body_parses_on_the_gateway_side() {
        let now = 1_800_000_000_000;
        let b = body(
            "v1",
            "gw-1",
            now + 60_000,
            "[gateway]\nid = \"gw-1\"\n",
            &[("p".into(), "x = 1".into())],
        );
        let p = parse_push(&b, "gw-1", now).unwrap_or_else(|e| panic!("{:?}", e.error));
        assert_eq!(p.version, "v1");
        assert_eq!(p.profiles, vec![("p".to_string(), "x = 1".to_string())]);
    }

    #[test]
    fn only_the_state_about_this_push_counts() {
        let s = |v: &str, sha: &str, st: &str| json!({"status": st, "push": {"version": v, "sha256": sha}});
        let req =
            |r: &str| json!({"status": "rejected", "push": {"version": null}, "request_sha256": r});
        // (state, retained answer, live answer)
        let cases = [
            (json!({"status": "rejected"}), Match::Other, Match::Final),
            (s("v1", "aa", "applied"), Match::Final, Match::Final),
            (s("v1", "aa", "rejected"), Match::Final, Match::Final),
            (s("v1", "aa", "rolled_back"), Match::Final, Match::Final),
            (
                s("v1", "aa", "pending_confirm"),
                Match::Interim,
                Match::Interim,
            ),
            (s("v0", "aa", "applied"), Match::Other, Match::Other),
            (s("v1", "bb", "applied"), Match::Other, Match::Other),
            // Our bytes, refused before the body was read: ours, retained or live.
            (req("rr"), Match::Final, Match::Final),
            // Another operator's refused request, live at the same time: never ours.
            (req("other"), Match::Other, Match::Other),
            // Only our version, no sha (an older gateway's refusal): only live.
            (
                json!({"status": "rejected", "push": {"version": "v1"}}),
                Match::Other,
                Match::Final,
            ),
        ];
        for (v, retained, live) in cases {
            assert_eq!(classify("v1", "aa", "rr", &v, false), retained, "{v}");
            assert_eq!(classify("v1", "aa", "rr", &v, true), live, "{v} live");
        }
    }

    #[test]
    fn state_lines_name_status_and_errors() {
        let v = json!({"status":"rejected","errors":[{"path":"devices.x.unit","line":3,"col":8,"message":"bad"}]});
        assert_eq!(
            state_line("gw", &v),
            ("gw: rejected; devices.x.unit (3:8): bad".into(), 1)
        );
        assert_eq!(state_line("gw", &json!({"status":"applied"})).1, 0);
        assert_eq!(
            state_line("gw", &json!({"status":"rolled_back","reason":"no broker"})).0,
            "gw: rolled_back: no broker"
        );
    }
}
