//! Configuration: the resolved, validated shape of /etc/gasdtu/gasdtu.toml that the rest of the
//! daemon consumes (gateway, buses, devices with their points resolved from profiles), and the
//! loader that produces it. Loading reads files; everything after the read is pure so that
//! `gasdtu check`, the daemon and (later) MQTT config pushes share one validator.
//!
//! Layout: `load` (entry points `load_file`/`parse_str`, cross-entry checks), `sections`
//! (the `[gateway]` and `[store]` sections),
//! `bus` and `device` (one entry each), `points` (point and computed entries, shared with
//! profiles), `profiles` (profile lookup and the built-in copies of configs/profiles),
//! `doc` (typed reader over the spanned TOML tree that reports unknown keys), `diag` (errors,
//! warnings, positions, the error cap and the `escape` helper for echoed text), `file`
//! (bounded reads of regular files only, UTF-8 positions), `pem` (PEM certificates and keys),
//! `wire_time` (per-bus request plan and wire time for `gasdtu check`), `remote` (the
//! `[remote]` section: signing keys, remote-write allow-list), `modem` (the `[modem]`
//! section: mode, AT port, profile, timers, reset caps, `[modem.power]`), `sparkplug`
//! (`[uplink] protocol` and `[uplink.sparkplug]`).

mod alarms;
mod bus;
mod byte_order;
mod device;
mod diag;
mod doc;
mod file;
#[cfg(test)]
mod gateway_tests;
mod load;
pub mod lookup;
pub mod merge;
#[cfg(test)]
mod merge_tests;
mod modem;
pub mod pem;
mod point_sets;
mod points;
pub mod profiles;
mod remote;
mod sections;
mod show;
mod sparkplug;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod types_tests;
mod uplink;
mod wire_time;

pub use diag::{
    error_count, escape, sort_by_place, ConfigError, ConfigWarning, LoadError, MAX_ERRORS,
};
pub use file::{read_bounded, MAX_CONFIG_BYTES, MAX_PEM_BYTES};
pub use load::{config_dir, load_file, parse_str, parse_with_profiles, Loaded, BAUD_RATES};
pub use modem::{
    ModemConfig, ModemMode, PowerConfig, PowerSwitch, PsmRequest, MAX_APN, MAX_REGISTER_WITHIN,
    MAX_SIGNAL_EVERY, MIN_REGISTER_WITHIN, MIN_SIGNAL_EVERY,
};
pub use remote::{MAX_CONFIRM_WITHIN, MAX_KEEP_CONFIGS, MAX_KEYS, MIN_CONFIRM_WITHIN};
pub use sections::{resolve_path, DEFAULT_PROFILE_DIRS, DEFAULT_STATE_DIR};
pub use show::{published_lines, show_device};
pub use sparkplug::SparkplugConfig;
pub use wire_time::{bus_timing, check_report, summary, BusTiming, Summary, Verdict};

use std::path::PathBuf;
use std::time::Duration;

use crate::model::{ComputedSpec, PointSpec};

pub const DEFAULT_PATH: &str = "/etc/gasdtu/gasdtu.toml";

/// The whole validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub gateway: GatewayConfig,
    /// In file order of names (sorted by name).
    pub buses: Vec<BusConfig>,
    /// Enabled and disabled devices, sorted by name.
    pub devices: Vec<DeviceConfig>,
    /// `[store]`: the SQLite buffer's bounds (defaults when the section is absent).
    pub store: StoreConfig,
    /// `[uplink]`: the MQTT connection; `None` when the section is absent (buffer only).
    pub uplink: Option<UplinkConfig>,
    /// `[alarms.<id>]`: alarm rules, sorted by id (empty when the section is absent).
    pub alarms: Vec<crate::alarm::AlarmRule>,
    /// `[remote]`: remote operations over MQTT; `None` when the section is absent (off: no
    /// subscription to commands or config pushes).
    pub remote: Option<RemoteConfig>,
    /// `[modem]`: the NB-IoT module to supervise (docs/config.md); `None` when the section is
    /// absent or `mode = "none"`.
    pub modem: Option<ModemConfig>,
    /// `[uplink] protocol = "sparkplug"` with its `[uplink.sparkplug]` ids; `None` for the
    /// gasdtu protocol (the default) or without `[uplink]` (docs/sparkplug.md).
    pub sparkplug: Option<SparkplugConfig>,
}

/// `[remote]`: who may operate this gateway over MQTT and how config pushes are kept
/// (docs/remote.md).
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteConfig {
    /// Raw Ed25519 public keys (at most 16). With keys, every request must be signed by one of
    /// them; without, only reads are accepted unsigned (see `allow_unsigned`).
    pub keys: Vec<[u8; 32]>,
    /// Without keys: also accept unsigned writes and config pushes (`gasdtu check` warns).
    pub allow_unsigned: bool,
    /// How long a pushed config has to reach the broker before it is rolled back (30 s - 24 h,
    /// default 10 min).
    pub confirm_within: Duration,
    /// Previous configs kept in the state directory (1 - 50, default 5).
    pub keep_configs: usize,
    /// `[remote.writes]`: the points remote commands may write, sorted by device and point.
    pub writes: Vec<RemoteWrite>,
}

impl Default for RemoteConfig {
    fn default() -> Self {
        RemoteConfig {
            keys: Vec::new(),
            allow_unsigned: false,
            confirm_within: Duration::from_secs(600),
            keep_configs: 5,
            writes: Vec::new(),
        }
    }
}

/// One point allowed for remote writes, with optional limits on a numeric value.
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteWrite {
    pub device: String,
    pub point: String,
    pub min: Option<f64>,
    pub max: Option<f64>,
}

/// `[store]`: bounds of the SQLite buffer in the state directory.
#[derive(Debug, Clone, PartialEq)]
pub struct StoreConfig {
    /// Database size (main file + WAL) above which the oldest non-alarm data is evicted.
    /// Default 512 MiB (a gateway with a few GB of flash).
    pub max_bytes: u64,
    /// Data older than this (by read time) is evicted, sent or not. Default 90 days.
    pub max_age: Duration,
    /// How long delivered readings stay as history for `status`/`export` (evicted earlier
    /// when space runs out). Default 30 days.
    pub history: Duration,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            max_bytes: 512 * 1024 * 1024,
            max_age: Duration::from_secs(90 * 86400),
            history: Duration::from_secs(30 * 86400),
        }
    }
}

/// Payload encoding of `data` messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Encoding {
    /// Documented JSON (default).
    #[default]
    Json,
    /// Compact CBOR for NB-IoT budgets (docs/mqtt.md; `gasdtu decode` turns it into JSON).
    Cbor,
}

/// Layout of `data` messages (`uplink.format`): 1, the original documented form (default,
/// unchanged), or 2, the compact versioned form (schema table, one time stamp per device read,
/// decimal values as scaled integers in CBOR). docs/mqtt.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PayloadFormat {
    #[default]
    V1,
    V2,
}

/// `[uplink]`: the MQTT 3.1.1 connection to the utility's broker.
#[derive(Debug, Clone, PartialEq)]
pub struct UplinkConfig {
    pub host: String,
    /// Default 8883 with TLS, 1883 without.
    pub port: u16,
    /// Default true. `tls = false` is plain TCP, and `gasdtu check` warns about it.
    pub tls: bool,
    /// PEM CA bundle that signs the broker's certificate (required with TLS).
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate and key for mutual TLS (both or neither).
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    /// Name to verify the broker's certificate against when it differs from `host`.
    pub server_name: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    /// Default "gasdtu-<gateway id>".
    pub client_id: String,
    /// Default "gasdtu/<gateway id>"; topics are `<root>/data`, `<root>/alarm` ...
    pub topic_root: String,
    /// Default 240 s (NB-IoT: radio wake-ups cost energy).
    pub keepalive: Duration,
    /// Connect and flush timeout, default 60 s (rumqttc's 5 s default is far too short).
    pub connect_timeout: Duration,
    /// Reconnect backoff bounds (jittered exponential), defaults 1 s and 5 s.
    pub reconnect_min: Duration,
    pub reconnect_max: Duration,
    /// Largest payload the forwarder builds, default 1024 bytes (NB-IoT module stacks).
    pub max_payload: usize,
    /// Optional uplink budget in payload bytes per second.
    pub rate_limit: Option<u64>,
    pub encoding: Encoding,
    /// `data` message layout, default 1 (docs/mqtt.md).
    pub format: PayloadFormat,
    /// Unacknowledged publishes in flight, default 8.
    pub inflight: u16,
    /// `always` (default): one long-lived session. `on_demand`: connect when there is
    /// something to send (or every `check_in` for queued commands), drain, stay `linger`, then
    /// disconnect so an NB-IoT module can sleep (PSM).
    pub session: SessionMode,
    /// on_demand: how long a session stays up after the outbox is drained (commands), default 20 s.
    pub linger: Duration,
    /// on_demand: the longest time between sessions when nothing is sent, default 1 h.
    pub check_in: Duration,
    /// A publish waiting this long for its PUBACK with no packet at all from the broker means a
    /// stalled link (no RST, dead radio bearer): the session is dropped and everything
    /// unacknowledged resent on the next one. Default 30 s, far below a 4-minute keepalive.
    pub ack_timeout: Duration,
}

/// How the uplink holds its MQTT session (`uplink.session`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionMode {
    Always,
    OnDemand,
}

#[derive(Debug, Clone, PartialEq)]
pub struct GatewayConfig {
    pub id: String,
    /// Default /var/lib/gasdtu.
    pub state_dir: PathBuf,
    /// Searched in order for `profile = "..."`; the built-in profiles come last.
    pub profile_dirs: Vec<PathBuf>,
    /// tracing filter, default "info".
    pub log_level: String,
    /// `false`: the config is not commissioned yet (the shipped example): `gasdtu run` idles,
    /// polls nothing and sends nothing. Default true.
    pub commissioned: bool,
    /// The status socket (`gateway.socket`, relative to the config file's directory); None:
    /// the default, /run/gasdtu/gasdtu.sock (see `cli::socket`).
    pub socket: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct BusConfig {
    pub name: String,
    pub transport: Transport,
    /// Response timeout per transaction.
    pub timeout: Duration,
    /// Silence kept between the end of one transaction and the next request
    /// (RS-485 turnaround / inter-frame delay).
    pub turnaround: Duration,
    /// Extra attempts after a failed transaction (timeout, CRC, I/O), not after an exception.
    pub retries: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Transport {
    /// Modbus RTU on a serial line.
    Rtu(SerialSettings),
    /// Modbus TCP (MBAP framing).
    Tcp { host: String, port: u16 },
    /// RTU framing carried over a TCP socket (serial device servers in transparent mode).
    RtuOverTcp { host: String, port: u16 },
}

#[derive(Debug, Clone, PartialEq)]
pub struct SerialSettings {
    pub port: String,
    pub baud: u32,
    pub parity: Parity,
    /// 7 or 8.
    pub data_bits: u8,
    /// 1 or 2.
    pub stop_bits: u8,
}

impl SerialSettings {
    /// Bits on the wire per character: start + data + parity + stop.
    pub fn bits_per_char(&self) -> u32 {
        1 + self.data_bits as u32 + u32::from(self.parity != Parity::None) + self.stop_bits as u32
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parity {
    None,
    Even,
    Odd,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DeviceConfig {
    pub name: String,
    pub bus: String,
    /// Modbus unit id (1..=247; 0 is broadcast and refused; 255 allowed for TCP).
    pub unit: u8,
    /// Poll interval, aligned to wall-clock boundaries (default 5m).
    pub poll: Duration,
    /// Offset from the aligned boundary (must be below `poll`).
    pub phase: Duration,
    /// Most registers in one read (1..=125), default 125.
    pub max_registers: u16,
    /// Largest hole bridged in one read, default 10.
    pub max_gap: u16,
    /// Consecutive failed cycles before the device is marked offline (default 3).
    pub offline_after: u32,
    pub enabled: bool,
    /// The profile the points came from, if any.
    pub profile: Option<String>,
    pub points: Vec<PointSpec>,
    pub computed: Vec<ComputedSpec>,
    /// Poll fast, report slow: how often readings go upstream (default = `poll`, i.e. every
    /// poll). Above `poll`, each report carries aggregates over the interval.
    pub report: Duration,
    /// Report by exception: a point is sent only when it moved more than its deadband since
    /// the value last sent.
    pub deadbands: std::collections::BTreeMap<String, f64>,
    /// Points reported as their last value only (no min/max/mean), in addition to the
    /// automatic ones (totalizers `volume*`, status words and bits, non-numeric values).
    pub report_last: std::collections::BTreeSet<String>,
}

impl DeviceConfig {
    /// True when this device's readings reach the outbox exactly as polled.
    pub fn reports_every_poll(&self) -> bool {
        self.report <= self.poll && self.deadbands.is_empty()
    }

    pub fn limits(&self) -> crate::modbus::planner::Limits {
        crate::modbus::planner::Limits {
            max_registers: self.max_registers,
            max_gap: self.max_gap,
        }
    }
}
