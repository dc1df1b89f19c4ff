//! Per-command timeouts (pure core): how long the engine waits for a command's final result,
//! from docs/dev/modem-dialects.md, plus the waits that are not a command's (boot text after a
//! reset, the `+QIOPEN` URC after its OK, the after-sleep retry), and which commands may be
//! resent blindly after the after-sleep bare CRLF (`safe_to_retry`). Data sends are sized from
//! their payload instead (`send_timeout`). Matched on the command
//! text's prefix, case-insensitively; the first matching row wins, so specific rows come
//! first. No I/O, no clock.

use std::time::Duration;

/// A command not in the table.
pub const DEFAULT: Duration = Duration::from_secs(5);
/// Boot text after a reset command's OK or a power cycle.
pub const BOOT: Duration = Duration::from_secs(30);
/// `+QIOPEN: <id>,<err>` after `AT+QIOPEN`'s OK.
pub const QIOPEN_URC: Duration = Duration::from_secs(150);
/// A safe command answered only by a bare CRLF (the module slept) is retried after this.
pub const SLEEP_RETRY: Duration = Duration::from_secs(1);

/// (command prefix, upper case; seconds). Reset commands: 10 s for their OK.
const TABLE: &[(&str, u64)] = &[
    ("AT+CGATT=1", 85),
    ("AT+COPS=", 180),
    ("AT+QIOPEN", 150),
    ("AT+QIACT", 150),
    ("AT+QIDEACT", 40),
    ("AT+CGACT", 150),
    ("AT+CNACT", 150),
    ("AT+CAOPEN", 150),
    ("AT+NSOCO", 60),
    ("AT+CSOCON", 60),
    ("AT+CFUN=", 15),
    ("AT+NRB", 10),
    ("AT+CRESET", 10),
    ("AT+QRST", 10),
    ("AT+QPOWD", 10),
];

/// Data sends, sized from their payload (`send_timeout`): `<prefix>=<id>,<len>[,<data>]`.
const SENDS: &[&str] = &["AT+QISEND=", "AT+CASEND=", "AT+NSOSD=", "AT+CSOSEND="];
/// The NB-IoT uplink a send's payload is sized on, bits per second.
pub const UPLINK_BPS: u64 = 12_000;
/// The slowest UART gasdtu drives a module at (10 bits per character on the wire).
pub const SLOWEST_BAUD: u64 = 9_600;
/// Longest `<len>` a send is sized for (no module takes more per command); larger is clamped.
pub const MAX_SEND_LEN: u64 = 1_500;

/// A data send's timeout: the module's own answer (`DEFAULT`), plus the command text and a
/// prompt form's payload crossing the UART at `SLOWEST_BAUD`, plus the payload's airtime on a
/// `UPLINK_BPS` uplink (`SEND OK` comes once the data left). E.g. BC66's inline
/// `AT+QISEND=0,512,<1024 hex digits>`: 5 s + 1.09 s + 0.35 s. `None` when `command` is not a
/// send or its `<len>` is not a number (then the table applies).
pub fn send_timeout(command: &str) -> Option<Duration> {
    let c = command.trim();
    let prefix = SENDS.iter().find(|p| {
        c.len() >= p.len() && c.as_bytes()[..p.len()].eq_ignore_ascii_case(p.as_bytes())
    })?;
    let mut fields = c[prefix.len()..].splitn(3, ',');
    let (_id, len, data) = (fields.next()?, fields.next()?, fields.next());
    let len = len.trim().parse::<u64>().ok()?.min(MAX_SEND_LEN);
    // Inline data rides in the command text; a prompt form's payload follows it.
    let uart_chars = c.len() as u64 + 2 + if data.is_none() { len } else { 0 };
    let uart_ms = (uart_chars * 10 * 1000).div_ceil(SLOWEST_BAUD);
    let air_ms = (len * 8 * 1000).div_ceil(UPLINK_BPS);
    Some(DEFAULT + Duration::from_millis(uart_ms + air_ms))
}

/// The timeout for a command's final result.
pub fn timeout_for(command: &str) -> Duration {
    if let Some(t) = send_timeout(command) {
        return t;
    }
    let c = command.trim_start().as_bytes();
    TABLE
        .iter()
        .find(|(prefix, _)| {
            c.len() >= prefix.len() && c[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
        })
        .map_or(DEFAULT, |&(_, s)| Duration::from_secs(s))
}

/// Commands without side effects beyond their answer, resent blindly after a bare CRLF.
const SAFE: &[&str] = &[
    "AT+CSQ",
    "AT+CESQ",
    "AT+NUESTATS",
    "AT+QCSQ",
    "AT+QENG=\"SERVINGCELL\"",
    "AT+CGMM",
    "AT+CGMR",
    "AT+CGSN",
    "AT+CIMI",
    "AT+CGPADDR",
    "AT+CEREG=",
    "AT+CSCON=",
];

/// Whether `command` may be sent again when its first try got only a bare CRLF (the module
/// was asleep): `AT`, `ATE0`/`ATE1`, `ATI`, read commands (`...?`) and the listed queries and
/// URC-level settings. Never a send, an open, an attach or a reset.
pub fn safe_to_retry(command: &str) -> bool {
    let c = command.trim().to_ascii_uppercase();
    matches!(c.as_str(), "AT" | "ATE0" | "ATE1" | "ATI")
        || (c.starts_with("AT+") && c.ends_with('?') && !c.contains('='))
        || SAFE.iter().any(|s| c.starts_with(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        let cases: &[(&str, u64)] = &[
            ("AT", 5),
            ("AT+CGATT=1", 85),
            ("at+cgatt=1", 85),
            ("AT+CGATT?", 5),
            ("AT+CGATT=0", 5),
            ("AT+COPS=0", 180),
            ("AT+COPS?", 5),
            ("AT+QIOPEN=1,0,\"TCP\",\"127.0.0.1\",8883,0,1", 150),
            ("AT+QIACT=1", 150),
            ("AT+QIDEACT=1", 40),
            ("AT+CGACT=1,1", 150),
            ("AT+NSOCO=1,127.0.0.1,8883", 60),
            ("AT+CSOCON=0,8883,\"127.0.0.1\"", 60),
            ("AT+CFUN=0", 15),
            ("AT+CFUN=1,1", 15),
            ("AT+CFUN?", 5),
            ("AT+NRB", 10),
            ("AT+CRESET", 10),
            ("", 5),
            ("AT+C", 5),
            ("Ä", 5),
        ];
        for (cmd, secs) in cases {
            assert_eq!(timeout_for(cmd), Duration::from_secs(*secs), "{cmd}");
        }
    }

    #[test]
    fn sends_are_sized_from_their_payload() {
        let hex512 = "41".repeat(512);
        let bc66_512 = format!("AT+QISEND=0,512,{hex512}");
        let cases: &[(&str, Option<u64>)] = &[
            // BC66 inline hex: 5000 + UART (1042 chars incl. CRLF at 9600 baud: 1086 ms)
            // + air (512 B at 12 kbit/s: 342 ms).
            (&bc66_512, Some(5000 + 1086 + 342)),
            ("AT+QISEND=0,2,4142", Some(5000 + 21 + 2)),
            ("at+qisend=0,2,4142", Some(5000 + 21 + 2)),
            // Prompt forms: the payload crosses the UART after the command.
            ("AT+QISEND=0,1460", Some(5000 + 1540 + 974)),
            ("AT+CASEND=0,1460", Some(5000 + 1540 + 974)),
            ("AT+NSOSD=0,2,4142", Some(5000 + 20 + 2)),
            ("AT+CSOSEND=0,4,41424344", Some(5000 + 27 + 3)),
            // An absurd length is clamped (1500 B) and the text is what it is.
            (
                "AT+CASEND=0,99999999",
                Some(5000 + (22 + 1500) * 10 * 1000 / 9600 + 1 + 1000),
            ),
            // Not sizeable: the table (default) applies.
            ("AT+QISEND=0", None),
            ("AT+QISEND=0,x,41", None),
            ("AT+QISEND=0,-1,41", None),
            ("AT+QISEND?", None),
            ("AT+QIRD=0,512", None),
            ("", None),
        ];
        for (cmd, ms) in cases {
            let want = ms.map(Duration::from_millis);
            assert_eq!(send_timeout(cmd), want, "{cmd}");
            assert_eq!(timeout_for(cmd), want.unwrap_or(DEFAULT), "{cmd}");
        }
        // Every send BC66 makes (up to its 512 B) gets more than the old flat 5 s.
        assert!(timeout_for(&bc66_512) > Duration::from_secs(6));
    }

    #[test]
    fn retry_only_safe_commands() {
        for safe in [
            "AT",
            "ate0",
            "ATI",
            "AT+CEREG?",
            "AT+CGATT?",
            "AT+CSQ",
            "AT+NUESTATS",
            "AT+QENG=\"servingcell\"",
            "AT+CEREG=2",
            "AT+CGMM",
        ] {
            assert!(safe_to_retry(safe), "{safe}");
        }
        for unsafe_ in [
            "AT+NSOSD=0,2,4869",
            "AT+QISEND=0,5",
            "AT+QIOPEN=1,0,\"TCP\",\"127.0.0.1\",1,0,1",
            "AT+CGATT=1",
            "AT+NRB",
            "AT+CFUN=1,1",
            "AT+CSOSEND=0,2,41",
            "",
            "AT+NSORF=0,512",
            "AT+QIRD=0,1500",
        ] {
            assert!(!safe_to_retry(unsafe_), "{unsafe_}");
        }
    }
}
