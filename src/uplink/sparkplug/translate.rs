//! The seam between the outbox and the Sparkplug session, pure: the entries of one sealed
//! outbox message (store seq `N`) become the Sparkplug publishes of the current session
//! (docs/sparkplug.md, "How the forwarder speaks Sparkplug"). Data entries (readings of one
//! device and poll cycle) go to `EdgeSession::readings` (by exception when live, whole and
//! flagged `is_historical` when backlog or resent), a live batch of a device gone offline to
//! `EdgeSession::device_offline` (DDEATH); a live batch read before the device's newest known
//! state (the outbox sends live data newest first) goes as history, so it never overwrites the
//! current value; alarm transitions become the `Alarms/<rule>` metric of their device. Samples without a metric in the model (points with `publish = false`, report
//! aggregates, points removed since) are left out. No I/O, no clock (`now_ms` is an argument).

use super::encode::{MetricUpdate, Update};
use super::metrics::{DeviceModel, ALARMS_PREFIX};
use super::node::{EdgeSession, Publish, SessionError};
use crate::model::SampleBatch;
use crate::outbox::{Entry, EntryBody, EntryKind};

/// What one outbox message became.
#[derive(Debug, Default, PartialEq)]
pub struct Translated {
    /// The publishes, in order (each with this session's seq).
    pub publishes: Vec<Publish>,
    /// Some backlog could not be sent in this session (its device has no DBIRTH in it: it
    /// died in this session): the message must not be acknowledged; it is resent (and
    /// translated again) in the next session.
    pub parked: bool,
    /// Entries that cannot be expressed (unknown device, an unencodable value), with why:
    /// logged by the caller, never retried (they would fail the same way).
    pub skipped: Vec<String>,
}

/// Translate the entries of one message. `historical`: the whole message is backlog (sent in
/// an earlier session and not acknowledged); each data entry's own `historical` flag counts too.
pub fn translate(
    session: &mut EdgeSession,
    entries: &[Entry],
    historical: bool,
    now_ms: u64,
) -> Translated {
    let mut out = Translated::default();
    for e in entries {
        let hist = historical || e.historical;
        let r = match (&e.kind, &e.body) {
            (EntryKind::Data, EntryBody::Batch(b)) => batch(session, b, hist, now_ms),
            (EntryKind::Alarm, EntryBody::Json(j)) => alarm(session, j, hist, now_ms),
            // Events and replies keep their gasdtu topics (the caller publishes the sealed
            // bytes); they never reach here in a data or alarm message.
            _ => {
                out.skipped
                    .push(format!("entry {}: not data or an alarm", e.id));
                continue;
            }
        };
        match r {
            Ok(p) => out.publishes.extend(p),
            Err(SessionError::NotBorn(_)) => out.parked = true,
            Err(err) => out.skipped.push(format!("entry {}: {err}", e.id)),
        }
    }
    out
}

/// The read time as Sparkplug carries it (UTC ms; before 1970 is 0).
fn at_ms(t: std::time::SystemTime) -> u64 {
    u64::try_from(crate::time::unix_ms(t)).unwrap_or(0)
}

/// The samples of `b` that are metrics of `dev`, as metric updates with their read times.
pub fn updates_of(dev: &DeviceModel, b: &SampleBatch) -> Vec<MetricUpdate> {
    b.samples
        .iter()
        .filter(|s| dev.by_name(&s.point).is_some())
        .map(|s| MetricUpdate {
            name: s.point.to_string(),
            at_ms: at_ms(s.read_at),
            update: Update::Point {
                value: s.value.clone(),
                good: s.quality.is_good() && s.value.is_some(),
            },
        })
        .collect()
}

fn batch(
    session: &mut EdgeSession,
    b: &SampleBatch,
    historical: bool,
    now_ms: u64,
) -> Result<Vec<Publish>, SessionError> {
    let device: &str = &b.device;
    let Some(dev) = session.model().device(device) else {
        return Err(SessionError::UnknownDevice(device.to_string()));
    };
    if !b.online {
        // Comm loss: DDEATH once (live only: a backlog batch says nothing about now).
        if historical {
            return Ok(Vec::new());
        }
        return Ok(session
            .device_offline(device, now_ms)?
            .into_iter()
            .collect());
    }
    let updates = updates_of(dev, b);
    if updates.is_empty() {
        return Ok(Vec::new());
    }
    // The outbox sends live data newest first: a read older than what the host already has
    // as current must not overwrite it, so it goes as history.
    let newest = updates.iter().map(|u| u.at_ms).max().unwrap_or(0);
    let stale = session
        .last_read_ms(device)
        .is_some_and(|last| newest < last);
    session.readings(device, updates, historical || stale, now_ms)
}

/// An alarm transition (docs/alarms.md: `alarm`, `dev`, `state`, `limit`, `message`, `t`) as
/// its `Alarms/<rule>` metric: active unless `state` is `cleared`.
fn alarm(
    session: &mut EdgeSession,
    j: &serde_json::Value,
    historical: bool,
    now_ms: u64,
) -> Result<Vec<Publish>, SessionError> {
    let (Some(rule), Some(device)) = (j["alarm"].as_str(), j["dev"].as_str()) else {
        // An alarm without a rule and device names nothing a host knows.
        return Ok(Vec::new());
    };
    let name = format!("{ALARMS_PREFIX}{rule}");
    let Some(dev) = session.model().device(device) else {
        return Err(SessionError::UnknownDevice(device.to_string()));
    };
    if dev.by_name(&name).is_none() {
        // A rule removed since: nothing to say in this session's terms.
        return Ok(Vec::new());
    }
    let active = j["state"].as_str() != Some("cleared");
    let t = j["t"]
        .as_str()
        .and_then(crate::remote::request::parse_rfc3339)
        .unwrap_or(now_ms as i64);
    let u = MetricUpdate {
        name,
        at_ms: u64::try_from(t).unwrap_or(0),
        update: Update::Alarm {
            active,
            limit: if active { j["limit"].as_f64() } else { None },
            message: if active {
                j["message"].as_str().map(str::to_string)
            } else {
                None
            },
        },
    };
    if !historical && session.is_offline(device) {
        // A dead device is not born again by an alarm (its DBIRTH comes with its next good
        // reading and carries this state).
        session.remember(device, vec![u])?;
        return Ok(Vec::new());
    }
    session.readings(device, vec![u], historical, now_ms)
}
