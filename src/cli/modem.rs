//! `gasdtu modem info | signal | at "<command>"`: field tools for the NB-IoT module, through the
//! running daemon's status socket (the daemon's AT engine owns the port; these requests are
//! serialized with its own commands: `gateway::modem_proxy`). `signal --watch` prints a fresh
//! sample every interval, one line each, for antenna placement. Text from the module is printed
//! with control characters escaped. Exit 0 ok, 1 refused or the module failed, 2 no daemon.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{json, Value};

use super::Global;
use crate::config::escape;
use crate::gateway::status_socket::request;

#[derive(Debug, clap::Args)]
pub struct ModemArgs {
    /// The daemon's status socket [default: `[gateway] socket` of the config, else
    /// /run/gasdtu/gasdtu.sock, $XDG_RUNTIME_DIR/gasdtu.sock or <state_dir>/gasdtu.sock,
    /// the first that exists].
    #[arg(long, global = true)]
    pub socket: Option<PathBuf>,
    /// Print the daemon's JSON answer as is.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub what: ModemWhat,
}

#[derive(Debug, clap::Subcommand)]
pub enum ModemWhat {
    /// Model, registration, attach, IP, signal, PSM/eDRX, network time, reset ladder.
    Info,
    /// Sample the signal now (RSRP, RSRQ, SINR, ECL, cell); --watch repeats it.
    Signal {
        /// Repeat every INTERVAL (e.g. 2s) until interrupted: for placing the antenna.
        #[arg(long, value_name = "INTERVAL", num_args = 0..=1, default_missing_value = "2s",
              value_parser = parse_interval)]
        watch: Option<Duration>,
    },
    /// Send one AT command to the module and print its answer.
    At {
        /// The command, e.g. "AT+CSQ" (quote it in the shell).
        command: String,
        /// Send a link-breaking command (CFUN, CGATT, COPS, CGACT, CEREG, CPSMS/CEDRXS, band
        /// setters, resets) although the daemon's session may be using the link; the daemon
        /// logs it as forced with your uid.
        #[arg(long)]
        force: bool,
    },
}

fn parse_interval(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| e.to_string())?;
    if (Duration::from_millis(500)..=Duration::from_secs(3600)).contains(&d) {
        Ok(d)
    } else {
        Err(format!("{s}: between 500ms and 1h"))
    }
}

fn num(v: &Value, unit: &str) -> String {
    match v.as_f64() {
        Some(x) => format!("{x}{unit}"),
        None => "-".into(),
    }
}

/// One line of signal figures (pure).
pub fn signal_line(s: &Value) -> String {
    format!(
        "RSRP {}  RSRQ {}  SINR {}  RSSI {}  ECL {}  cell {}  EARFCN {}  TX {}",
        num(&s["rsrp_dbm"], " dBm"),
        num(&s["rsrq_db"], " dB"),
        num(&s["sinr_db"], " dB"),
        num(&s["rssi_dbm"], " dBm"),
        num(&s["ecl"], ""),
        s["cell_id"]
            .as_u64()
            .map_or("-".into(), |c| format!("{c:X}")),
        num(&s["earfcn"], ""),
        num(&s["tx_power_dbm"], " dBm"),
    )
}

/// The summary of `modem info` (pure).
pub fn info_lines(m: &Value) -> Vec<String> {
    let t = |v: &Value| escape(v.as_str().unwrap_or("-")).into_owned();
    let reg = &m["registration"];
    let mut out = vec![
        format!(
            "model {} ({}), mode {}, state {}",
            t(&m["model"]),
            t(&m["model_text"]),
            t(&m["mode"]),
            t(&m["state"])
        ),
        format!(
            "registration {}  TAC {}  cell {}  reject cause {}  attached {}  IP {}  link {}",
            t(&reg["stat"]),
            t(&reg["tac"]),
            t(&reg["ci"]),
            num(&reg["reject_cause"], ""),
            m["attached"]
                .as_bool()
                .map_or("-", |a| if a { "yes" } else { "no" }),
            t(&m["ip"]),
            if m["link_up"].as_bool() == Some(true) {
                "up"
            } else {
                "down"
            }
        ),
    ];
    if let Some(ms) = m["registered_in_ms"].as_u64() {
        let since = match m["registered_since_ms"].as_i64() {
            Some(t) => format!(", registered since {}", crate::time::rfc3339_s(t)),
            None => ", not registered now".into(),
        };
        out.push(format!(
            "last registration took {:.1} s{since}",
            ms as f64 / 1000.0
        ));
    }
    if m["signal"].is_object() {
        out.push(format!("signal {}", signal_line(&m["signal"])));
    }
    let timers = |v: &Value| {
        format!(
            "TAU {} s, active {} s",
            num(&v["tau_s"], ""),
            num(&v["active_s"], "")
        )
    };
    if m["psm"].is_object() || m["psm_requested"].is_object() {
        out.push(format!(
            "PSM granted: {}; requested: {}",
            if m["psm"].is_object() {
                timers(&m["psm"])
            } else {
                "-".into()
            },
            if m["psm_requested"].is_object() {
                timers(&m["psm_requested"])
            } else {
                "-".into()
            },
        ));
    }
    if let Some(e) = m["edrx"].as_object() {
        let f = |k: &str| num(&e.get(k).cloned().unwrap_or_default(), " s");
        out.push(format!(
            "eDRX granted {} (paging window {}); requested {}",
            f("granted_s"),
            f("paging_window_s"),
            f("requested_s")
        ));
    }
    if m["socket_open"].as_bool() == Some(true) {
        out.push("module socket open".into());
    }
    if let Some(d) = m["deferred"].as_array().filter(|d| !d.is_empty()) {
        let cmds: Vec<String> = d
            .iter()
            .map(|c| escape(c.as_str().unwrap_or("")).into_owned())
            .collect();
        out.push(format!(
            "deferred until the socket closes: {}",
            cmds.join(", ")
        ));
    }
    let l = &m["ladder"];
    out.push(format!(
        "reset ladder: step {}, resets today {}, power cycles today {}",
        t(&l["step"]),
        num(&l["resets_today"], ""),
        num(&l["power_cycles_today"], "")
    ));
    if let Some(e) = m["last_error"].as_str() {
        out.push(format!("last error: {}", escape(e)));
    }
    out
}

async fn ask(args: &ModemArgs, req: Value) -> Result<Value, u8> {
    // Always set by `run` (resolved once).
    let socket = args.socket.clone().unwrap_or_default();
    match request(&socket, &req.to_string()).await {
        Ok(v) => Ok(v),
        Err(e) => {
            eprintln!(
                "gasdtu modem: cannot reach the daemon at {}: {e}",
                socket.display()
            );
            Err(2)
        }
    }
}

fn refused(v: &Value) -> u8 {
    eprintln!(
        "gasdtu modem: {}",
        escape(v["error"].as_str().unwrap_or("refused"))
    );
    1
}

pub async fn run(args: ModemArgs, global: &Global) -> anyhow::Result<u8> {
    let socket = super::socket::for_client(args.socket.as_deref(), &global.config);
    let args = ModemArgs {
        socket: Some(socket),
        ..args
    };
    match &args.what {
        ModemWhat::Info => {
            let v = match ask(&args, json!({"op": "modem_info"})).await {
                Ok(v) => v,
                Err(c) => return Ok(c),
            };
            if v["ok"] != true {
                return Ok(refused(&v));
            }
            if args.json {
                println!("{}", v["modem"]);
            } else {
                for l in info_lines(&v["modem"]) {
                    println!("{l}");
                }
            }
            Ok(0)
        }
        ModemWhat::Signal { watch } => loop {
            let v = match ask(&args, json!({"op": "modem_signal"})).await {
                Ok(v) => v,
                Err(c) => return Ok(c),
            };
            if v["ok"] != true {
                let c = refused(&v);
                if watch.is_none() {
                    return Ok(c);
                }
            } else if args.json {
                println!("{v}");
            } else {
                let at = v["at_ms"]
                    .as_i64()
                    .map_or("-".into(), crate::time::rfc3339_s);
                println!("{at}  {}", signal_line(&v["signal"]));
            }
            match watch {
                None => return Ok(0),
                Some(every) => tokio::time::sleep(*every).await,
            }
        },
        ModemWhat::At { command, force } => {
            let req = json!({"op": "modem_at", "cmd": command, "force": force});
            let v = match ask(&args, req).await {
                Ok(v) => v,
                Err(c) => return Ok(c),
            };
            if args.json {
                println!("{v}");
                return Ok(if v["ok"] == true { 0 } else { 1 });
            }
            if v["ok"] != true {
                return Ok(refused(&v));
            }
            for l in v["lines"].as_array().into_iter().flatten() {
                println!("{}", escape(l.as_str().unwrap_or("")));
            }
            println!("{}", escape(v["result"].as_str().unwrap_or("")));
            Ok(0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signal_and_info_lines_show_what_is_known() {
        let s = json!({"rsrp_dbm": -87.5, "sinr_db": 12.0, "ecl": 0, "cell_id": 108155522u64});
        assert_eq!(
            signal_line(&s),
            "RSRP -87.5 dBm  RSRQ -  SINR 12 dB  RSSI -  ECL 0  cell 6725282  EARFCN -  TX -"
        );
        let m = json!({"model": "bc95", "model_text": "BC95-B8", "mode": "socket",
            "state": "registered", "registration": {"stat": "home", "tac": "1A2D", "ci": "6725A82"},
            "attached": true, "ip": "10.1.2.3", "link_up": true, "signal": s,
            "registered_in_ms": 12840, "registered_since_ms": 0,
            "ladder": {"step": null, "resets_today": 0, "power_cycles_today": 0},
            "psm": {"tau_s": 3600, "active_s": 60}, "psm_requested": {"tau_s": 3600, "active_s": 30},
            "edrx": {"requested_s": 163.84, "granted_s": 81.92, "paging_window_s": 10.24},
            "socket_open": true, "deferred": ["AT+CGATT=1"],
            "last_error": "x\u{1b}[31m"});
        let lines = info_lines(&m);
        assert_eq!(
            lines[0],
            "model bc95 (BC95-B8), mode socket, state registered"
        );
        assert!(lines[1].contains("registration home  TAC 1A2D  cell 6725A82"));
        assert!(lines[1].contains("attached yes  IP 10.1.2.3  link up"));
        assert!(lines.iter().any(|l| l.starts_with("signal RSRP -87.5 dBm")));
        assert!(
            lines.contains(
                &"last registration took 12.8 s, registered since 1970-01-01T00:00:00Z".to_string()
            ),
            "{lines:?}"
        );
        for want in [
            "PSM granted: TAU 3600 s, active 60 s; requested: TAU 3600 s, active 30 s",
            "eDRX granted 81.92 s (paging window 10.24 s); requested 163.84 s",
            "module socket open",
            "deferred until the socket closes: AT+CGATT=1",
        ] {
            assert!(lines.contains(&want.to_string()), "{want}: {lines:?}");
        }
        // Text from the daemon never reaches the terminal raw.
        assert!(lines.last().unwrap().starts_with("last error: x"));
        assert!(!lines.last().unwrap().contains('\u{1b}'));
    }

    #[test]
    fn watch_intervals_are_bounded() {
        assert_eq!(parse_interval("2s"), Ok(Duration::from_secs(2)));
        assert!(parse_interval("100ms").is_err());
        assert!(parse_interval("2h").is_err());
    }
}
