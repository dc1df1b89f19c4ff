//! The report of benches/nbiot_sessions: medians, the per-scenario table against the
//! whitepaper's bar and ours, where the uplink bytes go, and every session's line. Pure: text
//! from the measured `Outcome`s.

use std::fmt::Write as _;
use std::time::Duration;

use super::{Outcome, Sess, DEVICES, LINGER, PER_DAY};

fn median_d(v: &[Duration]) -> Duration {
    let mut v = v.to_vec();
    v.sort();
    if v.is_empty() {
        return Duration::ZERO;
    }
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2
    }
}

fn median_u(v: &[u64]) -> u64 {
    let mut v = v.to_vec();
    v.sort_unstable();
    if v.is_empty() {
        return 0;
    }
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2
    }
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

pub fn render(outs: &[Outcome], reports: usize, machine: &str, started: &str) -> String {
    let mut r = String::new();
    let _ = writeln!(
        r,
        "nbiot_sessions: on-demand NB-IoT sessions through the simulated module (issue 11)\n\
         run {started} .. {}\n{machine}\n\
         station: 6 devices / 50 readings per report (one report = one 5-minute poll cycle, time \
         compressed), {reports} measured reports per scenario after a start-up session and one \
         warm-up report\nlink: gasdtu simulate --modem <model> defaults: 12 kbit/s up, 8 kbit/s \
         down, RTT 1.5 s; session = \"on_demand\", linger {} s; max_payload 1024, inflight 8; \
         mosquitto over TLS 1.3 on loopback through the module's AT sockets (SocketBridge)\n\
         bytes = the module's socket bytes (TCP payload: TLS records carrying MQTT), before \
         IP/TCP headers and radio overhead\nsession = wake -> asleep minus the linger (includes \
         the closing health + `asleep` status + DISCONNECT); drain = wake -> every message \
         acknowledged; connect = wake -> CONNACK (module socket open + TLS + MQTT CONNECT)\n",
        super::support::utc_now(),
        LINGER.as_secs()
    );
    let _ = writeln!(
        r,
        "| scenario | session median | session max | session mean | connect median | drain median | bytes up / down per report (median) | bytes per day (288 reports) | whitepaper bar (< 30 s mean, < 60 s max) | ours (< 5 s median) |"
    );
    let _ = writeln!(r, "|---|---|---|---|---|---|---|---|---|---|");
    for o in outs {
        let ss: Vec<Duration> = o.sessions.iter().map(|s| s.session).collect();
        let cs: Vec<Duration> = o.sessions.iter().map(|s| s.connect).collect();
        let ds: Vec<Duration> = o.sessions.iter().map(|s| s.drain).collect();
        let ups: Vec<u64> = o.sessions.iter().map(|s| s.up).collect();
        let dns: Vec<u64> = o.sessions.iter().map(|s| s.down).collect();
        let med = median_d(&ss);
        let max = ss.iter().max().copied().unwrap_or_default();
        let mean = ss.iter().sum::<Duration>() / (ss.len().max(1) as u32);
        let (u, d) = (median_u(&ups), median_u(&dns));
        let day = (u + d) * PER_DAY;
        let _ = writeln!(
            r,
            "| {} | {} | {} | {} | {} | {} | {u} / {d} B | {:.0} kB ({:.0} up + {:.0} down) | {} | {} |",
            o.scenario.label(),
            secs(med),
            secs(max),
            secs(mean),
            secs(median_d(&cs)),
            secs(median_d(&ds)),
            day as f64 / 1000.0,
            (u * PER_DAY) as f64 / 1000.0,
            (d * PER_DAY) as f64 / 1000.0,
            if mean < Duration::from_secs(30) && max < Duration::from_secs(60) {
                "met"
            } else {
                "NOT met"
            },
            if med < Duration::from_secs(5) {
                "met"
            } else {
                "NOT met"
            },
        );
    }
    let _ = writeln!(
        r,
        "\n| scenario (medians per report) | bytes up on air | MQTT payload: data (msgs) | MQTT payload: status + health | the rest up: TLS handshake, records, MQTT headers, CONNECT/DISCONNECT | up per reading (on air / data payload) | bytes down on air |"
    );
    let _ = writeln!(r, "|---|---|---|---|---|---|---|");
    for o in outs {
        let m = |f: &dyn Fn(&Sess) -> u64| median_u(&o.sessions.iter().map(f).collect::<Vec<_>>());
        let up = m(&|s| s.up);
        let data = m(&|s| s.data_bytes as u64);
        let other = m(&|s| s.other_bytes as u64);
        let msgs = m(&|s| s.data_msgs as u64);
        let per = DEVICES.iter().sum::<usize>() as f64;
        let _ = writeln!(
            r,
            "| {} | {up} B | {data} B ({msgs}) | {other} B | {} B | {:.1} / {:.1} B | {} B |",
            o.scenario.label(),
            up.saturating_sub(data + other),
            up as f64 / per,
            data as f64 / per,
            m(&|s| s.down),
        );
    }
    let _ = writeln!(r);
    for o in outs {
        let _ = writeln!(r, "## {}", o.scenario.label());
        let _ = writeln!(
            r,
            "readings committed and found at the subscriber (checked per report): {}; session failures: {}",
            o.readings,
            if o.downs.is_empty() {
                "none".to_string()
            } else {
                o.downs.join(" | ")
            }
        );
        let line = |what: &str, s: &Sess| {
            format!(
                "{what:<9} connect {:>7}  drain {:>7}  session {:>7}  up {:>5} B  down {:>5} B  sockets {}  tls tickets offered {}  data messages {} ({} B payload)  status + health payload {} B\n          own: {}\n",
                secs(s.connect),
                secs(s.drain),
                secs(s.session),
                s.up,
                s.down,
                s.sockets,
                s.resumptions,
                s.data_msgs,
                s.data_bytes,
                s.other_bytes,
                s.own
            )
        };
        r.push_str(&line("start-up", &o.startup));
        r.push_str(&line("warm-up", &o.warmup));
        for (i, s) in o.sessions.iter().enumerate() {
            r.push_str(&line(&format!("report {}", i + 1), s));
        }
        let _ = writeln!(r);
    }
    r
}
