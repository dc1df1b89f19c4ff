//! What a command handler of the simulated module answers: the reply's pieces (framed lines
//! and raw bytes), its final result (OK, ERROR, a CME error, nothing, or deferred until
//! something happens) and what must happen after the reply (reboot, power off, a URC). Pure
//! data.

use std::time::Duration;

use super::at;

/// A final result that waits for something.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Pending {
    /// AT+CGATT=1 / AT+QIACT=1: OK once registered.
    Attach { pdp: bool },
    /// AT+NSOCO / AT+CSOCON: OK or ERROR when the connection answers.
    Connect { conn: u64 },
}

/// One piece of a reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Piece {
    /// Framed "\r\n<line>\r\n".
    Line(String),
    /// Written as is.
    Raw(Vec<u8>),
}

/// A command's final result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Final {
    Ok,
    Error,
    Cme(u16),
    /// Nothing (after a "> " prompt, or when the boot text carries the result).
    Nothing,
    /// Later, when `Pending` resolves.
    Deferred(Pending, Duration),
}

/// What a handler answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Reply {
    pub pieces: Vec<Piece>,
    pub fin: Final,
}

impl Reply {
    pub fn ok() -> Reply {
        Reply::lines(Vec::<String>::new())
    }
    pub fn lines<S: Into<String>>(lines: impl IntoIterator<Item = S>) -> Reply {
        Reply {
            pieces: lines.into_iter().map(|l| Piece::Line(l.into())).collect(),
            fin: Final::Ok,
        }
    }
    pub fn fin(fin: Final) -> Reply {
        Reply {
            pieces: Vec::new(),
            fin,
        }
    }
    pub fn error() -> Reply {
        Reply::fin(Final::Error)
    }
    /// Bad arguments.
    pub fn bad() -> Reply {
        Reply::fin(Final::Cme(50))
    }
}

impl From<at::BadArg> for Reply {
    fn from(_: at::BadArg) -> Reply {
        Reply::bad()
    }
}

/// Things a handler schedules for after its reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum After {
    Reboot,
    PowerOff,
    Urc(String),
}
