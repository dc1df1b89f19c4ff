//! The AT command classifier (pure core): what a command line does to the module and its link,
//! decided from its text alone. The engine uses it to put socket traffic first (`priority`),
//! the supervisor to defer link-disturbing setters while a module socket carries a session,
//! and `gasdtu modem at` to refuse link-breaking commands without `--force`. It knows the
//! socket commands of every dialect (BC95/SIM7020 `NSO*`, Quectel `QI*` and BC66's older
//! `QSO*`, SIM7020 `CSO*`, SIM7080 `CA*` with `CNACT`), the attach / operator / radio / PDP /
//! registration-reporting / PSM-eDRX / band setters, and the reset and power-down commands.
//! A line with several commands (`AT+CGATT=1;+COPS=0`) takes the class of its most severe
//! part. Matching is case-insensitive on the command name; no I/O, no allocation beyond the
//! upper-cased copy.

/// What a socket command does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SocketOp {
    /// Creates or connects a module socket (`NSOCR`, `NSOCO`, `QIOPEN`, `CSOC`, `CSOCON`,
    /// `CAOPEN`, BC66's `QSOC`/`QSOCON`).
    Open,
    /// Closes one (`NSOCL`, `QICLOSE`, `CSOCL`, `CACLOSE`, `QSOCL`).
    Close,
    /// Moves data or asks a socket's state (send, read, state, error queries).
    Data,
    /// Brings up the context sockets need (`QIACT=`, `CNACT=<n>,1`) or sets socket options
    /// (`QICFG`, `CACFG`, `CASSLCFG`, `CACID`, `NSONMI`).
    Setup,
}

/// Why a setter disturbs the link (what it touches).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disturb {
    /// `CGATT=`: attach or detach (attach waits up to 85 s).
    Attach,
    /// `COPS=`: operator selection (up to 180 s, deregisters).
    Operator,
    /// `CFUN=` (other than a reset): the radio on/off.
    Radio,
    /// `CGACT=`, `QIDEACT`, `CNACT=<n>,0`: a PDP context up or down.
    Context,
    /// `CEREG=`: the registration reporting level changes.
    Reporting,
    /// `CPSMS=`, `CEDRXS=`: power-saving timers renegotiated with the network.
    PowerSaving,
    /// `NBAND=`, `NCONFIG=`, `QBAND=`, `QCFG=`, `CBANDCFG=`, `CNMP=`, `CMNB=`: bands, scan
    /// modes and module configuration that reselects the network.
    Config,
}

/// The class of one command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AtClass {
    /// Reads only: `AT`, `ATI`, reads (`...?`), tests (`...=?`), identity and signal queries.
    Query,
    /// A harmless setter (`ATE0`, `AT+CMEE=1`, `AT+CGDCONT=...`, sleep settings, ...).
    Other,
    /// The socket data path.
    Socket(SocketOp),
    /// A setter that holds the port long or takes the link down under a session.
    Disturbing(Disturb),
    /// A module reset or power down (`NRB`, `QRST`, `CRESET`, `QPOWD`, `CPOWD`, `CFUN=1,1`,
    /// `ATZ`, `AT&F`).
    Reset,
}

impl AtClass {
    /// Breaks a live session: `gasdtu modem at` refuses it without `--force`.
    pub fn link_breaking(self) -> bool {
        matches!(self, AtClass::Disturbing(_) | AtClass::Reset)
    }

    /// How severe the class is (a multi-command line takes its most severe part).
    fn rank(self) -> u8 {
        match self {
            AtClass::Query => 0,
            AtClass::Other => 1,
            AtClass::Socket(_) => 2,
            AtClass::Disturbing(_) => 3,
            AtClass::Reset => 4,
        }
    }

    /// A short name for logs and status (`query`, `socket_open`, `attach`, `reset`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            AtClass::Query => "query",
            AtClass::Other => "other",
            AtClass::Socket(SocketOp::Open) => "socket_open",
            AtClass::Socket(SocketOp::Close) => "socket_close",
            AtClass::Socket(SocketOp::Data) => "socket_data",
            AtClass::Socket(SocketOp::Setup) => "socket_setup",
            AtClass::Disturbing(Disturb::Attach) => "attach",
            AtClass::Disturbing(Disturb::Operator) => "operator",
            AtClass::Disturbing(Disturb::Radio) => "radio",
            AtClass::Disturbing(Disturb::Context) => "context",
            AtClass::Disturbing(Disturb::Reporting) => "reporting",
            AtClass::Disturbing(Disturb::PowerSaving) => "power_saving",
            AtClass::Disturbing(Disturb::Config) => "config",
            AtClass::Reset => "reset",
        }
    }
}

/// Who asked: the engine serves the higher priority first (socket, then field tool, then
/// supervisor); one command on the wire at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Priority {
    Supervisor = 0,
    Field = 1,
    Socket = 2,
}

/// The priority a command from `caller` runs at: socket commands always go first, whoever
/// sends them; everything else at its caller's priority.
pub fn priority(caller: Priority, class: AtClass) -> Priority {
    match class {
        AtClass::Socket(_) => Priority::Socket,
        _ => caller,
    }
}

/// Whether the supervisor holds a command of `class` back until the module socket closes: a
/// link-disturbing setter while a socket is open on a live link (registered and attached).
/// Resets are never held (the supervisor sends them only as the reset ladder's rescue of a
/// module that does not answer), nor is anything while the link is down (no session to
/// protect, and attach is how it comes back).
pub fn defer(class: AtClass, socket_open: bool, link_up: bool) -> bool {
    matches!(class, AtClass::Disturbing(_)) && socket_open && link_up
}

/// Exec-only commands that just read (no `?` needed).
const READS: &[&str] = &[
    "+CSQ",
    "+CESQ",
    "+NUESTATS",
    "+QCSQ",
    "+QENG",
    "+QNWINFO",
    "+QSPN",
    "+CENG",
    "+CPSI",
    "+CGMM",
    "+CGMR",
    "+CGMI",
    "+CGSN",
    "+CIMI",
    "+CCID",
    "+QCCID",
    "+NCCID",
    "+CGPADDR",
    "+CEDRXRDP",
    "+CCLK",
    "+GMR",
    "+GMM",
    "+GSN",
];

/// Socket commands by name prefix (longest first where prefixes overlap).
const SOCKETS: &[(&str, SocketOp)] = &[
    // BC95 / SIM7020 NSO*: NSOCR create, NSOCO connect, NSOST/NSOSD/NSOSTF send, NSORF read,
    // NSOCL close, NSONMI its URC mode.
    ("+NSOCR", SocketOp::Open),
    ("+NSOCO", SocketOp::Open),
    ("+NSOCL", SocketOp::Close),
    ("+NSONMI", SocketOp::Setup),
    ("+NSO", SocketOp::Data),
    ("+NQSOS", SocketOp::Data),
    // Quectel QI* (BG96, BC66): QIOPEN, QISEND/QISENDEX, QIRD, QICLOSE, QISTATE, QIGETERROR.
    ("+QIOPEN", SocketOp::Open),
    ("+QICLOSE", SocketOp::Close),
    ("+QICFG", SocketOp::Setup),
    ("+QIACT", SocketOp::Setup),
    ("+QISEND", SocketOp::Data),
    ("+QIRD", SocketOp::Data),
    ("+QISTATE", SocketOp::Data),
    ("+QIGETERROR", SocketOp::Data),
    ("+QISDE", SocketOp::Setup),
    // BC66's older QSO* set.
    ("+QSOCON", SocketOp::Open),
    ("+QSOCL", SocketOp::Close),
    ("+QSOC", SocketOp::Open),
    ("+QSO", SocketOp::Data),
    // SIM7020 CSO*: CSOC create, CSOCON connect, CSOSEND, CSORCV/CSORXGET, CSOCL, CSOSTATUS.
    ("+CSOCON", SocketOp::Open),
    ("+CSOCL", SocketOp::Close),
    ("+CSOC", SocketOp::Open),
    ("+CSO", SocketOp::Data),
    // SIM7080 CA*: CAOPEN, CASEND, CARECV, CACLOSE, CASTATE, CAACK, CASERVER, CACFG,
    // CASSLCFG, CACID.
    ("+CAOPEN", SocketOp::Open),
    ("+CACLOSE", SocketOp::Close),
    ("+CASEND", SocketOp::Data),
    ("+CARECV", SocketOp::Data),
    ("+CASTATE", SocketOp::Data),
    ("+CAACK", SocketOp::Data),
    ("+CASERVER", SocketOp::Open),
    ("+CACFG", SocketOp::Setup),
    ("+CASSLCFG", SocketOp::Setup),
    ("+CACID", SocketOp::Setup),
];

/// Setters (`NAME=`) that disturb the link.
const SETTERS: &[(&str, Disturb)] = &[
    ("+CGATT", Disturb::Attach),
    ("+COPS", Disturb::Operator),
    ("+CFUN", Disturb::Radio),
    ("+CGACT", Disturb::Context),
    ("+QIDEACT", Disturb::Context),
    ("+CEREG", Disturb::Reporting),
    ("+CPSMS", Disturb::PowerSaving),
    ("+CEDRXS", Disturb::PowerSaving),
    ("+NBAND", Disturb::Config),
    ("+NCONFIG", Disturb::Config),
    ("+QBAND", Disturb::Config),
    ("+QCFG", Disturb::Config),
    ("+CBANDCFG", Disturb::Config),
    ("+CNMP", Disturb::Config),
    ("+CMNB", Disturb::Config),
];

/// Reset and power-down commands (any form).
const RESETS: &[&str] = &["+NRB", "+QRST", "+CRESET", "+QPOWD", "+CPOWD"];

/// The class of a command line (`AT...`, without CR).
pub fn classify(line: &str) -> AtClass {
    let upper = line.trim().to_ascii_uppercase();
    let Some(rest) = upper.strip_prefix("AT") else {
        return AtClass::Other;
    };
    split_outside_quotes(rest)
        .map(|part| classify_one(part.trim()))
        .max_by_key(|c| c.rank())
        .unwrap_or(AtClass::Query)
}

/// `rest` split at `;` outside double quotes.
fn split_outside_quotes(rest: &str) -> impl Iterator<Item = &str> {
    let mut quoted = false;
    let mut start = 0;
    let mut parts = Vec::new();
    for (i, c) in rest.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ';' if !quoted => {
                parts.push(&rest[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&rest[start..]);
    parts.into_iter()
}

/// One command after `AT` (upper case): `""`, `I`, `E0`, `+CGATT=1`, `&F`, ...
fn classify_one(cmd: &str) -> AtClass {
    if cmd.is_empty() || cmd == "I" || cmd.starts_with("I ") {
        return AtClass::Query;
    }
    if cmd.starts_with('Z') || cmd.starts_with("&F") {
        return AtClass::Reset;
    }
    if !cmd.starts_with('+') && !cmd.starts_with('$') && !cmd.starts_with('^') {
        // ATE0, ATV1, ATQ0, ATS...: the line's own settings.
        return AtClass::Other;
    }
    let name_end = cmd.find(['=', '?']).unwrap_or(cmd.len());
    let (name, tail) = cmd.split_at(name_end);
    let name = name.trim();
    // Reads (`+X?`) and tests (`+X=?`) never change anything.
    if tail.starts_with('?') || tail.starts_with("=?") {
        return AtClass::Query;
    }
    let args = tail.strip_prefix('=').map(str::trim);
    if RESETS.contains(&name) {
        return AtClass::Reset;
    }
    if name == "+CFUN" {
        // `AT+CFUN=<fun>,1`: reset with the new function.
        if args.is_some_and(|a| arg(a, 1) == Some("1")) {
            return AtClass::Reset;
        }
    }
    if name == "+CNACT" {
        // `AT+CNACT=<pdpidx>,<action>`: 1/2 bring the context up, 0 takes it down.
        return match args.and_then(|a| arg(a, 1)) {
            Some("0") => AtClass::Disturbing(Disturb::Context),
            _ => AtClass::Socket(SocketOp::Setup),
        };
    }
    if let Some((_, op)) = SOCKETS.iter().find(|(p, _)| name.starts_with(p)) {
        return AtClass::Socket(*op);
    }
    if args.is_some() {
        if let Some((_, d)) = SETTERS.iter().find(|(p, _)| name == *p) {
            return AtClass::Disturbing(*d);
        }
    }
    if READS.contains(&name) {
        return AtClass::Query;
    }
    AtClass::Other
}

/// The `n`th comma-separated argument, trimmed (quotes kept).
fn arg(args: &str, n: usize) -> Option<&str> {
    args.split(',').nth(n).map(str::trim)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        use AtClass::*;
        use Disturb::*;
        use SocketOp::*;
        let cases: &[(&str, AtClass)] = &[
            // Queries.
            ("AT", Query),
            ("at", Query),
            ("ATI", Query),
            ("AT+CSQ", Query),
            ("AT+CESQ", Query),
            ("AT+NUESTATS", Query),
            ("AT+NUESTATS=RADIO", Query),
            ("AT+QENG=\"servingcell\"", Query),
            ("AT+CGATT?", Query),
            ("AT+CGATT=?", Query),
            ("AT+COPS?", Query),
            ("AT+CFUN?", Query),
            ("AT+CEREG?", Query),
            ("AT+CPSMS?", Query),
            ("AT+CEDRXS?", Query),
            ("AT+CEDRXRDP", Query),
            ("AT+CCLK?", Query),
            ("AT+CGPADDR", Query),
            ("AT+CGPADDR=1", Query),
            ("AT+QISTATE?", Query),
            ("AT+CNACT?", Query),
            ("AT+CENG?", Query),
            ("  at+csq  ", Query),
            // Harmless setters.
            ("ATE0", Other),
            ("AT+CMEE=1", Other),
            ("AT+CGDCONT=1,\"IP\",\"cmnbiot\"", Other),
            ("AT+CTZR=2", Other),
            ("AT+CSCON=1", Other),
            ("AT+XYZ", Other),
            ("hello", Other),
            ("", Other),
            // BC95 / SIM7020 NSO*.
            ("AT+NSOCR=DGRAM,17,0,1", Socket(Open)),
            ("AT+NSOCR=STREAM,6,0,1", Socket(Open)),
            ("AT+NSOCO=1,127.0.0.1,8883", Socket(Open)),
            ("AT+NSOSD=1,2,4869", Socket(Data)),
            ("AT+NSOST=0,127.0.0.1,5683,2,4869", Socket(Data)),
            ("AT+NSORF=1,512", Socket(Data)),
            ("AT+NSOCL=1", Socket(Close)),
            ("AT+NSONMI=3", Socket(Setup)),
            ("AT+NQSOS=0", Socket(Data)),
            // Quectel QI* (BG96, BC66).
            ("AT+QIOPEN=1,0,\"TCP\",\"127.0.0.1\",8883,0,1", Socket(Open)),
            ("AT+QISEND=0,5", Socket(Data)),
            ("AT+QISENDEX=0,\"4869\"", Socket(Data)),
            ("AT+QIRD=0,1500", Socket(Data)),
            ("AT+QICLOSE=0", Socket(Close)),
            ("AT+QISTATE=1,0", Socket(Data)),
            ("AT+QICFG=\"dataformat\",0,0", Socket(Setup)),
            ("AT+QIACT=1", Socket(Setup)),
            ("AT+QIGETERROR", Socket(Data)),
            // BC66's QSO*.
            ("AT+QSOC=1,1,1", Socket(Open)),
            ("AT+QSOCON=0,8883,\"127.0.0.1\"", Socket(Open)),
            ("AT+QSOSEND=0,2,4869", Socket(Data)),
            ("AT+QSOCL=0", Socket(Close)),
            // SIM7020 CSO*.
            ("AT+CSOC=1,1,1", Socket(Open)),
            ("AT+CSOCON=0,8883,\"127.0.0.1\"", Socket(Open)),
            ("AT+CSOSEND=0,2,4869", Socket(Data)),
            ("AT+CSORCV=0,512", Socket(Data)),
            ("AT+CSOCL=0", Socket(Close)),
            ("AT+CSOSTATUS=0", Socket(Data)),
            // SIM7080 CA* and CNACT.
            ("AT+CNACT=0,1", Socket(Setup)),
            ("AT+CNACT=0,2", Socket(Setup)),
            ("AT+CNACT=0,0", Disturbing(Context)),
            ("AT+CAOPEN=0,0,\"TCP\",\"127.0.0.1\",8883", Socket(Open)),
            ("AT+CASEND=0,5", Socket(Data)),
            ("AT+CARECV=0,512", Socket(Data)),
            ("AT+CACLOSE=0", Socket(Close)),
            ("AT+CASTATE?", Query),
            ("AT+CASTATE", Socket(Data)),
            ("AT+CACFG=\"timeout\",0,10", Socket(Setup)),
            ("AT+CASSLCFG=0,\"SSL\",1", Socket(Setup)),
            ("AT+CACID=0", Socket(Setup)),
            ("AT+CAACK=0", Socket(Data)),
            ("AT+CASERVER=0,0,\"TCP\",8883", Socket(Open)),
            // Link-disturbing setters.
            ("AT+CGATT=1", Disturbing(Attach)),
            ("AT+CGATT=0", Disturbing(Attach)),
            ("at+cgatt=1", Disturbing(Attach)),
            ("AT+COPS=0", Disturbing(Operator)),
            ("AT+COPS=1,2,\"46000\"", Disturbing(Operator)),
            ("AT+CFUN=0", Disturbing(Radio)),
            ("AT+CFUN=1", Disturbing(Radio)),
            ("AT+CFUN=1,0", Disturbing(Radio)),
            ("AT+CGACT=1,1", Disturbing(Context)),
            ("AT+QIDEACT=1", Disturbing(Context)),
            ("AT+CEREG=5", Disturbing(Reporting)),
            (
                "AT+CPSMS=1,,,\"00100001\",\"00000011\"",
                Disturbing(PowerSaving),
            ),
            ("AT+CPSMS=0", Disturbing(PowerSaving)),
            ("AT+CEDRXS=1,5,\"0101\"", Disturbing(PowerSaving)),
            ("AT+NBAND=8", Disturbing(Config)),
            ("AT+NCONFIG=AUTOCONNECT,TRUE", Disturbing(Config)),
            ("AT+QCFG=\"nwscanmode\",3", Disturbing(Config)),
            ("AT+QCFG?", Query),
            ("AT+CNMP=38", Disturbing(Config)),
            // Resets.
            ("AT+NRB", Reset),
            ("AT+QRST=1", Reset),
            ("AT+CRESET", Reset),
            ("AT+QPOWD", Reset),
            ("AT+QPOWD=1", Reset),
            ("AT+CPOWD=1", Reset),
            ("AT+CFUN=1,1", Reset),
            ("AT+CFUN=1, 1", Reset),
            ("ATZ", Reset),
            ("AT&F", Reset),
            // Several commands: the most severe part.
            ("AT+CSQ;+CGATT=1", Disturbing(Attach)),
            ("AT+CSQ;+NRB", Reset),
            ("AT+CSQ;+CEREG?", Query),
            ("ATE0;+NSOCL=1", Socket(Close)),
            // A quoted `;` does not split.
            ("AT+CGDCONT=1,\"IP\",\"a;+NRB\"", Other),
        ];
        for (line, want) in cases {
            assert_eq!(classify(line), *want, "{line:?}");
        }
    }

    #[test]
    fn link_breaking_and_priority() {
        for line in [
            "AT+CFUN=0",
            "AT+CGATT=0",
            "AT+COPS=2",
            "AT+NRB",
            "AT+CNACT=0,0",
        ] {
            assert!(classify(line).link_breaking(), "{line}");
        }
        for line in ["AT+CSQ", "AT+CFUN?", "AT+QIRD=0,1500", "ATE0", "AT+CMEE=1"] {
            assert!(!classify(line).link_breaking(), "{line}");
        }
        let cases = [
            (Priority::Supervisor, "AT+CSQ", Priority::Supervisor),
            (Priority::Supervisor, "AT+NSORF=1,512", Priority::Socket),
            (Priority::Field, "AT+CGATT=1", Priority::Field),
            (Priority::Field, "AT+QISTATE=1,0", Priority::Socket),
            (Priority::Socket, "AT+CGATT?", Priority::Socket),
        ];
        for (caller, line, want) in cases {
            assert_eq!(priority(caller, classify(line)), want, "{line}");
        }
        assert!(Priority::Socket > Priority::Field && Priority::Field > Priority::Supervisor);
        assert_eq!(classify("AT+CEDRXS=0").as_str(), "power_saving");
    }

    #[test]
    fn deferral() {
        // (command, socket open, link up, deferred)
        let cases = [
            ("AT+CGATT=1", true, true, true),
            ("AT+COPS=0", true, true, true),
            ("AT+CFUN=0", true, true, true),
            ("AT+CPSMS=1,,,\"00100001\",\"00000011\"", true, true, true),
            ("AT+CEDRXS=1,5,\"0101\"", true, true, true),
            ("AT+CEREG=5", true, true, true),
            ("AT+CGATT=1", false, true, false),
            ("AT+CGATT=1", true, false, false),
            ("AT+NRB", true, true, false),
            ("AT+CFUN=1,1", true, true, false),
            ("AT+CSQ", true, true, false),
            ("AT+CGDCONT=1,\"IP\",\"x\"", true, true, false),
            ("AT+QIRD=0,1500", true, true, false),
        ];
        for (cmd, open, up, want) in cases {
            assert_eq!(defer(classify(cmd), open, up), want, "{cmd} {open} {up}");
        }
    }
}
