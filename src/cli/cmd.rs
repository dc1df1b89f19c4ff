//! `gasdtu cmd --gateway ID [--gateway ID ...] <op> [args]`: sends one signed command to each
//! gateway over MQTT (`<root>/cmd/req`) with the `[ops]` connection file and prints one line per
//! gateway from its result on `<root>/cmd/res` (or the raw result with `--json`). Exit 0 when
//! every result is `ok`, 1 when any is refused/error/expired/unknown_outcome, 2 when any timed
//! out or the broker could not be reached. `--no-wait` only publishes (offline gateways get it
//! from their persistent session before `--expires`). Body building is pure and unit tested.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{json, Value};

use crate::remote::request::{envelope, parse_rfc3339, valid_command_id};
use crate::remote::sign::Kind;

use super::ops::{self, esc, Match, Outcome, Request};
use super::Global;

#[derive(Debug, clap::Args)]
pub struct OpsArgs {
    /// The `[ops]` connection file.
    #[arg(long, default_value = "~/.config/gasdtu/ops.toml")]
    pub ops: String,
    /// Target gateway id (repeat for several).
    #[arg(long = "gateway", short = 'g', required = true)]
    pub gateways: Vec<String>,
    /// How long to wait for the answers (default: the ops file's `timeout`).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub timeout: Option<Duration>,
    /// Expiry of the request from now (default: the ops file's `expires`; at most 7 days).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub expires: Option<Duration>,
}

#[derive(Debug, clap::Args)]
pub struct CmdArgs {
    #[command(flatten)]
    pub common: OpsArgs,
    /// Print each gateway's raw result JSON instead of a summary line.
    #[arg(long)]
    pub json: bool,
    /// Publish and return without waiting (an offline gateway runs it after reconnecting).
    #[arg(long)]
    pub no_wait: bool,
    /// Command id (default: ops-<unix ms>-<random>); the same id never runs twice.
    #[arg(long)]
    pub id: Option<String>,
    #[command(subcommand)]
    pub op: CmdOp,
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum CmdOp {
    /// Liveness.
    Ping,
    /// The gateway's status.
    Status,
    /// The running configuration (TOML).
    ConfigGet,
    /// Poll points now: DEV.POINT ...
    Read {
        #[arg(required = true)]
        points: Vec<String>,
    },
    /// Write a point allowed in `[remote.writes]`: DEV.POINT VALUE (true/false or a number).
    Write { point: String, value: String },
    /// Acknowledge an alarm occurrence.
    Ack {
        occurrence: u64,
        #[arg(long)]
        note: Option<String>,
    },
    /// Republish a device's history in [--from, --to] (RFC 3339 or unix ms).
    Resend {
        device: String,
        #[arg(long)]
        from: String,
        #[arg(long)]
        to: String,
    },
}

/// Resolve `~/` in the ops file path.
pub fn ops_path(s: &str) -> PathBuf {
    match (s.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => PathBuf::from(s),
    }
}

fn time_arg(s: &str) -> Result<i64, String> {
    if let Ok(ms) = s.parse::<i64>() {
        return Ok(ms);
    }
    parse_rfc3339(s).ok_or_else(|| format!("{}: not RFC 3339 or unix milliseconds", esc(s)))
}

fn split_point(s: &str) -> Result<(&str, &str), String> {
    match s.split_once('.') {
        Some((d, p)) if !d.is_empty() && !p.is_empty() => Ok((d, p)),
        _ => Err(format!("{}: expected DEVICE.POINT", esc(s))),
    }
}

/// `(op name, args)` of a command (pure; the gateway re-checks everything).
pub fn op_args(op: &CmdOp) -> Result<(&'static str, Value), String> {
    Ok(match op {
        CmdOp::Ping => ("ping", json!({})),
        CmdOp::Status => ("status", json!({})),
        CmdOp::ConfigGet => ("config/get", json!({})),
        CmdOp::Read { points } => {
            if points.len() > crate::remote::request::MAX_READ_POINTS {
                return Err(format!(
                    "at most {} points per read",
                    crate::remote::request::MAX_READ_POINTS
                ));
            }
            for p in points {
                split_point(p)?;
            }
            ("read", json!({ "points": points }))
        }
        CmdOp::Write { point, value } => {
            split_point(point)?;
            let v = match value.as_str() {
                "true" => json!(true),
                "false" => json!(false),
                s => match s.parse::<f64>() {
                    Ok(f) if f.is_finite() => json!(f),
                    _ => return Err(format!("{}: value must be true, false or a number", esc(s))),
                },
            };
            ("write", json!({ "point": point, "value": v }))
        }
        CmdOp::Ack { occurrence, note } => {
            if note
                .as_ref()
                .is_some_and(|n| n.chars().count() > crate::remote::request::MAX_NOTE_CHARS)
            {
                return Err(format!(
                    "--note: at most {} characters",
                    crate::remote::request::MAX_NOTE_CHARS
                ));
            }
            let mut a = json!({ "occurrence": occurrence });
            if let Some(n) = note {
                a["note"] = json!(n);
            }
            ("ack", a)
        }
        CmdOp::Resend { device, from, to } => {
            let from = time_arg(from).map_err(|e| format!("--from {e}"))?;
            let to = time_arg(to).map_err(|e| format!("--to {e}"))?;
            (
                "resend",
                json!({ "device": device, "from": from, "to": to }),
            )
        }
    })
}

/// The command body for gateway `gw`.
pub fn body(id: &str, gw: &str, expires_ms: i64, op: &str, args: &Value) -> String {
    json!({ "id": id, "gw": gw, "expires": expires_ms, "op": op, "args": args }).to_string()
}

/// Classify a `cmd/res` payload for command `id`.
pub fn classify(id: &str, v: &Value) -> Match {
    if v.get("id").and_then(Value::as_str) == Some(id) {
        Match::Final
    } else {
        Match::Other
    }
}

/// The summary line of one result and its exit code (0 ok, 1 anything else).
pub fn result_line(gw: &str, v: &Value) -> (String, u8) {
    let status = v.get("status").and_then(Value::as_str).unwrap_or("?");
    let gw = esc(gw);
    if status == "ok" {
        let r = v.get("result").map(Value::to_string).unwrap_or_default();
        (esc(&format!("{gw}: ok {r}")), 0)
    } else {
        let e = v.get("error").cloned().unwrap_or(Value::Null);
        let code = e.get("code").and_then(Value::as_str).unwrap_or("-");
        let msg = e.get("message").and_then(Value::as_str).unwrap_or("");
        (esc(&format!("{gw}: {status} {code}: {msg}")), 1)
    }
}

/// Checks shared by `cmd` and `push`: gateway ids, the ops file, key, timeout and expiry.
pub struct Prepared {
    pub cfg: ops::OpsConfig,
    pub key: Option<crate::remote::sign::SigningKey>,
    pub timeout: Duration,
    pub expires_ms: i64,
}

pub fn prepare(a: &OpsArgs) -> Result<Prepared, String> {
    if a.gateways.len() > ops::MAX_GATEWAYS {
        return Err(format!("at most {} gateways at once", ops::MAX_GATEWAYS));
    }
    for g in &a.gateways {
        if !valid_command_id(g) {
            return Err(format!("--gateway {}: not a gateway id", esc(g)));
        }
    }
    let cfg = ops::load(&ops_path(&a.ops)).map_err(|e| e.to_string())?;
    let key = ops::signing_key(&cfg).map_err(|e| e.to_string())?;
    let timeout = a.timeout.unwrap_or(cfg.timeout).min(ops::MAX_TIMEOUT);
    let expires = a.expires.unwrap_or(cfg.expires);
    if expires > ops::MAX_EXPIRES {
        return Err("--expires: at most 7 days".into());
    }
    let expires_ms = ops::now_ms() + expires.as_millis() as i64;
    Ok(Prepared {
        cfg,
        key,
        timeout,
        expires_ms,
    })
}

pub async fn run(args: CmdArgs, _global: &Global) -> anyhow::Result<u8> {
    let p = match prepare(&args.common) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(2);
        }
    };
    let (op, op_args) = match op_args(&args.op) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(2);
        }
    };
    let id = args
        .id
        .clone()
        .unwrap_or_else(|| ops::new_id(ops::now_ms()));
    if !valid_command_id(&id) {
        eprintln!("error: --id {}: 1-64 of [A-Za-z0-9._:-]", esc(&id));
        return Ok(2);
    }
    let requests: Vec<Request> = args
        .common
        .gateways
        .iter()
        .map(|gw| {
            let root = p.cfg.root(gw);
            let b = body(&id, gw, p.expires_ms, op, &op_args);
            Request {
                gw: gw.clone(),
                topic: format!("{root}/cmd/req"),
                payload: envelope(&b, p.key.as_ref().map(|k| (k, Kind::Cmd, gw.as_str()))),
                answer_topic: format!("{root}/cmd/res"),
            }
        })
        .collect();
    let outcomes = ops::exchange(&p.cfg, &requests, p.timeout, !args.no_wait, |_, v, _| {
        classify(&id, v)
    })
    .await;
    let mut code = 0u8;
    for (r, o) in requests.iter().zip(outcomes) {
        let gw = esc(&r.gw);
        let (line, c) = match o {
            Outcome::Answered(v) if args.json => (v.to_string(), result_line(&r.gw, &v).1),
            Outcome::Answered(v) => result_line(&r.gw, &v),
            Outcome::Queued => (format!("{gw}: queued {id}"), 0),
            Outcome::Pending(_) | Outcome::TimedOut => (
                format!(
                    "{gw}: timeout (no result for {id} within {})",
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
    use crate::remote::request::{parse_command, Op};

    #[test]
    fn bodies_parse_on_the_gateway_side() {
        let now = 1_800_000_000_000;
        let cases: Vec<(CmdOp, &str)> = vec![
            (CmdOp::Ping, "ping"),
            (CmdOp::Status, "status"),
            (CmdOp::ConfigGet, "config/get"),
            (
                CmdOp::Read {
                    points: vec!["a.b".into(), "c.d".into()],
                },
                "read",
            ),
            (
                CmdOp::Write {
                    point: "v.close".into(),
                    value: "true".into(),
                },
                "write",
            ),
            (
                CmdOp::Write {
                    point: "p.sp".into(),
                    value: "2.5".into(),
                },
                "write",
            ),
            (
                CmdOp::Ack {
                    occurrence: 7,
                    note: Some("done".into()),
                },
                "ack",
            ),
            (
                CmdOp::Resend {
                    device: "d".into(),
                    from: "2026-12-01T00:00:00Z".into(),
                    to: "1796169600000".into(),
                },
                "resend",
            ),
        ];
        for (op, name) in cases {
            let (n, a) = op_args(&op).unwrap();
            assert_eq!(n, name);
            let b = body("ops-1", "gw-1", now + 60_000, n, &a);
            let c =
                parse_command(&b, "gw-1", now).unwrap_or_else(|e| panic!("{op:?}: {:?}", e.error));
            assert_eq!(c.op.name(), name);
            if let Op::Write { value, .. } = c.op {
                let _ = value;
            }
        }
    }

    #[test]
    fn bad_arguments_are_refused_before_sending() {
        let cases: Vec<(CmdOp, &str)> = vec![
            (
                CmdOp::Read {
                    points: vec!["nodot".into()],
                },
                "expected DEVICE.POINT",
            ),
            (
                CmdOp::Write {
                    point: "a.b".into(),
                    value: "open".into(),
                },
                "true, false or a number",
            ),
            (
                CmdOp::Write {
                    point: "a.b".into(),
                    value: "NaN".into(),
                },
                "true, false or a number",
            ),
            (
                CmdOp::Ack {
                    occurrence: 1,
                    note: Some("x".repeat(65)),
                },
                "at most 64",
            ),
            (
                CmdOp::Resend {
                    device: "d".into(),
                    from: "yesterday".into(),
                    to: "0".into(),
                },
                "--from",
            ),
        ];
        for (op, want) in cases {
            let e = op_args(&op).unwrap_err();
            assert!(e.contains(want), "{op:?}: {e}");
        }
    }

    #[test]
    fn results_print_status_and_code() {
        let ok = json!({"id":"x","status":"ok","result":{"value":true}});
        assert_eq!(
            result_line("gw", &ok),
            ("gw: ok {\"value\":true}".into(), 0)
        );
        let no = json!({"id":"x","status":"refused","error":{"code":"not_allowed","message":"no"}});
        assert_eq!(
            result_line("gw", &no),
            ("gw: refused not_allowed: no".into(), 1)
        );
        assert_eq!(classify("x", &ok), Match::Final);
        assert_eq!(classify("y", &ok), Match::Other);
    }
}
