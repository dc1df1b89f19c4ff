//! The gateway runtime: composition of store, alarms, reporter, bus tasks, consumer,
//! interlocks, forwarder, status socket and watchdog.

pub mod alarms;
#[cfg(test)]
mod alarms_tests;
pub mod bus_proxy;
pub mod consumer;
pub mod status_socket;
pub mod systemd;
