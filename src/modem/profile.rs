//! Module profiles as data (pure core): one `Profile` per known NB-IoT module family (Quectel
//! BC95/BC28, BC66/BC660K, BG95/BG96, SIMCom SIM7020, SIM7080) and a generic 3GPP fallback,
//! and `detect`, which picks one from the text of ATI / AT+CGMM / AT+CGMR. A profile says what
//! the engine must know to drive the module: echo default, signal commands (in order of
//! preference, each with its parser), reset command and the boot marker that ends the reboot,
//! socket dialect, max data bytes per send, whether socket data is hex, the PDP activation
//! command, PSM/eDRX support. Adding a module is adding a row. No I/O.
//!
//! Rows follow docs/dev/modem-dialects.md (the simulator implements the same). BC66/BC660K and
//! SIM7080 come from vendor manuals and are simulated, but no field transcript has confirmed
//! their socket dialects (BC66 `QI*` in hex data format, SIMCom `AT+CA*`) yet.

use super::reply::{cesq, csq, find_line, ReplyError};
use super::signal::{ceng, nuestats, qcsq, qeng_lines, Signal};

/// How a module carries TCP data in socket mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SocketDialect {
    /// BC95/BC28 `AT+NSOCR/NSOCO/NSOSD/NSORF/NSOCL`, hex data, `+NSONMI` data-waiting URCs.
    NsoHex,
    /// BG95/BG96 `AT+QIOPEN/QISEND/QIRD/QICLOSE`, raw bytes after a `"> "` prompt.
    Qi,
    /// BC66/BC660K `AT+QIOPEN/QICLOSE` with inline hex sends `AT+QISEND=<id>,<len>,<hex>`.
    QiHex,
    /// SIM7020 `AT+CSOC/CSOCON/CSOSEND/CSOCL`, hex data, pushed `+CSONMI` URCs.
    CsoHex,
    /// SIM7080 `AT+CAOPEN/CASEND/CARECV/CACLOSE`.
    Ca,
    /// No socket commands known: only `mode = "os"` works.
    None,
}

/// A signal query and the parser of its reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignalCommand {
    Nuestats,
    QengServingcell,
    Qcsq,
    Ceng,
    Cesq,
    Csq,
}

impl SignalCommand {
    /// The command text to send.
    pub fn command(self) -> &'static str {
        match self {
            SignalCommand::Nuestats => "AT+NUESTATS",
            SignalCommand::QengServingcell => "AT+QENG=\"servingcell\"",
            SignalCommand::Qcsq => "AT+QCSQ",
            SignalCommand::Ceng => "AT+CENG?",
            SignalCommand::Cesq => "AT+CESQ",
            SignalCommand::Csq => "AT+CSQ",
        }
    }

    /// Parses the information lines of the command's exchange.
    pub fn parse(self, lines: &[String]) -> Result<Signal, ReplyError> {
        match self {
            SignalCommand::Nuestats => nuestats(lines),
            SignalCommand::QengServingcell => qeng_lines(lines),
            SignalCommand::Qcsq => qcsq(find_line("QCSQ", "+QCSQ:", lines)?),
            SignalCommand::Ceng => ceng(find_line("CENG", "+CENG:", lines)?),
            SignalCommand::Cesq => cesq(find_line("CESQ", "+CESQ:", lines)?),
            SignalCommand::Csq => Ok(Signal {
                rssi_dbm: csq(find_line("CSQ", "+CSQ:", lines)?)?.map(f32::from),
                ..Signal::default()
            }),
        }
    }
}

/// What the engine knows about one module family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Profile {
    /// Stable id (config, status, logs): "bc95", "bg96", ...
    pub id: &'static str,
    pub name: &'static str,
    /// Upper-case substrings of the ATI / CGMM / CGMR text that select this profile.
    pub detect: &'static [&'static str],
    /// Echo on after power-on (the engine sends ATE0 anyway).
    pub echo_default: bool,
    /// Signal commands in order of preference; the engine merges what they give.
    pub signal: &'static [SignalCommand],
    /// The module reset command (reset ladder step 2).
    pub reset: &'static str,
    /// The line that ends the boot text after a reset or power-on (`None`: wait for the
    /// module to answer `AT` instead).
    pub boot_marker: Option<&'static str>,
    pub socket: SocketDialect,
    /// Most payload bytes per send command (raw bytes, before hex encoding).
    pub max_send: usize,
    /// Socket data travels as hex text on the UART.
    pub hex_data: bool,
    /// Command that activates the PDP context before sockets (`None`: attach does it).
    pub pdp_activation: Option<&'static str>,
    /// Most bytes asked per read command (NSORF, QIRD, CARECV).
    pub max_read: usize,
    pub psm: bool,
    pub edrx: bool,
}

const BC95: Profile = Profile {
    id: "bc95",
    name: "Quectel BC95/BC28",
    detect: &["BC95", "BC28", "BC35"],
    echo_default: false,
    signal: &[SignalCommand::Nuestats, SignalCommand::Csq],
    reset: "AT+NRB",
    boot_marker: Some("Neul"),
    socket: SocketDialect::NsoHex,
    max_send: 512,
    hex_data: true,
    pdp_activation: None,
    max_read: 512,
    psm: true,
    edrx: true,
};

const BC66: Profile = Profile {
    id: "bc66",
    name: "Quectel BC66/BC660K",
    detect: &["BC660", "BC66", "BC65", "BC68"],
    echo_default: true,
    signal: &[SignalCommand::Cesq, SignalCommand::Csq],
    reset: "AT+QRST=1",
    boot_marker: None,
    socket: SocketDialect::QiHex,
    max_send: 512,
    hex_data: true,
    pdp_activation: None,
    max_read: 512,
    psm: true,
    edrx: true,
};

const BG96: Profile = Profile {
    id: "bg96",
    name: "Quectel BG95/BG96",
    detect: &["BG95", "BG96", "BG77", "BG600"],
    echo_default: true,
    signal: &[
        SignalCommand::QengServingcell,
        SignalCommand::Qcsq,
        SignalCommand::Csq,
    ],
    reset: "AT+CFUN=1,1",
    boot_marker: Some("APP RDY"),
    socket: SocketDialect::Qi,
    max_send: 1460,
    hex_data: false,
    pdp_activation: Some("AT+QIACT=1"),
    max_read: 1500,
    psm: true,
    edrx: true,
};

const SIM7020: Profile = Profile {
    id: "sim7020",
    name: "SIMCom SIM7020",
    detect: &["SIM7020"],
    echo_default: true,
    signal: &[SignalCommand::Ceng, SignalCommand::Csq],
    reset: "AT+CRESET",
    boot_marker: Some("RDY"),
    socket: SocketDialect::CsoHex,
    max_send: 512,
    hex_data: true,
    pdp_activation: None,
    max_read: 512,
    psm: true,
    edrx: true,
};

const SIM7080: Profile = Profile {
    id: "sim7080",
    name: "SIMCom SIM7080",
    detect: &["SIM7080", "SIM7070"],
    echo_default: true,
    signal: &[SignalCommand::Cesq, SignalCommand::Csq],
    reset: "AT+CFUN=1,1",
    boot_marker: Some("RDY"),
    socket: SocketDialect::Ca,
    max_send: 1460,
    hex_data: false,
    pdp_activation: Some("AT+CNACT=0,1"),
    max_read: 1460,
    psm: true,
    edrx: true,
};

impl Profile {
    /// Whether `line` (a URC) is this module's end of boot text.
    pub fn boot_complete(&self, line: &str) -> bool {
        self.boot_marker.is_some_and(|m| line.trim_end() == m)
    }
}

/// The 3GPP TS 27.007 subset every module has; no socket commands.
pub const GENERIC: Profile = Profile {
    id: "generic",
    name: "generic 3GPP",
    detect: &[],
    echo_default: true,
    signal: &[SignalCommand::Cesq, SignalCommand::Csq],
    reset: "AT+CFUN=1,1",
    boot_marker: None,
    socket: SocketDialect::None,
    max_send: 0,
    hex_data: false,
    pdp_activation: Some("AT+CGACT=1,1"),
    max_read: 0,
    psm: true,
    edrx: true,
};

/// Every known profile, most specific detection first; `GENERIC` last.
pub const PROFILES: &[Profile] = &[BC95, BC66, BG96, SIM7020, SIM7080, GENERIC];

/// The profile for the text of ATI / AT+CGMM / AT+CGMR lines (any of them, any case);
/// `GENERIC` when nothing matches.
pub fn detect<S: AsRef<str>>(lines: &[S]) -> &'static Profile {
    let text: String = lines
        .iter()
        .take(64)
        .map(|l| {
            l.as_ref()
                .chars()
                .take(256)
                .collect::<String>()
                .to_ascii_uppercase()
        })
        .collect::<Vec<_>>()
        .join("\n");
    PROFILES
        .iter()
        .find(|p| p.detect.iter().any(|needle| text.contains(needle)))
        .unwrap_or(&GENERIC)
}

/// The profile with this id.
pub fn by_id(id: &str) -> Option<&'static Profile> {
    PROFILES.iter().find(|p| p.id == id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detection_from_transcripts() {
        let cases: &[(&[&str], &str)] = &[
            (&["Quectel", "BC95-B8", "Revision:BC95HBR01A01"], "bc95"),
            (&["Quectel", "BC28", "Revision:BC28JAR01A01"], "bc95"),
            (
                &[
                    "Quectel_Ltd",
                    "Quectel_BC660K-GL",
                    "Revision: BC660KGLAAR01A03",
                ],
                "bc66",
            ),
            (&["Quectel", "BC66", "Revision: BC66NBR01A10"], "bc66"),
            (&["Quectel", "BG96", "Revision: BG96MAR02A07M1G"], "bg96"),
            (&["Quectel", "BG95-M3", "Revision: BG95M3LAR02A03"], "bg96"),
            (&["SIM7020E R1752"], "sim7020"),
            (&["SIMCOM_SIM7020E"], "sim7020"),
            (&["SIMCOM_SIM7080G"], "sim7080"),
            (&["Revision:1951B08SIM7080"], "sim7080"),
            (&["u-blox", "SARA-N211"], "generic"),
            (&[], "generic"),
            (&["bg96 lower case"], "bg96"),
        ];
        for (lines, id) in cases {
            assert_eq!(detect(lines).id, *id, "{lines:?}");
        }
    }

    #[test]
    fn table_is_consistent() {
        for p in PROFILES {
            assert_eq!(by_id(p.id), Some(p));
            assert!(!p.signal.is_empty(), "{}", p.id);
            assert!(p.reset.starts_with("AT"), "{}", p.id);
            let sockets = p.socket != SocketDialect::None;
            assert_eq!(sockets, p.max_send > 0, "{}", p.id);
            assert!(p.max_send <= crate::modem::at::MAX_DATA, "{}", p.id);
            assert!(p.max_read <= crate::modem::at::MAX_DATA, "{}", p.id);
            assert!(!p.detect.is_empty() || p.id == "generic");
        }
        assert_eq!(PROFILES.last(), Some(&GENERIC));
    }

    #[test]
    fn boot_markers() {
        let p = |id| by_id(id).expect("profile");
        assert!(p("bc95").boot_complete("Neul "));
        assert!(!p("bc95").boot_complete("REBOOTING"));
        assert!(p("bg96").boot_complete("APP RDY"));
        assert!(!p("bg96").boot_complete("RDY"));
        assert!(p("sim7020").boot_complete("RDY"));
        assert!(!GENERIC.boot_complete("RDY"));
    }

    #[test]
    fn signal_commands_parse_their_exchange() {
        let lines = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let csq = SignalCommand::Csq
            .parse(&lines(&["+CSQ:22,99"]))
            .expect("csq");
        assert_eq!(csq.rssi_dbm, Some(-69.0));
        let cesq = SignalCommand::Cesq
            .parse(&lines(&["+CESQ: 99,99,255,255,20,45"]))
            .expect("cesq");
        assert_eq!(cesq.rsrp_dbm, Some(-96.0));
        assert!(SignalCommand::Ceng.parse(&lines(&["+CSQ: 1,2"])).is_err());
        for p in PROFILES {
            for s in p.signal {
                assert!(s.command().starts_with("AT+"));
                assert!(s.parse(&[]).is_err(), "{s:?} of nothing");
            }
        }
    }
}
