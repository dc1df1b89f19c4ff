//! The NB-IoT modem simulator behind `gasdtu simulate --modem <model>`: a module (Quectel BC95,
//! BC66 or BG96, SIMCom SIM7020 or SIM7080) on a serial line or pty that speaks the AT dialect sheet of
//! issue 11 with its quirks (echo, BC95's missing spaces, URCs at any moment, slow replies,
//! CME errors, sleep, registration loss, network-closed sockets, reboots, hang until power
//! cycle), with a real TCP connection to 127.0.0.1 behind each AT socket, paced like an NB-IoT
//! link, and a unix control socket for faults at runtime.
//!
//! Layout: `at` (pure command-line parser), `model` (per-model texts and limits), `signal`
//! (radio figures and their per-model reports), `fault` (fault spelling and dice), `core`
//! (the pure module state machine), `registration` (its network registration), `reply`
//! (what a handler answers), `commands` and `sockets` (its command handlers; `sockets_bc66` and `sockets_sim7080` the
//! dialects of those two modules), `link`
//! (pacing, and the paced TCP socket task), `control` (control commands and their socket),
//! `port` (the runner that owns the serial line). Used by `gasdtu simulate` and tests only,
//! never by the daemon.

pub mod at;
pub mod commands;
pub mod control;
pub mod core;
pub mod fault;
pub mod link;
pub mod model;
pub mod port;
pub mod registration;
pub mod reply;
pub mod signal;
pub mod sockets;
mod sockets_bc66;
mod sockets_sim7080;

pub use self::core::{Modem, NetEvent, Out, Settings, Stats};
pub use control::ControlCmd;
pub use fault::{ModemFault, ModemFaultKind};
pub use link::LinkSpec;
pub use model::Model;
pub use port::{ModemServer, ModemSimConfig};

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_sockets;
