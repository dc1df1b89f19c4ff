//! `gasdtu status`: asks the running daemon over its unix socket and prints devices (last
//! poll, last good read, quality, online), then whatever the daemon reports about its buffer
//! and uplink. `--json` prints the raw document.

use std::path::PathBuf;

use super::Global;
use crate::status::{query, DEFAULT_SOCKET};

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// The daemon's status socket.
    #[arg(long, default_value = DEFAULT_SOCKET)]
    pub socket: PathBuf,
    /// Print the daemon's JSON document as is.
    #[arg(long)]
    pub json: bool,
}

fn when(ms: &serde_json::Value) -> String {
    match ms.as_i64() {
        Some(ms) if ms > 0 => {
            let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms as u64);
            humantime::format_rfc3339_seconds(t).to_string()
        }
        _ => "-".into(),
    }
}

pub async fn run(args: StatusArgs, _global: &Global) -> anyhow::Result<u8> {
    let v = match query(&args.socket).await {
        Ok(v) => v,
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
            gw["id"].as_str().unwrap_or("?"),
            when(&gw["started_ms"]),
            gw["config"].as_str().unwrap_or("?")
        );
    }
    println!(
        "\n{:<16} {:<12} {:<8} {:<21} {:<21} {:>9}  LAST ERROR",
        "DEVICE", "BUS", "STATE", "LAST POLL (UTC)", "LAST GOOD (UTC)", "GOOD/BAD"
    );
    if let Some(devs) = v.get("devices").and_then(|d| d.as_object()) {
        for (name, d) in devs {
            println!(
                "{:<16} {:<12} {:<8} {:<21} {:<21} {:>9}  {}",
                name,
                d["bus"].as_str().unwrap_or("?"),
                if d["online"].as_bool().unwrap_or(false) {
                    "online"
                } else {
                    "OFFLINE"
                },
                when(&d["last_poll_ms"]),
                when(&d["last_good_ms"]),
                format!("{}/{}", d["good"], d["bad"]),
                d["last_error"].as_str().unwrap_or("")
            );
        }
    }
    for section in ["buffer", "link"] {
        if let Some(obj) = v.get(section).and_then(|s| s.as_object()) {
            println!("\n{section}:");
            for (k, val) in obj {
                let shown = if k.ends_with("_ms") {
                    when(val)
                } else {
                    val.to_string()
                };
                println!("  {k:<24} {shown}");
            }
        }
    }
    Ok(0)
}
