//! The Modbus device simulator behind `gasdtu simulate`, also used in-process by `gasdtu demo`,
//! the integration tests and the benchmarks. It is a Modbus server with its own wire layer so
//! it can break frames on purpose.
//!
//! Layout: `frame` (pure RTU/MBAP codec and the resynchronising RTU reader), `values` (pure
//! value model: daily flow cycle, rising totalizers, noise), `device` (one unit's register
//! banks and request handling), `fault` (fault rules and dice), `server` (the shared
//! `Simulator` and what it does with one request), `tcp` and `serial` (the I/O edges).

pub mod broker;
pub mod device;
pub mod fault;
pub mod frame;
pub mod modem;
pub mod serial;
pub mod server;
pub mod tcp;
pub mod values;

pub use device::{SimDevice, SimError};
pub use fault::{FaultKind, FaultRule, Faults};
pub use serial::SerialServer;
pub use server::{Outcome, Simulator};
pub use tcp::{TcpFraming, TcpServer};

#[cfg(test)]
mod tests_io;
#[cfg(test)]
mod types_tests;
