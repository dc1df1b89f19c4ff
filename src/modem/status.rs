//! What the modem supervisor publishes (pure data): `ModemStatus` on a `tokio::sync::watch`
//! (read by `gasdtu status`, the health message and the uplink), its serializable parts, and
//! `health_json`, the small `modem` object of `<root>/health`. `link_up` is the uplink's gate:
//! true while the module is registered (home or roaming) and attached, so a forwarder can wait
//! for it instead of burning connection attempts. No I/O.

use serde::Serialize;

use super::ladder::Step;
use super::reply::{RegStatus, Registration};
use super::signal::Signal;
use super::timers::Timer;

/// The supervisor's view of the module.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ModemState {
    /// Not yet talked to.
    #[default]
    Starting,
    /// Answers; not registered (searching, or not yet known).
    Searching,
    /// Registered (home or roaming).
    Registered,
    /// Registration denied by the network (see `registration.reject_cause`).
    Denied,
    /// Does not answer AT.
    Unresponsive,
    /// A reset ladder step is in progress.
    Recovering,
}

/// The registration as the last `+CEREG` said.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RegistrationStatus {
    /// home, roaming, searching, denied, not_searching, unknown, other_<n>.
    pub stat: String,
    /// Tracking area code, 4 hex digits.
    pub tac: Option<String>,
    /// Cell id, hex.
    pub ci: Option<String>,
    /// Access technology (9 = NB-IoT).
    pub act: Option<u8>,
    pub reject_cause: Option<u16>,
}

impl RegistrationStatus {
    pub fn from_reply(r: &Registration) -> Self {
        RegistrationStatus {
            stat: stat_name(r.stat),
            tac: r.tac.map(|t| format!("{t:04X}")),
            ci: r.cell_id.map(|c| format!("{c:X}")),
            act: r.act,
            reject_cause: r.reject.map(|j| j.cause),
        }
    }
}

pub fn stat_name(s: RegStatus) -> String {
    match s {
        RegStatus::NotSearching => "not_searching".into(),
        RegStatus::Home => "home".into(),
        RegStatus::Searching => "searching".into(),
        RegStatus::Denied => "denied".into(),
        RegStatus::Unknown => "unknown".into(),
        RegStatus::Roaming => "roaming".into(),
        RegStatus::Other(n) => format!("other_{n}"),
    }
}

/// A signal sample (the units of `modem::Signal`).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct SignalReport {
    pub rsrp_dbm: Option<f32>,
    pub rsrq_db: Option<f32>,
    pub sinr_db: Option<f32>,
    pub rssi_dbm: Option<f32>,
    pub ecl: Option<u8>,
    pub cell_id: Option<u32>,
    pub tac: Option<u16>,
    pub earfcn: Option<u32>,
    pub pci: Option<u16>,
    pub band: Option<u16>,
    pub tx_power_dbm: Option<f32>,
}

impl From<Signal> for SignalReport {
    fn from(s: Signal) -> Self {
        SignalReport {
            rsrp_dbm: s.rsrp_dbm,
            rsrq_db: s.rsrq_db,
            sinr_db: s.sinr_db,
            rssi_dbm: s.rssi_dbm,
            ecl: s.ecl,
            cell_id: s.cell_id,
            tac: s.tac,
            earfcn: s.earfcn,
            pci: s.pci,
            band: s.band,
            tx_power_dbm: s.tx_power_dbm,
        }
    }
}

/// PSM timers (`tau_s` periodic TAU / T3412, `active_s` active time / T3324), seconds: as the
/// network granted them (`+CEREG` n=4/5) or as requested (`[modem] psm`); `None` =
/// deactivated/unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct PsmGranted {
    pub tau_s: Option<u64>,
    pub active_s: Option<u64>,
}

/// eDRX as requested from the module and as the network granted it (`+CEDRXRDP`), seconds.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct EdrxStatus {
    pub requested_s: Option<f64>,
    pub granted_s: Option<f64>,
    pub paging_window_s: Option<f64>,
}

impl EdrxStatus {
    /// From a `+CEDRXRDP` reply (`None`: eDRX not used: nothing granted).
    pub fn from_dynamic(d: Option<super::reply::EdrxDynamic>, requested_ms: Option<u64>) -> Self {
        let s = |ms: Option<u64>| ms.map(|ms| ms as f64 / 1000.0);
        EdrxStatus {
            requested_s: s(d.and_then(|d| d.requested_ms).or(requested_ms)),
            granted_s: s(d.and_then(|d| d.granted_ms)),
            paging_window_s: s(d.and_then(|d| d.paging_window_ms)),
        }
    }
}

pub fn timer_secs(t: Option<Timer>) -> Option<u64> {
    match t {
        Some(Timer::Seconds(s)) => Some(s),
        _ => None,
    }
}

/// The network's time (`AT+CCLK?`), a clock source: `offset_ms` = network time minus this
/// machine's system clock (uncorrected) when read; `accuracy_ms` bounds the error (the 1 s
/// resolution plus the command's round trip, halved around the middle). With `[modem]
/// set_clock` the supervisor installs it as `crate::time`'s network correction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct NetworkTime {
    /// What the module said, UTC (whole seconds).
    pub utc_ms: i64,
    pub offset_ms: i64,
    pub accuracy_ms: u64,
    /// This machine's system clock when the reply arrived.
    pub read_at_ms: i64,
    /// Where it came from: "cclk" (a poll) or "ctze" (the network's time-zone URC).
    pub source: &'static str,
}

impl NetworkTime {
    /// The network time from a `+CCLK` reply: `utc_ms` as the module said it (truncated to the
    /// second), `rtt_ms` the command's round trip, `system_ms` the system clock when the reply
    /// arrived. The module read its clock somewhere within the round trip and dropped the
    /// fraction, so at `system_ms` the true time lies in `[utc_ms, utc_ms + 1000 + rtt_ms]`:
    /// the offset points at the middle, the accuracy is half the width (rounded up).
    pub fn measure(utc_ms: i64, rtt_ms: u64, system_ms: i64) -> NetworkTime {
        let width = 1000u64.saturating_add(rtt_ms);
        let half = width.div_ceil(2);
        let mid = utc_ms.saturating_add(i64::try_from(half).unwrap_or(i64::MAX));
        NetworkTime {
            utc_ms,
            offset_ms: mid.saturating_sub(system_ms),
            accuracy_ms: half,
            read_at_ms: system_ms,
            source: "cclk",
        }
    }

    /// The network time of a `+CTZE` URC (whole seconds, `utc_ms`) that arrived when the system
    /// clock said `system_ms`: the URC may have waited in the module or behind a command, so
    /// the window is taken as 2 s wide (accuracy ± 1000 ms).
    pub fn from_urc(utc_ms: i64, system_ms: i64) -> NetworkTime {
        NetworkTime {
            source: "ctze",
            ..NetworkTime::measure(utc_ms, 1000, system_ms)
        }
    }
}

/// The last ladder step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LastStep {
    pub step: Step,
    pub reason: String,
    pub at_ms: i64,
    /// "ok", "failed: ..." or "capped until <ms>".
    pub outcome: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct LadderStatus {
    /// The rung of the current climb (None: at the bottom).
    pub step: Option<Step>,
    pub resets_today: u32,
    pub power_cycles_today: u32,
    pub last: Option<LastStep>,
}

/// Everything `gasdtu status` shows of the modem.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct ModemStatus {
    /// The profile id in use (bc95, bg96, ...), once detected.
    pub model: Option<String>,
    /// What ATI/CGMM said, first line.
    pub model_text: Option<String>,
    pub mode: String,
    pub state: ModemState,
    /// "ready", "absent" (CME error 10) or what `+CPIN` says ("SIM PIN", ...).
    pub sim: Option<String>,
    pub registration: Option<RegistrationStatus>,
    pub attached: Option<bool>,
    pub ip: Option<String>,
    pub signal: Option<SignalReport>,
    /// Wall clock (ms) of the signal sample.
    pub sampled_at_ms: Option<i64>,
    /// PSM timers the network granted (`+CEREG` level 4/5).
    pub psm: Option<PsmGranted>,
    /// PSM timers requested (`[modem] psm`), once the module took the request.
    pub psm_requested: Option<PsmGranted>,
    /// eDRX requested and granted (`AT+CEDRXRDP`, read after init and with each signal sample).
    pub edrx: Option<EdrxStatus>,
    /// A module socket is open (the socket bridge's session).
    pub socket_open: bool,
    /// The socket-mode PDP context: `Some(false)` once the module reported it deactivated
    /// (`+QIURC: "pdpdeact"`, `+APP PDP: <n>,DEACTIVE`), `Some(true)` once it reported it
    /// active (`+APP PDP: <n>,ACTIVE`) or a module socket opened; `None` until known. While
    /// false the socket bridge activates it (CNACT / QIACT) before opening and insists.
    pub pdp_active: Option<bool>,
    /// Link-disturbing setters the supervisor holds back while a socket is open on a live
    /// link; they run when it closes.
    pub deferred: Vec<String>,
    pub network_time: Option<NetworkTime>,
    pub ladder: LadderStatus,
    pub last_error: Option<String>,
    /// Registered and attached: the uplink may try to connect.
    pub link_up: bool,
    /// The last registration episode: from the module's start (or a ladder step, or the
    /// registration's loss) to registered, in ms; and since when (UTC ms) it is registered
    /// (`None` while not registered).
    pub registered_in_ms: Option<u64>,
    pub registered_since_ms: Option<i64>,
    /// Init sequences run since the supervisor started (one per start, module boot or port
    /// reopen).
    pub inits: u64,
}

/// The small `modem` object of `<root>/health`: registration, RSRP, SINR, ECL and cell.
pub fn health_json(s: &ModemStatus) -> serde_json::Value {
    let sig = s.signal.unwrap_or_default();
    serde_json::json!({
        "state": s.state,
        "registration": s.registration.as_ref().map(|r| r.stat.as_str()),
        "link_up": s.link_up,
        "rsrp": sig.rsrp_dbm,
        "sinr": sig.sinr_db,
        "ecl": sig.ecl,
        "cell": s.registration.as_ref().and_then(|r| r.ci.clone())
            .or(sig.cell_id.map(|c| format!("{c:X}"))),
        "tac": s.registration.as_ref().and_then(|r| r.tac.clone()),
        "registered_in_ms": s.registered_in_ms,
    })
}

/// A few words for the systemd STATUS= line: the state, the RSRP when registered, the step
/// while recovering.
pub fn status_phrase(s: &ModemStatus) -> String {
    match s.state {
        ModemState::Starting => "modem starting".into(),
        ModemState::Searching if s.sim.as_deref().is_some_and(|x| x != "ready") => {
            format!("modem: SIM {}", s.sim.as_deref().unwrap_or_default())
        }
        ModemState::Searching => "modem searching".into(),
        ModemState::Denied => match s.registration.as_ref().and_then(|r| r.reject_cause) {
            Some(c) => format!("modem DENIED (cause {c})"),
            None => "modem DENIED".into(),
        },
        ModemState::Unresponsive => "modem UNRESPONSIVE".into(),
        ModemState::Recovering => match s.ladder.step {
            Some(step) => format!("modem recovering ({})", step.as_str()),
            None => "modem recovering".into(),
        },
        ModemState::Registered => {
            let mut t = String::from("modem registered");
            if s.attached == Some(false) {
                t.push_str(" (not attached)");
            }
            if let Some(rsrp) = s.signal.and_then(|g| g.rsrp_dbm) {
                t.push_str(&format!(", RSRP {rsrp:.0} dBm"));
            }
            t
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_is_small_and_named() {
        let s = ModemStatus {
            state: ModemState::Registered,
            registration: Some(RegistrationStatus {
                stat: "home".into(),
                tac: Some("1A2D".into()),
                ci: Some("1A2D001".into()),
                act: Some(9),
                reject_cause: None,
            }),
            signal: Some(SignalReport {
                rsrp_dbm: Some(-85.0),
                sinr_db: Some(7.5),
                ecl: Some(0),
                ..SignalReport::default()
            }),
            link_up: true,
            registered_in_ms: Some(4200),
            registered_since_ms: Some(1_700_000_000_000),
            ..ModemStatus::default()
        };
        let h = health_json(&s);
        assert_eq!(h["registered_in_ms"], 4200);
        assert_eq!(h["registration"], "home");
        assert_eq!(h["rsrp"], -85.0);
        assert_eq!(h["sinr"], 7.5);
        assert_eq!(h["ecl"], 0);
        assert_eq!(h["cell"], "1A2D001");
        assert_eq!(h["state"], "registered");
        assert!(h.to_string().len() < 220, "{h}");
        assert_eq!(status_phrase(&s), "modem registered, RSRP -85 dBm");
        let j = serde_json::to_value(&s).expect("status json");
        assert_eq!(j["ladder"]["resets_today"], 0);
        assert_eq!(j["link_up"], true);
    }

    #[test]
    fn network_time_points_at_the_middle_of_its_window() {
        let t = crate::time::MIN_TRUSTED_UNIX_MS;
        // (module utc, rtt, system clock, want offset, want accuracy)
        let cases = [
            // A 1970 boot, an instant reply: [t, t + 1000] -> t + 500 ± 500.
            (t, 0, 60_000, t + 500 - 60_000, 500),
            // A 2025 clock a year behind, a 1.5 s round trip: ± 1250.
            (t, 1_500, t - 31_536_000_000, 31_536_001_250, 1_250),
            // Odd widths round the accuracy up.
            (t, 1, t, 501, 501),
            // Extremes saturate.
            (i64::MAX, u64::MAX, i64::MIN, i64::MAX, u64::MAX / 2 + 1),
        ];
        for (utc, rtt, sys, offset, acc) in cases {
            let n = NetworkTime::measure(utc, rtt, sys);
            assert_eq!(
                (n.offset_ms, n.accuracy_ms),
                (offset, acc),
                "{utc} {rtt} {sys}"
            );
            assert_eq!((n.utc_ms, n.read_at_ms), (utc, sys));
        }
    }

    #[test]
    fn status_phrases() {
        let with = |state, f: &dyn Fn(&mut ModemStatus)| {
            let mut s = ModemStatus {
                state,
                ..ModemStatus::default()
            };
            f(&mut s);
            status_phrase(&s)
        };
        let cases = [
            (with(ModemState::Starting, &|_| {}), "modem starting"),
            (with(ModemState::Searching, &|_| {}), "modem searching"),
            (
                with(ModemState::Searching, &|s| s.sim = Some("absent".into())),
                "modem: SIM absent",
            ),
            (
                with(ModemState::Unresponsive, &|_| {}),
                "modem UNRESPONSIVE",
            ),
            (
                with(ModemState::Recovering, &|s| {
                    s.ladder.step = Some(Step::PowerCycle)
                }),
                "modem recovering (power_cycle)",
            ),
            (
                with(ModemState::Denied, &|s| {
                    s.registration = Some(RegistrationStatus {
                        stat: "denied".into(),
                        tac: None,
                        ci: None,
                        act: None,
                        reject_cause: Some(15),
                    })
                }),
                "modem DENIED (cause 15)",
            ),
            (
                with(ModemState::Registered, &|s| s.attached = Some(false)),
                "modem registered (not attached)",
            ),
        ];
        for (got, want) in cases {
            assert_eq!(got, want);
        }
    }
}
