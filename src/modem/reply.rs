//! Typed parsers of the generic 3GPP replies (pure core): one function per reply line of
//! docs/dev/modem-dialects.md (CEREG reply and URC, CGATT, CPIN, CFUN, CSQ, CESQ, COPS,
//! CGPADDR, CCLK, CTZV/CTZE, CPSMS, CEDRXS), plus the shared field splitter and the error
//! type. Both spacings (`+CEREG:0,1` and `+CEREG: 0,1`) are accepted everywhere. The vendor
//! signal replies (NUESTATS, QCSQ, QENG, CENG) and the `Signal` struct are in `signal`; the
//! PSM/eDRX bit encodings in `timers`. No I/O; never panics on any input (fuzzed).

use std::net::IpAddr;
use std::str::FromStr;

use thiserror::Error;

pub use super::signal::Signal;
pub use super::timers::Timer;
use super::timers::{decode_edrx, decode_t3324, decode_t3412};

/// Most comma-separated fields read from one reply line.
pub const MAX_FIELDS: usize = 32;
/// Longest excerpt of a bad line or value quoted in an error.
const QUOTE: usize = 64;

/// A reply line that does not parse: names the reply and the field.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ReplyError {
    #[error("{reply}: no reply line")]
    NoLine { reply: &'static str },
    #[error("{reply}: {line:?} is not this reply")]
    NotThisReply { reply: &'static str, line: String },
    #[error("{reply}: field {field} missing")]
    Missing {
        reply: &'static str,
        field: &'static str,
    },
    #[error("{reply}: field {field} has the invalid value {value:?}")]
    Invalid {
        reply: &'static str,
        field: &'static str,
        value: String,
    },
    #[error("{reply}: more than {MAX_FIELDS} fields")]
    TooManyFields { reply: &'static str },
    #[error("{timer}: {seconds} s cannot be encoded")]
    Unrepresentable { timer: &'static str, seconds: u64 },
}

fn quote(s: &str) -> String {
    s.chars().take(QUOTE).collect()
}

impl ReplyError {
    pub(crate) fn bad(reply: &'static str, field: &'static str, value: &str) -> Self {
        ReplyError::Invalid {
            reply,
            field,
            value: quote(value),
        }
    }
}

/// The text after `+NAME:` (both spacings), or `NotThisReply`.
pub(crate) fn body<'a>(
    reply: &'static str,
    prefix: &str,
    line: &'a str,
) -> Result<&'a str, ReplyError> {
    line.trim()
        .strip_prefix(prefix)
        .map(str::trim_start)
        .ok_or_else(|| ReplyError::NotThisReply {
            reply,
            line: quote(line),
        })
}

/// The comma-separated fields of a reply body, quotes removed, spaces trimmed; commas inside
/// quotes do not split. At most `MAX_FIELDS`.
#[derive(Debug)]
pub(crate) struct Fields<'a> {
    reply: &'static str,
    items: Vec<&'a str>,
}

impl<'a> Fields<'a> {
    pub(crate) fn split(reply: &'static str, body: &'a str) -> Result<Self, ReplyError> {
        let mut items = Vec::new();
        let mut start = 0;
        let mut quoted = false;
        for (i, c) in body.char_indices() {
            match c {
                '"' => quoted = !quoted,
                ',' if !quoted => {
                    items.push(body[start..i].trim());
                    start = i + 1;
                    if items.len() >= MAX_FIELDS {
                        return Err(ReplyError::TooManyFields { reply });
                    }
                }
                _ => {}
            }
        }
        items.push(body[start..].trim());
        Ok(Fields { reply, items })
    }

    pub(crate) fn len(&self) -> usize {
        self.items.len()
    }

    /// Field `i` without its quotes, `None` when absent or empty.
    pub(crate) fn opt(&self, i: usize) -> Option<&'a str> {
        self.items
            .get(i)
            .map(|s| unquote(s))
            .filter(|s| !s.is_empty())
    }

    /// Whether field `i` is a quoted string (`"1A2D"` is a TAC, never a number).
    pub(crate) fn is_quoted(&self, i: usize) -> bool {
        self.items.get(i).is_some_and(|s| s.starts_with('"'))
    }

    pub(crate) fn str(&self, i: usize, field: &'static str) -> Result<&'a str, ReplyError> {
        self.opt(i).ok_or(ReplyError::Missing {
            reply: self.reply,
            field,
        })
    }

    pub(crate) fn num<T: FromStr>(&self, i: usize, field: &'static str) -> Result<T, ReplyError> {
        let s = self.str(i, field)?;
        s.parse().map_err(|_| ReplyError::bad(self.reply, field, s))
    }

    pub(crate) fn opt_num<T: FromStr>(
        &self,
        i: usize,
        field: &'static str,
    ) -> Result<Option<T>, ReplyError> {
        match self.opt(i) {
            None => Ok(None),
            Some(s) => s
                .parse()
                .map(Some)
                .map_err(|_| ReplyError::bad(self.reply, field, s)),
        }
    }

    pub(crate) fn opt_hex(&self, i: usize, field: &'static str) -> Result<Option<u32>, ReplyError> {
        match self.opt(i) {
            None => Ok(None),
            Some(s) => u32::from_str_radix(s, 16)
                .map(Some)
                .map_err(|_| ReplyError::bad(self.reply, field, s)),
        }
    }
}

fn unquote(s: &str) -> &str {
    let s = s.trim();
    s.strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(s)
}

/// The first line among `lines` that starts with `prefix`.
pub fn find_line<'a>(
    reply: &'static str,
    prefix: &str,
    lines: &'a [String],
) -> Result<&'a str, ReplyError> {
    lines
        .iter()
        .map(String::as_str)
        .find(|l| l.trim_start().starts_with(prefix))
        .ok_or(ReplyError::NoLine { reply })
}

/// EPS registration state (`<stat>` of CEREG).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegStatus {
    NotSearching,
    Home,
    Searching,
    Denied,
    Unknown,
    Roaming,
    /// 6..: SMS-only and emergency states; not registered for data.
    Other(u8),
}

impl RegStatus {
    fn from_code(c: u8) -> Self {
        match c {
            0 => RegStatus::NotSearching,
            1 => RegStatus::Home,
            2 => RegStatus::Searching,
            3 => RegStatus::Denied,
            4 => RegStatus::Unknown,
            5 => RegStatus::Roaming,
            other => RegStatus::Other(other),
        }
    }

    /// Registered for data (home or roaming).
    pub fn registered(self) -> bool {
        matches!(self, RegStatus::Home | RegStatus::Roaming)
    }
}

/// A registration denial's cause (`<cause_type>,<reject_cause>`, n=3 and above).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reject {
    /// 0: EMM cause (24.301 annex A), 1: manufacturer specific.
    pub cause_type: u8,
    pub cause: u16,
}

/// A `+CEREG` reply or URC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    /// The URC level `<n>`; only in the reply to `AT+CEREG?`.
    pub n: Option<u8>,
    pub stat: RegStatus,
    pub tac: Option<u16>,
    pub cell_id: Option<u32>,
    /// Access technology; 9 = NB-IoT (E-UTRAN NB-S1).
    pub act: Option<u8>,
    pub reject: Option<Reject>,
    /// T3324 granted by the network (n=4/5).
    pub active_time: Option<Timer>,
    /// T3412 extended granted by the network (n=4/5).
    pub periodic_tau: Option<Timer>,
}

/// The reply to `AT+CEREG?`: `+CEREG: <n>,<stat>[,...]`.
pub fn cereg_reply(line: &str) -> Result<Registration, ReplyError> {
    let f = Fields::split("CEREG", body("CEREG", "+CEREG:", line)?)?;
    let n = f.num(0, "n")?;
    registration(&f, 1, Some(n))
}

/// The reply among the lines of an `AT+CEREG?` exchange. A registration URC that arrived
/// while the query was in flight is also a `+CEREG:` line there (the demultiplexer cannot tell
/// them apart); it has no `<n>` and never parses as the reply, so the last line that does is
/// the answer.
pub fn cereg_reply_lines(lines: &[String]) -> Result<Registration, ReplyError> {
    let mut last = Err(ReplyError::NoLine { reply: "CEREG" });
    for line in lines
        .iter()
        .filter(|l| l.trim_start().starts_with("+CEREG:"))
    {
        match cereg_reply(line) {
            Ok(r) => last = Ok(r),
            Err(e) if last.is_err() => last = Err(e),
            Err(_) => {}
        }
    }
    last
}

/// The registration URC: `+CEREG: <stat>[,"<tac>","<ci>",<act>...]` (no `<n>`).
pub fn cereg_urc(line: &str) -> Result<Registration, ReplyError> {
    let f = Fields::split("CEREG", body("CEREG", "+CEREG:", line)?)?;
    registration(&f, 0, None)
}

fn registration(f: &Fields, at: usize, n: Option<u8>) -> Result<Registration, ReplyError> {
    if f.is_quoted(at) {
        return Err(ReplyError::bad("CEREG", "stat", f.str(at, "stat")?));
    }
    let stat = RegStatus::from_code(f.num(at, "stat")?);
    let tac = f
        .opt_hex(at + 1, "tac")?
        .map(|t| u16::try_from(t).map_err(|_| ReplyError::bad("CEREG", "tac", &t.to_string())))
        .transpose()?;
    let cell_id = f.opt_hex(at + 2, "ci")?;
    let act = f.opt_num(at + 3, "act")?;
    // After <act>: [cause_type, reject_cause][, active_time, periodic_tau]; the cause pair
    // may be empty fields or absent (then the next two fields are the quoted bit strings).
    let rest = f.len().saturating_sub(at + 4);
    let (cause_at, timers_at) = match rest {
        0 => (None, None),
        2 if f.is_quoted(at + 4) => (None, Some(at + 4)),
        2 => (Some(at + 4), None),
        _ => (Some(at + 4), Some(at + 6)),
    };
    let reject = match cause_at {
        Some(i) => match (
            f.opt_num(i, "cause_type")?,
            f.opt_num(i + 1, "reject_cause")?,
        ) {
            (Some(cause_type), Some(cause)) => Some(Reject { cause_type, cause }),
            (None, Some(cause)) => Some(Reject {
                cause_type: 0,
                cause,
            }),
            _ => None,
        },
        None => None,
    };
    let (active_time, periodic_tau) = match timers_at {
        Some(i) => (
            f.opt(i).map(|b| decode_t3324("CEREG", b)).transpose()?,
            f.opt(i + 1).map(|b| decode_t3412("CEREG", b)).transpose()?,
        ),
        None => (None, None),
    };
    Ok(Registration {
        n,
        stat,
        tac,
        cell_id,
        act,
        reject,
        active_time,
        periodic_tau,
    })
}

/// `+CGATT: 0|1` -> attached.
pub fn cgatt(line: &str) -> Result<bool, ReplyError> {
    let f = Fields::split("CGATT", body("CGATT", "+CGATT:", line)?)?;
    match f.num::<u8>(0, "state")? {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(ReplyError::bad("CGATT", "state", f.str(0, "state")?)),
    }
}

/// SIM state from `+CPIN: <code>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SimState {
    Ready,
    /// Waiting for a PIN or PUK (`SIM PIN`, `SIM PUK`, ...): the text as given.
    Locked(String),
}

/// `+CPIN: READY` (a missing SIM is `+CME ERROR: 10`, a final result, not a line).
pub fn cpin(line: &str) -> Result<SimState, ReplyError> {
    let b = body("CPIN", "+CPIN:", line)?.trim();
    match b {
        "READY" => Ok(SimState::Ready),
        "" => Err(ReplyError::Missing {
            reply: "CPIN",
            field: "code",
        }),
        other => Ok(SimState::Locked(quote(other))),
    }
}

/// `+CFUN: <fun>`.
pub fn cfun(line: &str) -> Result<u8, ReplyError> {
    Fields::split("CFUN", body("CFUN", "+CFUN:", line)?)?.num(0, "fun")
}

/// `+CSQ: <rssi>,<ber>` -> RSSI in dBm (`None` for 99: unknown). 0 = -113 dBm, 31 = -51.
pub fn csq(line: &str) -> Result<Option<i16>, ReplyError> {
    let f = Fields::split("CSQ", body("CSQ", "+CSQ:", line)?)?;
    match f.num::<u8>(0, "rssi")? {
        99 => Ok(None),
        v @ 0..=31 => Ok(Some(-113 + 2 * i16::from(v))),
        _ => Err(ReplyError::bad("CSQ", "rssi", f.str(0, "rssi")?)),
    }
}

/// `+CESQ: <rxlev>,<ber>,<rscp>,<ecno>,<rsrq>,<rsrp>` -> RSRP (value-141 dBm) and RSRQ
/// (value/2-20 dB) in a `Signal`; 255 = unknown.
pub fn cesq(line: &str) -> Result<Signal, ReplyError> {
    let f = Fields::split("CESQ", body("CESQ", "+CESQ:", line)?)?;
    let rsrq: u8 = f.num(4, "rsrq")?;
    let rsrp: u8 = f.num(5, "rsrp")?;
    let rsrq_db = match rsrq {
        255 => None,
        0..=34 => Some(f32::from(rsrq) / 2.0 - 20.0),
        _ => return Err(ReplyError::bad("CESQ", "rsrq", f.str(4, "rsrq")?)),
    };
    let rsrp_dbm = match rsrp {
        255 => None,
        0..=97 => Some(f32::from(rsrp) - 141.0),
        _ => return Err(ReplyError::bad("CESQ", "rsrp", f.str(5, "rsrp")?)),
    };
    Ok(Signal {
        rsrp_dbm,
        rsrq_db,
        ..Signal::default()
    })
}

/// `+COPS: <mode>[,<format>,"<oper>"[,<act>]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operator {
    pub mode: u8,
    pub format: Option<u8>,
    pub oper: Option<String>,
    pub act: Option<u8>,
}

pub fn cops(line: &str) -> Result<Operator, ReplyError> {
    let f = Fields::split("COPS", body("COPS", "+COPS:", line)?)?;
    Ok(Operator {
        mode: f.num(0, "mode")?,
        format: f.opt_num(1, "format")?,
        oper: f.opt(2).map(quote),
        act: f.opt_num(3, "act")?,
    })
}

/// `+CGPADDR: <cid>[,"<addr>"]` -> (cid, address).
pub fn cgpaddr(line: &str) -> Result<(u8, Option<IpAddr>), ReplyError> {
    let f = Fields::split("CGPADDR", body("CGPADDR", "+CGPADDR:", line)?)?;
    Ok((f.num(0, "cid")?, f.opt_num(1, "address")?))
}

/// Network time from `+CCLK`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Clock {
    pub utc_ms: i64,
    /// Local time zone in quarter hours east of UTC.
    pub tz_quarter_hours: i8,
}

/// `+CCLK: "yy/MM/dd,hh:mm:ss±zz"` (quotes optional, 4-digit years accepted); the time shown
/// is local, UTC + zz quarter hours.
pub fn cclk(line: &str) -> Result<Clock, ReplyError> {
    const R: &str = "CCLK";
    let (utc_ms, tz) = date_time(R, unquote(body(R, "+CCLK:", line)?))?;
    Ok(Clock {
        utc_ms,
        tz_quarter_hours: tz.unwrap_or(0),
    })
}

/// `yy/MM/dd,hh:mm:ss[±zz]` (or a 4-digit year) local time -> (UTC unix ms, zz). Without a
/// zone the time is taken as UTC.
fn date_time(r: &'static str, b: &str) -> Result<(i64, Option<i8>), ReplyError> {
    let bad = |field| ReplyError::bad(r, field, b);
    let (date, time) = b.split_once(',').ok_or_else(|| bad("date"))?;
    let mut d = date.split('/');
    let (Some(y), Some(mo), Some(dd), None) = (d.next(), d.next(), d.next(), d.next()) else {
        return Err(bad("date"));
    };
    let (clock, tz) = match time.find(['+', '-']) {
        Some(i) => (&time[..i], Some(&time[i..])),
        None => (time, None),
    };
    let mut t = clock.split(':');
    let (Some(h), Some(mi), Some(s), None) = (t.next(), t.next(), t.next(), t.next()) else {
        return Err(bad("time"));
    };
    let num = |s: &str, field, max: u32| -> Result<u32, ReplyError> {
        let t = s.trim();
        if t.is_empty() || t.len() > 4 || !t.bytes().all(|c| c.is_ascii_digit()) {
            return Err(ReplyError::bad(r, field, s));
        }
        let v: u32 = t.parse().map_err(|_| ReplyError::bad(r, field, s))?;
        if v > max {
            return Err(ReplyError::bad(r, field, s));
        }
        Ok(v)
    };
    let mut year = num(y, "year", 9999)?;
    if y.trim().len() <= 2 {
        year += 2000;
    }
    let month = num(mo, "month", 12)?;
    let day = num(dd, "day", 31)?;
    if month == 0 || day == 0 || day > days_in_month(year, month) {
        return Err(bad("date"));
    }
    let (h, mi, s) = (
        num(h, "hour", 23)?,
        num(mi, "minute", 59)?,
        num(s, "second", 59)?,
    );
    let tz = tz.map(|z| zone(r, z)).transpose()?;
    let local_s = days_from_civil(year, month, day) * 86_400
        + i64::from(h) * 3_600
        + i64::from(mi) * 60
        + i64::from(s);
    Ok(((local_s - i64::from(tz.unwrap_or(0)) * 900) * 1_000, tz))
}

/// A time zone "±zz" in quarter hours (27.007: -48..+56; up to ±96 accepted).
fn zone(r: &'static str, z: &str) -> Result<i8, ReplyError> {
    z.trim()
        .parse()
        .ok()
        .filter(|q: &i8| (-96..=96).contains(q))
        .ok_or_else(|| ReplyError::bad(r, "tz", z))
}

fn days_in_month(y: u32, m: u32) -> u32 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a Gregorian date (years 0..=9999).
fn days_from_civil(y: u32, m: u32, d: u32) -> i64 {
    let y = i64::from(y) - i64::from(m <= 2);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// A network time-zone report: `+CTZV: <tz>` or `+CTZE: "<tz>",<dst>[,"<time>"]` (27.007
/// 8.41: tz in quarter hours including DST, time local "YYYY/MM/DD,hh:mm:ss").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeZone {
    pub tz_quarter_hours: i8,
    pub dst: Option<u8>,
    /// The network's time from `+CTZE`, as UTC unix ms.
    pub utc_ms: Option<i64>,
}

pub fn ctzv(line: &str) -> Result<TimeZone, ReplyError> {
    const R: &str = "CTZV";
    let prefix = if line.trim_start().starts_with("+CTZE:") {
        "+CTZE:"
    } else {
        "+CTZV:"
    };
    let f = Fields::split(R, body(R, prefix, line)?)?;
    let tz = zone(R, f.str(0, "tz")?)?;
    let utc_ms = match f.opt(2) {
        Some(t) => Some(date_time(R, t)?.0 - i64::from(tz) * 900_000),
        None => None,
    };
    Ok(TimeZone {
        tz_quarter_hours: tz,
        dst: f.opt_num(1, "dst")?,
        utc_ms,
    })
}

/// PSM settings from `+CPSMS: <mode>,[<rau>],[<gprs_ready>],["<T3412>"],["<T3324>"]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Psm {
    pub enabled: bool,
    pub t3412: Option<Timer>,
    pub t3324: Option<Timer>,
}

pub fn cpsms(line: &str) -> Result<Psm, ReplyError> {
    let f = Fields::split("CPSMS", body("CPSMS", "+CPSMS:", line)?)?;
    Ok(Psm {
        enabled: f.num::<u8>(0, "mode")? == 1,
        t3412: f.opt(3).map(|b| decode_t3412("CPSMS", b)).transpose()?,
        t3324: f.opt(4).map(|b| decode_t3324("CPSMS", b)).transpose()?,
    })
}

/// `+CEDRXS: <act>,"<4 bits>"` -> (act, cycle ms); `+CEDRXS:` alone (eDRX off) -> `None`.
pub fn cedrxs(line: &str) -> Result<Option<(u8, u64)>, ReplyError> {
    let f = Fields::split("CEDRXS", body("CEDRXS", "+CEDRXS:", line)?)?;
    if f.opt(0).is_none() {
        return Ok(None);
    }
    let act = f.num(0, "act")?;
    Ok(Some((act, decode_edrx("CEDRXS", f.str(1, "eDRX")?)?)))
}

/// The eDRX parameters of `+CEDRXRDP` (27.007 7.41), milliseconds: what was requested, what
/// the network granted and the paging time window. `None` fields were not reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EdrxDynamic {
    /// Access technology (4 = LTE-M, 5 = NB-IoT).
    pub act: u8,
    pub requested_ms: Option<u64>,
    pub granted_ms: Option<u64>,
    pub paging_window_ms: Option<u64>,
}

/// `+CEDRXRDP: <act>[,"<requested>"[,"<granted>"[,"<ptw>"]]]`; `<act>` 0 (eDRX not used in
/// the cell, or no network) -> `None`. Cycles decode as NB-IoT's (`timers::decode_edrx`);
/// the paging window is (value + 1) x 2.56 s for NB-IoT and x 1.28 s for LTE-M (24.008
/// 10.5.5.32).
pub fn cedrxrdp(line: &str) -> Result<Option<EdrxDynamic>, ReplyError> {
    const R: &str = "CEDRXRDP";
    let f = Fields::split(R, body(R, "+CEDRXRDP:", line)?)?;
    let act: u8 = f.num(0, "act")?;
    if act == 0 {
        return Ok(None);
    }
    let cycle = |i, field| f.opt(i).map(|b| decode_edrx_field(R, field, b)).transpose();
    let ptw = match f.opt(3) {
        None => None,
        Some(b) => {
            if b.len() != 4 || !b.bytes().all(|c| c == b'0' || c == b'1') {
                return Err(ReplyError::bad(R, "paging window", b));
            }
            let n =
                u64::from_str_radix(b, 2).map_err(|_| ReplyError::bad(R, "paging window", b))?;
            let unit = if act == 4 { 1280 } else { 2560 };
            Some((n + 1) * unit)
        }
    };
    Ok(Some(EdrxDynamic {
        act,
        requested_ms: cycle(1, "requested eDRX")?,
        granted_ms: cycle(2, "granted eDRX")?,
        paging_window_ms: ptw,
    }))
}

fn decode_edrx_field(
    reply: &'static str,
    field: &'static str,
    bits: &str,
) -> Result<u64, ReplyError> {
    decode_edrx(reply, bits).map_err(|_| ReplyError::bad(reply, field, bits))
}

#[cfg(test)]
#[path = "reply_tests.rs"]
mod tests;
