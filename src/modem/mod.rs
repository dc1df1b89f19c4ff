//! The NB-IoT modem's pure core (issue 11): everything about talking AT to a module that can be
//! decided without a port or a clock. `at` splits the byte stream into command replies, URCs
//! and binary payloads; `reply` turns 3GPP reply lines into typed values (registration, SIM,
//! attach, operator, address, network time, PSM/eDRX settings), `signal` the vendor signal
//! replies into one `Signal`, and `timers` decodes and encodes the PSM/eDRX timer bits;
//! `profile` is the table of known modules (detection from ATI / AT+CGMM / AT+CGMR, and per
//! module: echo default, signal commands, reset command and boot marker, socket dialect,
//! limits); `timeouts` is the per-command timeout table; `at_class` classifies a command line
//! (socket, link-disturbing, reset: priority, deferral, refusal); `socket_cmd` builds and parses the
//! socket commands of each dialect (NSO*, QI*, CSO*). The dialects are those of
//! docs/dev/modem-dialects.md. No file here does I/O, uses tokio or reads a clock; the task
//! that owns the serial port (not here) drives them.
//!
//! Intended engine loop (one task owning the port, with a CancellationToken):
//! 1. Keep one `at::AtParser`. Before writing a command, `parser.begin(Request::new(text))`
//!    (`Request::with_prompt` for `AT+QISEND=...`), look up its timeout with
//!    `timeouts::timeout_for(text)`, then write `text` + "\r". If the module has been idle
//!    longer than its sleep timer, send a bare "AT" first to wake it.
//! 2. `select!` on: port readable (feed every chunk: `for ev in parser.feed(&buf[..n])`), the
//!    command's deadline, the request channel, cancellation.
//!    - `Event::Exchange(x)`: the command's reply; hand `x.lines` to the `reply` parser for the
//!      command (or `socket_cmd`) and answer the requester. `Final::Prompt`: write the payload
//!      and `parser.begin(Request::payload())`; its exchange ends with `SEND OK`/`SEND FAIL`.
//!    - `Event::Urc(u)`: dispatch on `u.kind`: `Cereg` -> `reply::cereg_urc` into the link
//!      state; socket URCs -> `socket_cmd::parse_urc` (pushed data is in `u.data` or hex in the
//!      line); `Boot` -> the module restarted (sockets gone; re-run the init sequence);
//!      `None` kind -> log at debug.
//!    - `Event::Empty`: note only; `Event::Error(e)`: log and count.
//!    - One command at a time: the next `begin` only after the previous command's final result
//!      or its timeout (a late final result would otherwise answer the next command). Socket
//!      sends go through `socket_cmd::send_steps` (chunked to `Profile::max_send`); after
//!      `AT+QIOPEN`'s OK the `+QIOPEN` URC is awaited up to `timeouts::QIOPEN_URC`.
//! 3. On the deadline: `parser.abort()` returns a `Partial`. `blank_only` is the after-sleep
//!    quirk: retry once after `timeouts::SLEEP_RETRY` (only safe commands such as AT,
//!    queries, ATE0); `silent` repeatedly is
//!    a hang: climb the reset ladder (CFUN=0/1, then the profile's reset command, waiting for
//!    its boot marker up to `timeouts::BOOT`, then the power-cycle GPIO).
//! 4. After a reboot, reconnecting or a detection run: ATE0 (so echo no longer matters),
//!    `ATI` -> `profile::detect`, `AT+CEREG=<n>`, then the profile's signal command on a
//!    schedule.

pub mod at;
pub mod at_class;
pub mod profile;
pub mod reply;
pub mod signal;
pub mod socket_cmd;
pub mod timeouts;
pub mod timers;

pub use at::{AtParser, Event, Exchange, Final, Partial, Request, StreamError, Urc, UrcKind};
pub use at_class::{classify, AtClass, Priority};
pub use profile::{detect, Profile, SignalCommand, SocketDialect};
pub use reply::ReplyError;
pub use signal::Signal;
pub use timeouts::timeout_for;
pub use timers::Timer;

pub mod engine;
pub mod ladder;
pub mod power;
pub mod status;
pub mod supervisor;

pub use engine::{AtEngine, AtError, AtHandle, EngineOptions};
pub use status::{health_json, ModemStatus};
pub use supervisor::{ModemSupervisor, SupervisorOptions};
pub mod bridge;
pub use bridge::{link_gate, SocketBridge};
