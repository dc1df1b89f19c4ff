//! The shared simulator: the devices (one per unit id) and the fault rules behind one cheap,
//! clonable handle that every transport task and a test hold at the same time, and the
//! transport-independent decision of what to do with one request (answer, stay silent, answer
//! late, answer broken). Framing the answer is the transport's job (`Outcome::rtu_bytes`,
//! `Outcome::mbap_bytes`).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::config::SerialSettings;
use crate::model::Value;

use super::device::{SimDevice, SimError};
use super::fault::{FaultKind, FaultRule, Faults};
use super::frame::{decode_request, mbap_frame, rtu_frame};
use super::serial::SerialServer;
use super::tcp::{TcpFraming, TcpServer};

/// A set of simulated devices and the faults they suffer, shared by every transport serving
/// them. Cloning is cheap (one `Arc`).
#[derive(Clone)]
pub struct Simulator {
    inner: Arc<Inner>,
}

struct Inner {
    // std Mutexes: each is held only to answer one request or change a pin or a rule, never
    // across an await, so a blocking lock is cheaper than an async one and cannot deadlock.
    devices: BTreeMap<u8, Mutex<SimDevice>>,
    faults: Mutex<Faults>,
}

/// Bytes sent in place of, or in front of, a reply (the `garbage` fault).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Garbage {
    #[default]
    None,
    Before(Vec<u8>),
    Instead(Vec<u8>),
}

/// What to do with one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Say nothing (unknown unit, broadcast, timeout or dead fault).
    Silent,
    /// Answer `pdu` for `unit` after `delay` (the slow fault; 0 otherwise). `corrupt`: break
    /// the frame check (CRC on RTU, length field on MBAP). `tid_skew`: added to the MBAP
    /// transaction id (the wrong-tid fault; 0 otherwise).
    Reply {
        unit: u8,
        pdu: Vec<u8>,
        delay: Duration,
        corrupt: bool,
        garbage: Garbage,
        tid_skew: u16,
    },
}

impl Outcome {
    fn frame(&self, build: impl FnOnce(u8, &[u8], bool) -> Vec<u8>) -> Option<Vec<u8>> {
        let Outcome::Reply {
            unit,
            pdu,
            corrupt,
            garbage,
            ..
        } = self
        else {
            return None;
        };
        Some(match garbage {
            Garbage::Instead(g) => g.clone(),
            Garbage::Before(g) => [g.clone(), build(*unit, pdu, *corrupt)].concat(),
            Garbage::None => build(*unit, pdu, *corrupt),
        })
    }

    /// The reply as RTU bytes (a corrupt reply has its CRC bytes inverted).
    pub fn rtu_bytes(&self) -> Option<Vec<u8>> {
        self.frame(|unit, pdu, corrupt| {
            let mut f = rtu_frame(unit, pdu);
            if corrupt {
                let n = f.len();
                f[n - 2] ^= 0xFF;
                f[n - 1] ^= 0xFF;
            }
            f
        })
    }

    /// The reply as an MBAP frame for `transaction` (a corrupt reply's length field claims one
    /// byte less than it carries).
    pub fn mbap_bytes(&self, transaction: u16) -> Option<Vec<u8>> {
        let transaction = match self {
            Outcome::Reply { tid_skew, .. } => transaction.wrapping_add(*tid_skew),
            Outcome::Silent => transaction,
        };
        self.frame(|unit, pdu, corrupt| {
            mbap_frame(transaction, unit, pdu, if corrupt { -1 } else { 0 })
        })
    }

    /// The extra delay before the reply.
    pub fn delay(&self) -> Duration {
        match self {
            Outcome::Reply { delay, .. } => *delay,
            Outcome::Silent => Duration::ZERO,
        }
    }
}

impl Simulator {
    /// Serve `devices` (a later device with the same unit id replaces an earlier one) under
    /// `faults`.
    pub fn new(devices: Vec<SimDevice>, faults: Faults) -> Self {
        let devices = devices
            .into_iter()
            .map(|d| (d.unit(), Mutex::new(d)))
            .collect();
        Simulator {
            inner: Arc::new(Inner {
                devices,
                faults: Mutex::new(faults),
            }),
        }
    }

    /// The unit ids served, ascending.
    pub fn units(&self) -> Vec<u8> {
        self.inner.devices.keys().copied().collect()
    }

    fn device(&self, unit: u8) -> Result<MutexGuard<'_, SimDevice>, SimError> {
        let m = self
            .inner
            .devices
            .get(&unit)
            .ok_or(SimError::UnknownUnit(unit))?;
        // A panic while holding the lock leaves plain data behind; keep serving it.
        Ok(m.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn faults(&self) -> MutexGuard<'_, Faults> {
        self.inner.faults.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Run `f` on the device with this unit id.
    pub fn with_device<R>(
        &self,
        unit: u8,
        f: impl FnOnce(&mut SimDevice) -> R,
    ) -> Result<R, SimError> {
        let mut d = self.device(unit)?;
        Ok(f(&mut d))
    }

    /// Pin a point of a unit to a value (see `SimDevice::set`).
    pub fn set(&self, unit: u8, point: &str, value: Value) -> Result<(), SimError> {
        self.device(unit)?.set(point, value)
    }

    /// Release a pinned point.
    pub fn unset(&self, unit: u8, point: &str) -> Result<(), SimError> {
        self.device(unit)?.unset(point);
        Ok(())
    }

    /// Replace all fault rules (and the dice).
    pub fn set_faults(&self, faults: Faults) {
        *self.faults() = faults;
    }

    /// Add one fault rule.
    pub fn add_fault(&self, rule: FaultRule) {
        self.faults().push(rule);
    }

    /// Remove every fault rule.
    pub fn clear_faults(&self) {
        self.faults().clear();
    }

    /// Decide what to do with `pdu` sent to `unit` at `now`. The device's values are taken at
    /// the moment the reply leaves (`now` plus any slow-fault delay). Unit 0 is a broadcast:
    /// writes reach every device and nobody answers.
    pub fn process(&self, unit: u8, pdu: &[u8], now: SystemTime) -> Outcome {
        if unit == 0 {
            if let Ok(req) = decode_request(pdu) {
                if req.is_write() {
                    for u in self.units() {
                        if let Ok(mut d) = self.device(u) {
                            d.answer(&req, now);
                        }
                    }
                }
            }
            debug!(pdu = ?pdu, "broadcast: no reply");
            return Outcome::Silent;
        }
        if !self.inner.devices.contains_key(&unit) {
            debug!(unit, "request for a unit not simulated here: no reply");
            return Outcome::Silent;
        }
        let fault = self.faults().pick(unit);
        let function = pdu.first().copied().unwrap_or(0);
        let mut delay = Duration::ZERO;
        let mut corrupt = false;
        let mut garbage = Garbage::None;
        let mut exception = None;
        let mut tid_skew = 0;
        let mut unit_out = unit;
        let mut lie: Option<fn(Vec<u8>) -> Vec<u8>> = None;
        match &fault {
            Some(FaultKind::Dead | FaultKind::Timeout) => {
                debug!(unit, function, fault = %fault.as_ref().map(|f| f.to_string()).unwrap_or_default(), "no reply (fault)");
                return Outcome::Silent;
            }
            Some(FaultKind::Slow(d)) => delay = *d,
            Some(FaultKind::Crc) => corrupt = true,
            Some(FaultKind::Exception(c)) => exception = Some(*c),
            Some(FaultKind::Garbage) => {
                let mut f = self.faults();
                let g = f.garbage();
                garbage = if f.coin() {
                    Garbage::Instead(g)
                } else {
                    Garbage::Before(g)
                };
            }
            Some(FaultKind::Flood(n)) => garbage = Garbage::Instead(self.faults().flood(*n)),
            Some(FaultKind::WrongTid) => tid_skew = 1,
            Some(FaultKind::WrongUnit) => unit_out = if unit == 255 { 1 } else { unit + 1 },
            Some(FaultKind::Short) => lie = Some(short_reply),
            Some(FaultKind::Trailing) => lie = Some(trailing_bytes),
            Some(FaultKind::WrongFunction) => lie = Some(other_function),
            None => {}
        }
        let mut pdu_out = match exception {
            Some(code) => vec![function | 0x80, code],
            None => match self.device(unit) {
                Ok(mut d) => d.handle(pdu, now + delay),
                Err(_) => return Outcome::Silent,
            },
        };
        if let Some(lie) = lie {
            pdu_out = lie(pdu_out);
        }
        debug!(
            unit,
            function,
            request = ?pdu,
            reply = ?pdu_out,
            fault = %fault.as_ref().map(|f| f.to_string()).unwrap_or_else(|| "none".into()),
            "request"
        );
        Outcome::Reply {
            unit: unit_out,
            pdu: pdu_out,
            delay,
            corrupt,
            garbage,
            tid_skew,
        }
    }

    /// Serve Modbus TCP (MBAP) on `listener` until `shutdown`, one task per connection.
    pub async fn serve_tcp(&self, listener: TcpListener, shutdown: CancellationToken) {
        TcpServer::new(self.clone(), listener, TcpFraming::Mbap, shutdown)
            .run()
            .await
    }

    /// Serve RTU framing over TCP on `listener` until `shutdown`.
    pub async fn serve_rtu_over_tcp(&self, listener: TcpListener, shutdown: CancellationToken) {
        TcpServer::new(self.clone(), listener, TcpFraming::Rtu, shutdown)
            .run()
            .await
    }

    /// Serve RTU on the serial line `settings.port` until `shutdown`, reopening it with backoff
    /// whenever it fails or vanishes. `timing`: delay replies to the wire time at the baud.
    pub async fn serve_serial(
        &self,
        settings: SerialSettings,
        timing: bool,
        shutdown: CancellationToken,
    ) {
        SerialServer::new(self.clone(), settings, timing, shutdown)
            .run()
            .await
    }
}

/// The `short` fault: a read reply (functions 1 to 4) with its last register (or last byte of
/// bits) cut off, the byte count lowered to match. Other replies pass unchanged.
fn short_reply(mut pdu: Vec<u8>) -> Vec<u8> {
    let cut = match pdu.first() {
        Some(1 | 2) => 1,
        Some(3 | 4) => 2,
        _ => return pdu,
    };
    if pdu.len() >= 2 + cut && pdu[1] as usize >= cut {
        pdu[1] -= cut as u8;
        pdu.truncate(pdu.len() - cut);
    }
    pdu
}

/// The `trailing` fault: two bytes after a read reply's data (functions 1 to 4), inside the
/// frame. Other replies pass unchanged.
fn trailing_bytes(mut pdu: Vec<u8>) -> Vec<u8> {
    if matches!(pdu.first(), Some(1..=4)) {
        pdu.extend_from_slice(&[0xDE, 0xAD]);
    }
    pdu
}

/// The `wrong-function` fault: the same body under another function code (3 and 4, 1 and 2
/// swapped; any other code plus one, an exception keeping its exception bit).
fn other_function(mut pdu: Vec<u8>) -> Vec<u8> {
    if let Some(f) = pdu.first_mut() {
        let (flag, base) = (*f & 0x80, *f & 0x7F);
        let other = match base {
            1 => 2,
            2 => 1,
            3 => 4,
            4 => 3,
            x => (x + 1) & 0x7F,
        };
        *f = flag | other;
    }
    pdu
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{DataType, PointSpec, Table, WordOrder};

    fn sim() -> Simulator {
        let p = PointSpec {
            name: "pressure".into(),
            table: Table::HoldingRegister,
            address: 0,
            data_type: DataType::U16,
            order: WordOrder::Abcd,
            scale: 1.0,
            offset: 0.0,
            unit: None,
            writable: true,
            scale_from: None,
            publish: true,
        };
        Simulator::new(
            vec![
                SimDevice::new(1, "a", vec![p.clone()], vec![]),
                SimDevice::new(2, "b", vec![p], vec![]),
            ],
            Faults::new(vec![FaultRule::parse("2:crc").unwrap()], Some(1)),
        )
    }

    #[test]
    fn outcomes_per_unit_and_fault() {
        let s = sim();
        let now = SystemTime::now();
        let read = [3, 0, 0, 0, 1];
        s.set(1, "pressure", Value::UInt(450)).unwrap();
        let ok = s.process(1, &read, now);
        assert_eq!(ok.rtu_bytes().unwrap(), rtu_frame(1, &[3, 2, 0x01, 0xC2]));
        assert_eq!(
            ok.mbap_bytes(9).unwrap(),
            mbap_frame(9, 1, &[3, 2, 0x01, 0xC2], 0)
        );
        let bad = s.process(2, &read, now);
        let bytes = bad.rtu_bytes().unwrap();
        assert!(matches!(
            super::super::frame::check_rtu(&bytes),
            super::super::frame::RtuScan::Invalid(_)
        ));
        assert_eq!(s.process(3, &read, now), Outcome::Silent);
        // broadcast write reaches both, answers nobody
        assert_eq!(s.process(0, &[6, 0, 0, 0, 7], now), Outcome::Silent);
        s.clear_faults();
        assert_eq!(
            s.process(2, &read, now).rtu_bytes().unwrap(),
            rtu_frame(2, &[3, 2, 0, 7])
        );
        s.add_fault(FaultRule::parse("exception:6").unwrap());
        assert_eq!(
            s.process(1, &read, now).rtu_bytes().unwrap(),
            rtu_frame(1, &[0x83, 6])
        );
        s.set_faults(Faults::new(
            vec![FaultRule::parse("slow:250ms").unwrap()],
            None,
        ));
        assert_eq!(s.process(1, &read, now).delay(), Duration::from_millis(250));
    }

    #[test]
    fn lying_outcomes() {
        let s = sim();
        let now = SystemTime::now();
        s.set(1, "pressure", Value::UInt(450)).unwrap();
        // Read 2 registers from 0: the device holds [450, 0].
        let read = [3, 0, 0, 0, 2];
        let lie = |spec: &str| {
            s.set_faults(Faults::new(vec![FaultRule::parse(spec).unwrap()], Some(7)));
            s.process(1, &read, now)
        };
        // Short: one register less, byte count and frame consistent.
        assert_eq!(
            lie("short").rtu_bytes().unwrap(),
            rtu_frame(1, &[3, 2, 0x01, 0xC2])
        );
        assert_eq!(
            lie("short").mbap_bytes(5).unwrap(),
            mbap_frame(5, 1, &[3, 2, 0x01, 0xC2], 0)
        );
        let good = [3, 4, 0x01, 0xC2, 0, 0];
        assert_eq!(
            lie("trailing").mbap_bytes(5).unwrap(),
            mbap_frame(5, 1, &[3, 4, 0x01, 0xC2, 0, 0, 0xDE, 0xAD], 0)
        );
        assert_eq!(
            lie("wrong-tid").mbap_bytes(5).unwrap(),
            mbap_frame(6, 1, &good, 0)
        );
        assert_eq!(lie("wrong-tid").rtu_bytes().unwrap(), rtu_frame(1, &good));
        assert_eq!(lie("wrong-unit").rtu_bytes().unwrap(), rtu_frame(2, &good));
        assert_eq!(
            lie("wrong-function").rtu_bytes().unwrap(),
            rtu_frame(1, &[4, 4, 0x01, 0xC2, 0, 0])
        );
        let flood = lie("flood:3000").mbap_bytes(5).unwrap();
        assert_eq!(flood.len(), 3000);
        assert_eq!(
            lie("exception:255").rtu_bytes().unwrap(),
            rtu_frame(1, &[0x83, 0xFF])
        );
        // Pure helpers on their edges.
        assert_eq!(short_reply(vec![3, 0]), vec![3, 0]);
        assert_eq!(short_reply(vec![1, 1, 0xFF]), vec![1, 0]);
        assert_eq!(short_reply(vec![6, 0, 1, 0, 2]), vec![6, 0, 1, 0, 2]);
        assert_eq!(other_function(vec![0x83, 2]), vec![0x84, 2]);
        assert_eq!(other_function(vec![0x10, 0, 0]), vec![0x11, 0, 0]);
        assert_eq!(other_function(vec![]), Vec::<u8>::new());
    }
}
