//! Field tools through the daemon (issue 11): `gasdtu modem info | signal | at` reach the
//! module through the running daemon's status socket, so the serial port keeps one owner (the
//! AT engine) and a field engineer's command is serialized with the supervisor's. JSON request
//! lines on the status socket:
//!
//! ```text
//! {"op":"modem_info"}                  -> {"ok":true,"modem":{ModemStatus}}
//! {"op":"modem_signal"}                -> {"ok":true,"model":"bg96","signal":{...},"at_ms":...}
//! {"op":"modem_at","cmd":"AT+CSQ"}     -> {"ok":true,"lines":["+CSQ: 20,99"],"result":"OK"}
//! ```
//!
//! `modem_signal` runs the detected module's signal commands now (for antenna placement: a
//! fresh sample every time, not the supervisor's scheduled one). `modem_at` sends one command
//! (at most `MAX_AT` characters, no line breaks); every such command is logged with the peer's
//! uid, because a field engineer can switch the radio off with it. Without `[modem]` every
//! request answers `{"ok":false,"kind":"no_modem"}`.

use std::sync::{Arc, Mutex};

use serde_json::{json, Value as Json};
use tokio::sync::watch;

use crate::modem::profile;
use crate::modem::{AtHandle, ModemStatus};

/// Longest command `modem_at` passes on.
pub const MAX_AT: usize = 256;

/// The running modem as the status socket sees it (swapped at every modem generation).
#[derive(Clone)]
pub struct ModemProxy {
    link: Arc<Mutex<Option<AtHandle>>>,
    status: watch::Receiver<ModemStatus>,
}

impl ModemProxy {
    pub fn new(status: watch::Receiver<ModemStatus>) -> ModemProxy {
        ModemProxy {
            link: Arc::new(Mutex::new(None)),
            status,
        }
    }

    /// The engine of the current modem generation (None: no `[modem]`).
    pub fn set(&self, at: Option<AtHandle>) {
        *self.link.lock().unwrap_or_else(|e| e.into_inner()) = at;
    }

    fn at(&self) -> Option<AtHandle> {
        self.link.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Whether a JSON request line is for this proxy.
    pub fn wants(req: &Json) -> bool {
        req.get("op")
            .and_then(Json::as_str)
            .is_some_and(|op| op.starts_with("modem_"))
    }

    /// Answer one request; `peer` names who asked (for the log of `modem_at`).
    pub async fn handle(&self, req: &Json, peer: &str) -> Json {
        let Some(at) = self.at() else {
            return json!({"ok": false, "kind": "no_modem",
                "error": "this gateway has no [modem] (or mode = \"none\")"});
        };
        match req.get("op").and_then(Json::as_str) {
            Some("modem_info") => {
                json!({"ok": true, "modem": serde_json::to_value(&*self.status.borrow()).unwrap_or_default()})
            }
            Some("modem_signal") => self.signal(&at).await,
            Some("modem_at") => {
                let Some(cmd) = req.get("cmd").and_then(Json::as_str) else {
                    return bad("modem_at needs \"cmd\": the AT command to send");
                };
                if cmd.len() > MAX_AT {
                    return bad(&format!("the command is longer than {MAX_AT} characters"));
                }
                tracing::warn!(peer, cmd = %crate::config::escape(cmd),
                    "modem AT command from the status socket");
                match at.call(cmd).await {
                    Ok(x) => json!({"ok": true, "lines": x.lines,
                        "result": format!("{:?}", x.result), "truncated": x.truncated}),
                    Err(e) => json!({"ok": false, "kind": "at", "error": e.to_string()}),
                }
            }
            other => bad(&format!(
                "unknown modem request {:?} (modem_info, modem_signal, modem_at)",
                other.unwrap_or("")
            )),
        }
    }

    async fn signal(&self, at: &AtHandle) -> Json {
        let model = self.status.borrow().model.clone();
        let Some(p) = model.as_deref().and_then(profile::by_id) else {
            return json!({"ok": false, "kind": "not_ready",
                "error": "the module is not detected yet"});
        };
        let (merged, errors) = match crate::modem::supervisor::sample_signal(at, p).await {
            Ok(r) => r,
            Err(e) => return json!({"ok": false, "kind": "at", "error": e.to_string()}),
        };
        match merged {
            Some(s) => json!({"ok": true, "model": p.id,
                "signal": crate::modem::status::SignalReport::from(s),
                "at_ms": crate::time::now_ms(), "errors": errors}),
            None => json!({"ok": false, "kind": "at", "error": errors.join("; ")}),
        }
    }
}

fn bad(msg: &str) -> Json {
    json!({"ok": false, "kind": "bad_request", "error": msg})
}
