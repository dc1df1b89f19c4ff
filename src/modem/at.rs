//! The AT stream demultiplexer (pure core): it owns the split of the bytes a modem sends into
//! the reply of the one command in flight (`Exchange`: information lines, optional binary
//! payload, final result), unsolicited result codes (`Urc`), and the bare-CRLF marker (`Empty`)
//! the engine needs for the "first command after sleep is answered by a bare CRLF" quirk. It is
//! fed arbitrary byte chunks (split anywhere) and told when a command goes out; it never does
//! I/O, never blocks, keeps no clock (timeouts are the engine's: it calls `abort`), and never
//! panics on any input. Every size from the line is bounded: a line over `MAX_LINE` bytes is
//! dropped (error event, resync at the next LF), an exchange keeps at most `MAX_INFO_LINES`
//! information lines, and a length-prefixed binary payload is at most `MAX_DATA` bytes.
//!
//! Framing follows docs/dev/modem-dialects.md: lines end with LF (CRs around a line are
//! stripped, so "\r\n<line>\r\n", an echo "AT...\r\r\n" and BC95's style all read the same);
//! the data prompt has no line end and is recognised only while a command that expects it is
//! in flight: `"> "` (Quectel) or a bare `">"` (SIM7080; one space right after it is dropped);
//! after `+QIRD: <n>` (an information line) or a push-mode `+QIURC: "recv",<id>,<n>` (a URC)
//! the next `n` raw bytes are data, whatever they contain; SIM7080's `+CARECV: <n>,` carries
//! its `n` raw bytes inside the line, right after the comma (recognised only while an
//! `AT+CARECV=` is in flight). An inline-hex send `AT+QISEND=<id>,<len>,<hex>` (BC66) is
//! answered `OK` then `SEND OK`: its exchange ends at `SEND OK` / `SEND FAIL`, so the late
//! `SEND OK` can never be read as the final result of the next command.
//!
//! Classification of a complete, non-empty line while a command is in flight, in order: the
//! echo (equal to the command, once, dropped); a final result code (ends the exchange); a known
//! URC (`urc_kind`) unless it is the reply of the command (a `+NAME:` line answers
//! `AT+NAME?`/`AT+NAME` — never `AT+NAME=...`, whose `+NAME:` lines are URCs, e.g. `+QIOPEN:`
//! after `AT+QIOPEN=...` or `+CFUN: 1` after `AT+CFUN=1,1`); anything else is an information
//! line. With no command in flight, every non-empty line is a URC (stray finals included; the
//! engine decides what to make of an unknown one).

use std::collections::VecDeque;

use thiserror::Error;

/// Longest line kept, in bytes (CR/LF excluded); longer lines are dropped with an error event.
pub const MAX_LINE: usize = 2048;
/// Most information lines kept per exchange; further lines are dropped with one error event.
pub const MAX_INFO_LINES: usize = 64;
/// Largest length-prefixed binary payload accepted (`+QIRD: <n>`, push `+QIURC: "recv"`,
/// `+CARECV: <n>,`).
pub const MAX_DATA: usize = 1500;

/// A command about to be written to the port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The command text as sent, without the terminating CR (e.g. `AT+CEREG?`).
    pub text: String,
    /// Whether the module answers with the `"> "` data prompt (e.g. `AT+QISEND=0,5`).
    pub expects_prompt: bool,
}

impl Request {
    /// A command answered by lines and a final result code.
    pub fn new(text: impl Into<String>) -> Self {
        Request {
            text: text.into().trim_end_matches(['\r', '\n']).to_string(),
            expects_prompt: false,
        }
    }

    /// A command answered by the `"> "` data prompt (or an error).
    pub fn with_prompt(text: impl Into<String>) -> Self {
        Request {
            expects_prompt: true,
            ..Request::new(text)
        }
    }

    /// The raw payload written after a prompt: it has no echo line and ends with
    /// `SEND OK` / `SEND FAIL` / `ERROR`. Send payloads with echo off (ATE0): an echoed
    /// payload would be read as lines, and one containing "\r\nOK\r\n" as a final result.
    pub fn payload() -> Self {
        Request {
            text: String::new(),
            expects_prompt: false,
        }
    }
}

/// How an exchange ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Final {
    Ok,
    Error,
    /// `+CME ERROR: <n>` (also BC95's `+CME ERROR:<n>`).
    CmeError(u16),
    /// `+CMS ERROR: <n>`.
    CmsError(u16),
    SendOk,
    SendFail,
    /// The `"> "` data prompt: write the payload next (as a `Request::payload()`).
    Prompt,
}

impl Final {
    /// Whether the command succeeded (OK, SEND OK, or the prompt it asked for).
    pub fn is_success(self) -> bool {
        matches!(self, Final::Ok | Final::SendOk | Final::Prompt)
    }
}

/// The complete reply of one command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exchange {
    /// The command text it answers.
    pub command: String,
    /// Information lines in order (echo, URCs and blank lines excluded).
    pub lines: Vec<String>,
    /// The binary payload after a `+QIRD: <n>` line, if any.
    pub data: Option<Vec<u8>>,
    pub result: Final,
    /// Lines beyond `MAX_INFO_LINES` were dropped.
    pub truncated: bool,
}

/// What was received of a command before the engine gave up on it (`AtParser::abort`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partial {
    pub command: String,
    pub lines: Vec<String>,
    /// Only bare CRLFs arrived (no echo, no line): the after-sleep quirk; retry a safe command.
    pub blank_only: bool,
    /// Nothing at all arrived for it (not even a CRLF): the module may hang.
    pub silent: bool,
}

/// The known unsolicited result codes, by what the engine does with them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UrcKind {
    /// `+CEREG:` registration change.
    Cereg,
    /// `+CGEV:`-free modules report PDP loss as `+QIURC: "pdpdeact"`; every `+QIURC:` is this.
    Qiurc,
    /// `+QIOPEN: <id>,<err>`: the result of a QI socket open.
    Qiopen,
    /// `+NSONMI:` BC95 data waiting.
    Nsonmi,
    /// `+NSOCLI:` BC95 socket closed by the peer.
    Nsocli,
    /// `+CSONMI:` SIM7020 pushed data.
    Csonmi,
    /// `+CSOERR:` SIM7020 socket error / closed.
    Csoerr,
    /// `+CADATAIND: <cid>` SIM7080 data waiting.
    Cadataind,
    /// `+CASTATE: <cid>,<state>` SIM7080 socket state (0 = closed).
    Castate,
    /// `+APP PDP: <pdpidx>,ACTIVE|DEACTIVE` SIM7080 PDP context state.
    AppPdp,
    /// `+CFUN:` radio state (boot URC on Quectel/SIMCom).
    Cfun,
    /// `+CPIN:` SIM state (boot URC).
    Cpin,
    /// `+CTZV:` / `+CTZE:` network time zone / time.
    TimeZone,
    /// Boot text: `RDY`, `APP RDY`, `Neul`, `Boot: ...`, `REBOOTING`, `REBOOT_CAUSE_...`,
    /// BC95's `... Verified` lines. The module restarted: every socket is gone.
    Boot,
    /// `POWERED DOWN` (after `AT+QPOWD`).
    PoweredDown,
    /// `+QUSIM:`, `+QIND:`: informational boot URCs.
    Info,
}

/// Prefix table of the known URCs (matched on the line's start, exact case).
const URC_PREFIXES: &[(&str, UrcKind)] = &[
    ("+CEREG:", UrcKind::Cereg),
    ("+QIURC:", UrcKind::Qiurc),
    ("+QIOPEN:", UrcKind::Qiopen),
    ("+NSONMI:", UrcKind::Nsonmi),
    ("+NSOCLI:", UrcKind::Nsocli),
    ("+CSONMI:", UrcKind::Csonmi),
    ("+CSOERR:", UrcKind::Csoerr),
    ("+CADATAIND:", UrcKind::Cadataind),
    ("+CASTATE:", UrcKind::Castate),
    ("+APP PDP:", UrcKind::AppPdp),
    ("+CFUN:", UrcKind::Cfun),
    ("+CPIN:", UrcKind::Cpin),
    ("+CTZV:", UrcKind::TimeZone),
    ("+CTZE:", UrcKind::TimeZone),
    ("+QUSIM:", UrcKind::Info),
    ("+QIND:", UrcKind::Info),
    ("APP RDY", UrcKind::Boot),
    ("RDY", UrcKind::Boot),
    ("Neul", UrcKind::Boot),
    ("Boot:", UrcKind::Boot),
    ("REBOOTING", UrcKind::Boot),
    ("REBOOT_CAUSE_", UrcKind::Boot),
    ("POWERED DOWN", UrcKind::PoweredDown),
];

/// The kind of a known URC line, or `None` for anything else.
pub fn urc_kind(line: &str) -> Option<UrcKind> {
    if let Some(&(_, kind)) = URC_PREFIXES.iter().find(|(p, _)| line.starts_with(p)) {
        return Some(kind);
    }
    // BC95 boot: "Security B.. Verified", "Protocol A.. Verified", "Apps A...... Verified".
    if line.ends_with(" Verified")
        && ["Security ", "Protocol ", "Apps "]
            .iter()
            .any(|p| line.starts_with(p))
    {
        return Some(UrcKind::Boot);
    }
    None
}

/// One unsolicited line, with the raw payload that followed it (push-mode `+QIURC: "recv"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Urc {
    pub line: String,
    /// `None` for a line that is not a known URC (a stray line at idle).
    pub kind: Option<UrcKind>,
    pub data: Option<Vec<u8>>,
}

/// A bound the stream broke; parsing goes on.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum StreamError {
    #[error("AT line longer than {MAX_LINE} bytes dropped")]
    LineTooLong,
    #[error("reply to {command} has more than {MAX_INFO_LINES} lines; the rest dropped")]
    TooManyLines { command: String },
    #[error(
        "binary payload of {len} bytes announced by {line:?} exceeds {MAX_DATA}; read as lines"
    )]
    DataTooLong { line: String, len: usize },
}

/// What the parser produced from the bytes fed to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Exchange(Exchange),
    Urc(Urc),
    /// The first bare CRLF of the command in flight, before any echo or line of it. Every reply
    /// starts with one; it matters only when nothing follows before the timeout.
    Empty,
    Error(StreamError),
}

#[derive(Debug)]
struct InFlight {
    request: Request,
    echo_seen: bool,
    lines: Vec<String>,
    data: Option<Vec<u8>>,
    got_line: bool,
    got_blank: bool,
    truncated: bool,
}

#[derive(Debug)]
enum DataTarget {
    Exchange,
    Urc(String),
    /// The exchange it belonged to was aborted: skip the bytes.
    Discard,
}

#[derive(Debug)]
struct Binary {
    remaining: usize,
    buf: Vec<u8>,
    target: DataTarget,
}

/// The demultiplexer. One per port; see the module doc and `modem` for the engine loop.
#[derive(Debug, Default)]
pub struct AtParser {
    line: Vec<u8>,
    discarding: bool,
    binary: Option<Binary>,
    in_flight: Option<InFlight>,
    events: VecDeque<Event>,
    /// A bare `">"` prompt just ended an exchange: one space right after it is the rest of a
    /// `"> "` prompt, not data or a line.
    after_prompt: bool,
}

impl AtParser {
    pub fn new() -> Self {
        Self::default()
    }

    /// A command is now in flight (call just before writing it). A command still in flight is
    /// abandoned and returned, as `abort` would.
    pub fn begin(&mut self, request: Request) -> Option<Partial> {
        let previous = self.abort();
        self.in_flight = Some(InFlight {
            request,
            echo_seen: false,
            lines: Vec::new(),
            data: None,
            got_line: false,
            got_blank: false,
            truncated: false,
        });
        previous
    }

    /// The engine gave up on the command in flight (its timeout passed): what arrived of it.
    /// Later lines are then URCs or strays.
    pub fn abort(&mut self) -> Option<Partial> {
        let f = self.in_flight.take()?;
        if let Some(b) = &mut self.binary {
            if matches!(b.target, DataTarget::Exchange) {
                b.target = DataTarget::Discard;
            }
        }
        Some(Partial {
            command: f.request.text,
            blank_only: f.got_blank && !f.got_line && !f.echo_seen,
            silent: !f.got_blank && !f.got_line && !f.echo_seen,
            lines: f.lines,
        })
    }

    /// Whether a command is in flight.
    pub fn in_flight(&self) -> Option<&str> {
        self.in_flight.as_ref().map(|f| f.request.text.as_str())
    }

    /// Feed bytes as they came from the port; returns the events they completed, in order.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<Event> {
        let mut i = 0;
        while i < bytes.len() {
            if let Some(b) = &mut self.binary {
                let take = b.remaining.min(bytes.len() - i);
                if !matches!(b.target, DataTarget::Discard) {
                    b.buf.extend_from_slice(&bytes[i..i + take]);
                }
                b.remaining -= take;
                i += take;
                if b.remaining == 0 {
                    self.finish_binary();
                }
                continue;
            }
            let byte = bytes[i];
            i += 1;
            if std::mem::take(&mut self.after_prompt) && byte == b' ' {
                continue;
            }
            if byte == b'\n' {
                if self.discarding {
                    self.discarding = false;
                } else {
                    let raw = std::mem::take(&mut self.line);
                    self.complete_line(&raw);
                }
                continue;
            }
            if self.discarding {
                continue;
            }
            // CRs around a line do not count (a full-length line still ends "\r\n").
            let limit = if byte == b'\r' {
                MAX_LINE + 2
            } else {
                MAX_LINE
            };
            if self.line.len() >= limit {
                self.line.clear();
                self.discarding = true;
                self.events
                    .push_back(Event::Error(StreamError::LineTooLong));
                continue;
            }
            self.line.push(byte);
            if byte == b'>' && self.line == b">" && self.expects_prompt() {
                self.line.clear();
                self.after_prompt = true;
                self.finish(Final::Prompt);
            } else if byte == b',' {
                self.inline_binary();
            }
        }
        self.events.drain(..).collect()
    }

    fn expects_prompt(&self) -> bool {
        self.in_flight
            .as_ref()
            .is_some_and(|f| f.request.expects_prompt)
    }

    /// At a comma: the line so far is `+CARECV: <n>,` of an `AT+CARECV=` in flight, so the
    /// next `n` bytes are its data (kept as the exchange's payload, the line as `+CARECV: <n>`).
    fn inline_binary(&mut self) {
        let Some(f) = &self.in_flight else { return };
        if !f
            .request
            .text
            .to_ascii_uppercase()
            .starts_with("AT+CARECV=")
        {
            return;
        }
        let Some(len) = carecv_len(&self.line) else {
            return;
        };
        let line = String::from_utf8_lossy(&self.line[..self.line.len() - 1])
            .trim_matches('\r')
            .trim_end()
            .to_string();
        if len > MAX_DATA {
            // Read on as a line (it will not parse); the stream resyncs at its LF.
            self.events
                .push_back(Event::Error(StreamError::DataTooLong { line, len }));
            return;
        }
        self.line.clear();
        if let Some(f) = &mut self.in_flight {
            f.got_line = true;
            if f.lines.len() < MAX_INFO_LINES {
                f.lines.push(line.clone());
            }
        }
        self.start_binary(line, len, DataTarget::Exchange);
    }

    fn finish_binary(&mut self) {
        let Some(b) = self.binary.take() else { return };
        match b.target {
            DataTarget::Exchange => {
                if let Some(f) = &mut self.in_flight {
                    f.data = Some(b.buf);
                }
            }
            DataTarget::Urc(line) => self.events.push_back(Event::Urc(Urc {
                kind: urc_kind(&line),
                line,
                data: Some(b.buf),
            })),
            DataTarget::Discard => {}
        }
    }

    fn complete_line(&mut self, raw: &[u8]) {
        let text = String::from_utf8_lossy(raw);
        let line = text.trim_matches('\r');
        if line.is_empty() {
            if let Some(f) = &mut self.in_flight {
                if !f.got_line && !f.echo_seen && !f.got_blank {
                    f.got_blank = true;
                    self.events.push_back(Event::Empty);
                }
            }
            return;
        }
        let line = line.to_string();
        let Some(f) = &mut self.in_flight else {
            self.urc(line);
            return;
        };
        if !f.echo_seen && !f.request.text.is_empty() && line == f.request.text {
            f.echo_seen = true;
            return;
        }
        if let Some(result) = final_result(&line) {
            if result == Final::Ok && inline_send(&f.request.text) {
                // BC66: OK (command taken), then SEND OK / SEND FAIL ends it.
                return;
            }
            self.finish(result);
            return;
        }
        if urc_kind(&line).is_some() && !answers(&f.request.text, &line) {
            self.urc(line);
            return;
        }
        f.got_line = true;
        let data_len = qird_len(&line);
        if f.lines.len() < MAX_INFO_LINES {
            f.lines.push(line.clone());
        } else if !f.truncated {
            f.truncated = true;
            let command = f.request.text.clone();
            self.events
                .push_back(Event::Error(StreamError::TooManyLines { command }));
        }
        if let Some(len) = data_len {
            self.start_binary(line, len, DataTarget::Exchange);
        }
    }

    fn urc(&mut self, line: String) {
        if let Some(len) = push_recv_len(&line) {
            self.start_binary(line.clone(), len, DataTarget::Urc(line));
            return;
        }
        self.events.push_back(Event::Urc(Urc {
            kind: urc_kind(&line),
            line,
            data: None,
        }));
    }

    fn start_binary(&mut self, line: String, len: usize, target: DataTarget) {
        if len > MAX_DATA {
            self.events
                .push_back(Event::Error(StreamError::DataTooLong {
                    line: line.clone(),
                    len,
                }));
            if let DataTarget::Urc(line) = target {
                self.events.push_back(Event::Urc(Urc {
                    kind: urc_kind(&line),
                    line,
                    data: None,
                }));
            }
            return;
        }
        self.binary = Some(Binary {
            remaining: len,
            buf: Vec::with_capacity(len),
            target,
        });
        if len == 0 {
            self.finish_binary();
        }
    }

    fn finish(&mut self, result: Final) {
        let Some(f) = self.in_flight.take() else {
            return;
        };
        self.events.push_back(Event::Exchange(Exchange {
            command: f.request.text,
            lines: f.lines,
            data: f.data,
            result,
            truncated: f.truncated,
        }));
    }
}

/// The final result code a line is, if any.
pub fn final_result(line: &str) -> Option<Final> {
    match line {
        "OK" => return Some(Final::Ok),
        "ERROR" => return Some(Final::Error),
        "SEND OK" => return Some(Final::SendOk),
        "SEND FAIL" => return Some(Final::SendFail),
        // BC66 AT+QICLOSE.
        "CLOSE OK" => return Some(Final::Ok),
        _ => {}
    }
    if let Some(rest) = line.strip_prefix("+CME ERROR:") {
        return Some(code(rest).map_or(Final::Error, Final::CmeError));
    }
    if let Some(rest) = line.strip_prefix("+CMS ERROR:") {
        return Some(code(rest).map_or(Final::Error, Final::CmsError));
    }
    None
}

/// A numeric error code; verbose text (`+CME ERROR: SIM not inserted`) has none.
fn code(rest: &str) -> Option<u16> {
    rest.trim().parse().ok()
}

/// Whether `line` (a known-URC-looking `+NAME:` line) is the reply of `command`: the command
/// is `AT+NAME?` or `AT+NAME` (read / execute), never `AT+NAME=...`.
fn answers(command: &str, line: &str) -> bool {
    let Some(name) = line.split(':').next().filter(|n| n.starts_with('+')) else {
        return false;
    };
    let upper = command.to_ascii_uppercase();
    let Some(rest) = upper.strip_prefix("AT").and_then(|r| r.strip_prefix(name)) else {
        return false;
    };
    rest.is_empty() || rest == "?"
}

/// `+QIRD: <n>` (TCP) or `+QIRD: <n>,"<ip>",<port>` (UDP) with n > 0: the number of raw bytes
/// that follow. The query form `+QIRD: <total>,<read>,<unread>` (of `AT+QIRD=<id>,0`) has none.
fn qird_len(line: &str) -> Option<usize> {
    let rest = line.strip_prefix("+QIRD:")?;
    let mut fields = rest.split(',').map(str::trim);
    let n: usize = fields.next()?.parse().ok()?;
    if fields.next().is_some_and(|ip| !ip.starts_with('"')) {
        return None;
    }
    (n > 0).then_some(n)
}

/// `+CARECV: <n>,` (the line so far, ending at the comma): the `n` raw bytes that follow.
fn carecv_len(line: &[u8]) -> Option<usize> {
    let start = line.iter().position(|&b| b != b'\r')?;
    let rest = line[start..]
        .strip_prefix(b"+CARECV:")?
        .strip_suffix(b",")?;
    let digits = std::str::from_utf8(rest).ok()?.trim();
    if digits.is_empty() || digits.len() > 6 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// BC66's inline-hex send `AT+QISEND=<id>,<len>,<hex>` (three arguments): answered `OK`, then
/// `SEND OK` once the data left.
fn inline_send(command: &str) -> bool {
    let c = command.as_bytes();
    c.len() > 10
        && c[..10].eq_ignore_ascii_case(b"AT+QISEND=")
        && command.bytes().filter(|&b| b == b',').count() == 2
}

/// Push mode `+QIURC: "recv",<id>,<n>`: the number of raw bytes that follow.
fn push_recv_len(line: &str) -> Option<usize> {
    let rest = line.strip_prefix("+QIURC:")?;
    let mut fields = rest.split(',').map(str::trim);
    if fields.next()? != "\"recv\"" {
        return None;
    }
    fields.next()?;
    let n: usize = fields.next()?.parse().ok()?;
    fields.next().is_none().then_some(n)
}

#[cfg(test)]
#[path = "at_tests.rs"]
mod tests;
