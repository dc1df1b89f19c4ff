//! gasdtu: the edge daemon of a gas utility's DTU. The library holds every module so that the
//! binary, the integration tests and the benchmarks share one implementation; see
//! docs/ARCHITECTURE.md for the codemap.

pub mod acq;
pub mod alarm;
pub mod broker;
pub mod cli;
pub mod codec;
pub mod config;
pub mod model;
pub mod outbox;
pub mod pipeline;
pub mod planner;
pub mod report;
pub mod service;
pub mod sim;
pub mod status;
pub mod store;
pub mod uplink;
