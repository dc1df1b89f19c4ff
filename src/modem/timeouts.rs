//! Per-command timeouts (pure core): how long the engine waits for a command's final result,
//! from docs/dev/modem-dialects.md, plus the waits that are not a command's (boot text after a
//! reset, the `+QIOPEN` URC after its OK, the after-sleep retry), and which commands may be
//! resent blindly after the after-sleep bare CRLF (`safe_to_retry`). Matched on the command
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

/// The timeout for a command's final result.
pub fn timeout_for(command: &str) -> Duration {
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
