//! gasdtu: the edge daemon of a gas utility's DTU. The library holds every module so that the
//! binary, the integration tests and the benchmarks share one implementation; see
//! docs/ARCHITECTURE.md for the codemap. The folders follow the flow of a reading: `modbus`
//! (acquisition) → `gateway` (the runtime: consumer, alarms, interlocks) → `store` (SQLite) →
//! `uplink` (MQTT); `config`, `model` and `time` are shared by all; `cli` holds the thin verbs and
//! `sim` the device simulator and the demo broker.

pub mod alarm;
pub mod cli;
pub mod config;
pub mod decimal;
pub mod gateway;
pub mod memcpy;
pub mod modbus;
pub mod model;
pub mod modem;
pub mod outbox;
pub mod remote;
pub mod report;
pub mod sim;
pub mod store;
pub mod time;
pub mod uplink;
