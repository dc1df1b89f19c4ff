//! The modem's health as node metrics (`Modem/...`, issue 14): which metrics a node with a
//! `[modem]` has, their datatypes and units, and `ModemFigures`, the small snapshot of the
//! supervisor's `ModemStatus` they carry (signal in whole dB, so a tenth of a dB of jitter
//! does not cause NDATA). No modem configured: no `Modem/` metric. Pure.

use crate::model::Value;
use crate::modem::status::ModemState;
use crate::modem::ModemStatus;

use super::metrics::SpType;

pub const MODEM_STATE: &str = "Modem/State";
pub const MODEM_REGISTERED: &str = "Modem/Registered";
pub const MODEM_RSRP: &str = "Modem/RSRP";
pub const MODEM_RSSI: &str = "Modem/RSSI";
pub const MODEM_SINR: &str = "Modem/SINR";
pub const MODEM_ECL: &str = "Modem/ECL";
pub const MODEM_PDP_ACTIVE: &str = "Modem/PDP Active";
pub const MODEM_RESETS_TODAY: &str = "Modem/Resets Today";
pub const MODEM_INITS: &str = "Modem/Inits";

/// The `Modem/` metrics: name, datatype, engineering unit.
pub const MODEM_METRICS: [(&str, SpType, Option<&str>); 9] = [
    (MODEM_ECL, SpType::Int32, None),
    (MODEM_INITS, SpType::UInt64, None),
    (MODEM_PDP_ACTIVE, SpType::Boolean, None),
    (MODEM_REGISTERED, SpType::Boolean, None),
    (MODEM_RESETS_TODAY, SpType::UInt64, None),
    (MODEM_RSRP, SpType::Int32, Some("dBm")),
    (MODEM_RSSI, SpType::Int32, Some("dBm")),
    (MODEM_SINR, SpType::Int32, Some("dB")),
    (MODEM_STATE, SpType::String, None),
];

/// What the `Modem/` metrics carry; `None` = unknown (the metric is null).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ModemFigures {
    /// starting, searching, registered, denied, unresponsive, recovering.
    pub state: String,
    /// Registered (home or roaming).
    pub registered: bool,
    pub rsrp_dbm: Option<i32>,
    pub rssi_dbm: Option<i32>,
    pub sinr_db: Option<i32>,
    pub ecl: Option<i32>,
    /// The socket-mode PDP context as the module last reported it.
    pub pdp_active: Option<bool>,
    /// Ladder resets and power cycles today (the ladder's daily counters).
    pub resets_today: u64,
    /// Init sequences since the supervisor started.
    pub inits: u64,
}

fn state_name(s: ModemState) -> &'static str {
    match s {
        ModemState::Starting => "starting",
        ModemState::Searching => "searching",
        ModemState::Registered => "registered",
        ModemState::Denied => "denied",
        ModemState::Unresponsive => "unresponsive",
        ModemState::Recovering => "recovering",
    }
}

/// A signal figure in whole dB; NaN and absurd values are unknown.
fn whole_db(x: Option<f32>) -> Option<i32> {
    x.filter(|x| x.is_finite() && x.abs() < 1000.0)
        .map(|x| x.round() as i32)
}

impl ModemFigures {
    pub fn from_status(s: &ModemStatus) -> ModemFigures {
        let sig = s.signal.unwrap_or_default();
        ModemFigures {
            state: state_name(s.state).to_string(),
            registered: s.state == ModemState::Registered,
            rsrp_dbm: whole_db(sig.rsrp_dbm),
            rssi_dbm: whole_db(sig.rssi_dbm),
            sinr_db: whole_db(sig.sinr_db),
            ecl: sig.ecl.map(i32::from),
            pdp_active: s.pdp_active,
            resets_today: u64::from(s.ladder.resets_today) + u64::from(s.ladder.power_cycles_today),
            inits: s.inits,
        }
    }

    /// The value of the `Modem/` metric `name` (`None`: null, or not a modem metric).
    pub fn value(&self, name: &str) -> Option<Value> {
        match name {
            MODEM_STATE => Some(Value::Text(self.state.clone())),
            MODEM_REGISTERED => Some(Value::Bool(self.registered)),
            MODEM_RSRP => self.rsrp_dbm.map(|v| Value::Int(v.into())),
            MODEM_RSSI => self.rssi_dbm.map(|v| Value::Int(v.into())),
            MODEM_SINR => self.sinr_db.map(|v| Value::Int(v.into())),
            MODEM_ECL => self.ecl.map(|v| Value::Int(v.into())),
            MODEM_PDP_ACTIVE => self.pdp_active.map(Value::Bool),
            MODEM_RESETS_TODAY => Some(Value::UInt(self.resets_today)),
            MODEM_INITS => Some(Value::UInt(self.inits)),
            _ => None,
        }
    }
}
