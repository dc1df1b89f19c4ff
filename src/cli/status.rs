//! `gasdtu status`: asks the running daemon over its unix socket and prints devices (last
//! poll, last good read, quality, online), then whatever the daemon reports about its buffer
//! and uplink, and the active alarms. `--json` prints the raw document; `--ack OCC [--by NOTE]`
//! acknowledges an active alarm through the same socket (request line `ack <occ> <note>`); the
//! daemon records the acknowledgement as the calling user (SO_PEERCRED), the note only after
//! it. Text from the daemon is printed with control characters escaped. Under the gateway line
//! the clock source (system, network with its accuracy, or untrusted). With a modem the
//! summary of `gasdtu modem info` ends the text view. The text view is rendered by pure
//! functions: the device table (`POINTS GOOD` is good points of all points in the device's
//! last cycle, "12/14"), and the buffer and link sections, where a `*_ms` key holding a time
//! (UTC ms since 1970, at or after 2001) is shown as RFC 3339 with its age and one holding a
//! duration as a duration; strings print without JSON quotes. The link's session figures print
//! as one line (`last session 8.1 s: open 1.6, ...`).

use std::path::PathBuf;

use super::Global;
use crate::gateway::status_socket::{query, request};

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// The daemon's status socket [default: `[gateway] socket` of the config, else
    /// /run/gasdtu/gasdtu.sock, $XDG_RUNTIME_DIR/gasdtu.sock or <state_dir>/gasdtu.sock,
    /// the first that exists].
    #[arg(long)]
    pub socket: Option<PathBuf>,
    /// Print the daemon's JSON document as is.
    #[arg(long)]
    pub json: bool,
    /// Acknowledge the active alarm with this occurrence id instead of printing the status.
    #[arg(long, value_name = "OCCURRENCE")]
    pub ack: Option<u64>,
    /// A note kept with the acknowledgement (one word, at most 64 characters), with --ack. The
    /// daemon records who acknowledged from the socket's credentials (your uid), not from this.
    #[arg(long, value_name = "NOTE", default_value = "local", requires = "ack")]
    pub by: String,
}

/// A string field of the daemon's document, escaped for the terminal.
fn text<'a>(v: &'a serde_json::Value, default: &'a str) -> std::borrow::Cow<'a, str> {
    crate::config::escape(v.as_str().unwrap_or(default))
}

fn when(ms: &serde_json::Value) -> String {
    match ms.as_i64() {
        Some(ms) if ms > 0 => crate::time::rfc3339_s(ms),
        _ => "-".into(),
    }
}

/// The daemon's `clock` object in words.
fn clock_text(c: &serde_json::Value) -> String {
    match c["source"].as_str() {
        Some("network") => format!(
            "network time (modem), accuracy ±{} ms, offset {:+} ms from the system clock",
            c["accuracy_ms"].as_u64().unwrap_or_default(),
            c["offset_ms"].as_i64().unwrap_or_default()
        ),
        Some("untrusted") => "UNTRUSTED (readings are held until the time is known)".into(),
        Some(other) => crate::config::escape(other).into_owned(),
        None => "?".into(),
    }
}

/// UTC milliseconds at or after this (2001-09-09) are times; below, durations. No duration
/// the daemon reports comes near 31 years, and no time it reports is before 2001.
const EPOCH_MS_FLOOR: i64 = 1_000_000_000_000;

/// One value of the buffer or link section as a person reads it (`now_ms` for ages).
pub fn show_field(key: &str, val: &serde_json::Value, now_ms: i64) -> String {
    match val {
        serde_json::Value::Null => "-".into(),
        serde_json::Value::String(s) => crate::config::escape(s).into_owned(),
        serde_json::Value::Number(n) if key.ends_with("_ms") => match n.as_i64() {
            Some(ms) if ms >= EPOCH_MS_FLOOR => {
                let ago = std::time::Duration::from_secs(((now_ms - ms).max(0) / 1000) as u64);
                format!(
                    "{} ({} ago)",
                    crate::time::rfc3339_s(ms),
                    humantime::format_duration(ago)
                )
            }
            Some(ms) if ms >= 0 => {
                humantime::format_duration(std::time::Duration::from_millis(ms as u64)).to_string()
            }
            _ => n.to_string(),
        },
        other => crate::config::escape(&other.to_string()).into_owned(),
    }
}

/// The device table: heading and one line per device.
pub fn device_lines(devices: &serde_json::Map<String, serde_json::Value>) -> Vec<String> {
    let mut out = vec![format!(
        "{:<16} {:<12} {:<8} {:<21} {:<21} {:>11}  LAST ERROR",
        "DEVICE", "BUS", "STATE", "LAST POLL (UTC)", "LAST GOOD (UTC)", "POINTS GOOD"
    )];
    for (name, d) in devices {
        let good = d["good"].as_u64();
        let bad = d["bad"].as_u64();
        let points = match (good, bad) {
            (Some(g), Some(b)) => format!("{g}/{}", g + b),
            _ => "-".to_string(),
        };
        let line = format!(
            "{:<16} {:<12} {:<8} {:<21} {:<21} {:>11}  {}",
            crate::config::escape(name),
            text(&d["bus"], "?"),
            if d["online"].as_bool().unwrap_or(false) {
                "online"
            } else {
                "OFFLINE"
            },
            when(&d["last_poll_ms"]),
            when(&d["last_good_ms"]),
            points,
            text(&d["last_error"], "")
        );
        out.push(line.trim_end().to_string());
    }
    out
}

/// A section of keys and values (buffer, link).
pub fn section_lines(obj: &serde_json::Map<String, serde_json::Value>, now_ms: i64) -> Vec<String> {
    obj.iter()
        .map(|(k, val)| {
            format!(
                "  {:<24} {}",
                crate::config::escape(k),
                show_field(k, val, now_ms)
            )
        })
        .collect()
}

pub async fn run(args: StatusArgs, global: &Global) -> anyhow::Result<u8> {
    let socket = super::socket::for_client(args.socket.as_deref(), &global.config);
    if let Some(occ) = args.ack {
        if args.by.split_whitespace().count() != 1 || args.by.chars().any(char::is_control) {
            eprintln!(
                "gasdtu status: --by {:?} must be one word without control characters",
                args.by
            );
            return Ok(2);
        }
        return match request(&socket, &format!("ack {occ} {}", args.by)).await {
            Ok(v) if v.get("error").is_none() => {
                println!("acknowledged alarm occurrence {occ}");
                Ok(0)
            }
            Ok(v) => {
                eprintln!(
                    "gasdtu status: {}",
                    crate::config::escape(v["error"].as_str().unwrap_or("refused"))
                );
                Ok(1)
            }
            Err(e) => {
                eprintln!("gasdtu status: {e}");
                Ok(2)
            }
        };
    }
    // A config that is not commissioned yet: the daemon idles without a socket; say why.
    let idle = super::socket::raw_gateway(&global.config).is_some_and(|g| !g.commissioned);
    if idle {
        println!("{}", super::run::not_commissioned(&global.config));
    }
    let v = match query(&socket).await {
        Ok(v) => v,
        Err(e) if idle => {
            eprintln!("gasdtu status: {e} (an idle daemon has no status socket)");
            return Ok(3);
        }
        Err(e) => {
            eprintln!("gasdtu status: {e}");
            return Ok(2);
        }
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(0);
    }
    if let Some(gw) = v.get("gateway") {
        println!(
            "gateway {}  up since {}  config {}",
            text(&gw["id"], "?"),
            when(&gw["started_ms"]),
            text(&gw["config"], "?")
        );
    }
    if let Some(c) = v.get("clock").filter(|c| c.is_object()) {
        println!("clock {}", clock_text(c));
    }
    println!();
    let none = serde_json::Map::new();
    let devices = v
        .get("devices")
        .and_then(|d| d.as_object())
        .unwrap_or(&none);
    for line in device_lines(devices) {
        println!("{line}");
    }
    if let Some(alarms) = v.get("alarms").and_then(|a| a.as_array()) {
        println!(
            "\n{:<14} {:<9} {:<16} {:<24} {:<25} {:<6} MESSAGE",
            "OCCURRENCE", "SEVERITY", "DEVICE", "ALARM", "RAISED (UTC)", "ACK"
        );
        if alarms.is_empty() {
            println!("(no active alarms)");
        }
        for a in alarms {
            let name = match a["level"].as_str() {
                Some(l) => format!("{}:{}", text(&a["rule"], "?"), crate::config::escape(l)),
                None => text(&a["rule"], "?").into_owned(),
            };
            let ack = match (a["acked"].as_bool(), a["returned"].as_bool()) {
                (Some(true), _) => "acked",
                (_, Some(true)) => "RTN",
                _ => "no",
            };
            println!(
                "{:<14} {:<9} {:<16} {:<24} {:<25} {:<6} {}",
                a["occurrence"],
                text(&a["severity"], "?"),
                text(&a["device"], "?"),
                name,
                text(&a["raised_at"], "-"),
                ack,
                text(&a["message"], "")
            );
        }
    }
    let now_ms = crate::time::now_ms();
    for section in ["buffer", "link"] {
        if let Some(obj) = v.get(section).and_then(|s| s.as_object()) {
            println!("\n{section}:");
            // The session figures: one line (`uplink::session::summary_line`).
            if let Some(line) = obj
                .get("session")
                .and_then(crate::uplink::session::summary_line)
            {
                println!("  {}", crate::config::escape(&line));
            }
            let mut rest = obj.clone();
            rest.remove("session");
            for line in section_lines(&rest, now_ms) {
                println!("{line}");
            }
        }
    }
    // The modem, when the gateway has one: the same summary as `gasdtu modem info`.
    if let Some(m) = v.get("modem").filter(|m| m.is_object()) {
        println!("\nmodem:");
        for l in super::modem::info_lines(m) {
            println!("  {l}");
        }
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ms_keys_are_times_or_durations() {
        let now = 1_796_223_208_000; // 2026-12-02T14:53:28Z
                                     // (key, value, shown)
        let rows: &[(&str, serde_json::Value, &str)] = &[
            (
                "last_ack_ms",
                json!(now - 65_000),
                "2026-12-02T14:52:23Z (1m 5s ago)",
            ),
            ("last_ack_ms", json!(null), "-"),
            ("connect_ms", json!(850), "850ms"),
            ("last_session_ms", json!(93_500), "1m 33s 500ms"),
            ("connect_ms", json!(0), "0s"),
            ("down_since_ms", json!(now), "2026-12-02T14:53:28Z (0s ago)"),
            (
                "state",
                json!("no uplink configured"),
                "no uplink configured",
            ),
            ("error", json!("bad\x1b[2J"), "bad\\x1b[2J"),
            ("published", json!(12), "12"),
            ("inbound_subscribed", json!(true), "true"),
        ];
        for (key, val, want) in rows {
            assert_eq!(show_field(key, val, now), *want, "{key} = {val}");
        }
    }

    #[test]
    fn the_device_table_counts_good_points_of_all() {
        let devices = json!({
            "evc1": {"bus": "lan", "online": true, "last_poll_ms": 1_796_223_000_000i64,
                     "last_good_ms": 1_796_223_000_100i64, "good": 12, "bad": 2,
                     "last_error": "pressure: timeout"},
            "pt9": {"bus": "rs485", "online": false, "last_poll_ms": 1_796_223_000_000i64,
                    "last_good_ms": null, "good": 0, "bad": 3, "last_error": "p: timeout"},
        });
        let lines = device_lines(devices.as_object().unwrap());
        assert!(lines[0].contains("POINTS GOOD  LAST ERROR"), "{}", lines[0]);
        assert_eq!(
            lines[1],
            "evc1             lan          online   2026-12-02T14:50:00Z  2026-12-02T14:50:00Z        12/14  pressure: timeout"
        );
        assert!(
            lines[2].contains("OFFLINE  2026-12-02T14:50:00Z  -"),
            "{}",
            lines[2]
        );
        assert!(lines[2].contains("   0/3  p: timeout"), "{}", lines[2]);
    }
}
