//! `gasdtu status`: asks the running daemon over its unix socket and prints devices (last
//! poll, last good read, quality, online), then whatever the daemon reports about its buffer
//! and uplink, and the active alarms. `--json` prints the raw document; `--ack OCC [--by NOTE]`
//! acknowledges an active alarm through the same socket (request line `ack <occ> <note>`); the
//! daemon records the acknowledgement as the calling user (SO_PEERCRED), the note only after
//! it. The link's session figures print as one line (`last session 8.1 s: open 1.6, ...`).
//! Text from the daemon is printed with control characters escaped. Under the gateway line
//! the clock source (system, network with its accuracy, or untrusted). With a modem the
//! summary of `gasdtu modem info` ends the text view.

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
    println!(
        "\n{:<16} {:<12} {:<8} {:<21} {:<21} {:>9}  LAST ERROR",
        "DEVICE", "BUS", "STATE", "LAST POLL (UTC)", "LAST GOOD (UTC)", "GOOD/BAD"
    );
    if let Some(devs) = v.get("devices").and_then(|d| d.as_object()) {
        for (name, d) in devs {
            println!(
                "{:<16} {:<12} {:<8} {:<21} {:<21} {:>9}  {}",
                crate::config::escape(name),
                text(&d["bus"], "?"),
                if d["online"].as_bool().unwrap_or(false) {
                    "online"
                } else {
                    "OFFLINE"
                },
                when(&d["last_poll_ms"]),
                when(&d["last_good_ms"]),
                format!("{}/{}", d["good"], d["bad"]),
                text(&d["last_error"], "")
            );
        }
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
            for (k, val) in obj {
                if k == "session" {
                    continue;
                }
                let shown = if k.ends_with("_ms") {
                    when(val)
                } else {
                    crate::config::escape(&val.to_string()).into_owned()
                };
                println!("  {:<24} {shown}", crate::config::escape(k));
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
