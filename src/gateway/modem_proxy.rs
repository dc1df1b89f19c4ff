//! Field tools through the daemon (issue 11): `gasdtu modem info | signal | at` reach the
//! module through the running daemon's status socket, so the serial port keeps one owner (the
//! AT engine) and a field engineer's command is serialized with the supervisor's. JSON request
//! lines on the status socket:
//!
//! ```text
//! {"op":"modem_info"}                  -> {"ok":true,"modem":{ModemStatus}}
//! {"op":"modem_signal"}                -> {"ok":true,"model":"bg96","signal":{...},"at_ms":...}
//! {"op":"modem_at","cmd":"AT+CSQ"}     -> {"ok":true,"lines":["+CSQ: 20,99"],"result":"OK"}
//! {"op":"modem_at","cmd":"AT+CFUN=0"}  -> {"ok":false,"kind":"refused","class":"radio",...}
//! {"op":"modem_at","cmd":"AT+CFUN=0","force":true} -> sent (logged forced=true)
//! ```
//!
//! `modem_signal` runs the detected module's signal commands now (for antenna placement: a
//! fresh sample every time, not the supervisor's scheduled one). `modem_at` sends one command
//! (at most `MAX_AT` characters, no line breaks); every such command is logged with the peer's
//! uid, because a field engineer can switch the radio off with it; a link-breaking command
//! (`at_class::AtClass::link_breaking`: attach, operator, radio, PDP context, reporting level,
//! PSM/eDRX, band setters and resets) is refused unless the request says `"force":true`, and
//! the log line says `forced`. Field tools' commands run at `Priority::Field`. Without `[modem]` every
//! request answers `{"ok":false,"kind":"no_modem"}`.

use std::sync::{Arc, Mutex};

use serde_json::{json, Value as Json};
use tokio::sync::watch;

use crate::modem::profile;
use crate::modem::{classify, AtClass, AtHandle, ModemStatus, Priority};

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

    /// The engine of the current modem generation (None: no `[modem]`); field tools' commands
    /// run at `Priority::Field` (after socket traffic, before the supervisor's).
    pub fn set(&self, at: Option<AtHandle>) {
        let at = at.map(|a| a.with_priority(Priority::Field));
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
                let force = req.get("force").and_then(Json::as_bool).unwrap_or(false);
                let class = classify(cmd);
                if class.link_breaking() && !force {
                    tracing::warn!(peer, cmd = %crate::config::escape(cmd), class = class.as_str(),
                        forced = false, "modem AT command from the status socket refused");
                    return refused(cmd, class);
                }
                tracing::warn!(peer, cmd = %crate::config::escape(cmd), class = class.as_str(),
                    forced = force && class.link_breaking(),
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

/// The answer to a link-breaking command sent without `force` (pure).
pub fn refused(cmd: &str, class: AtClass) -> Json {
    let what = match class {
        AtClass::Reset => "resets or powers down the module".to_string(),
        c => format!("can take the link down ({})", c.as_str()),
    };
    json!({"ok": false, "kind": "refused", "class": class.as_str(),
        "error": format!("{} {what} under the daemon's live session; \
            send it anyway with --force", crate::config::escape(cmd))})
}

fn bad(msg: &str) -> Json {
    json!({"ok": false, "kind": "bad_request", "error": msg})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_name_the_command_the_class_and_the_way_out() {
        let r = refused("AT+CFUN=0", classify("AT+CFUN=0"));
        assert_eq!(r["kind"], "refused");
        assert_eq!(r["class"], "radio");
        let e = r["error"].as_str().unwrap_or_default();
        assert!(e.starts_with("AT+CFUN=0 can take the link down"), "{e}");
        assert!(e.contains("--force"), "{e}");
        let r = refused("AT+NRB\u{1b}", classify("AT+NRB"));
        let e = r["error"].as_str().unwrap_or_default();
        assert!(
            e.contains("resets or powers down") && !e.contains('\u{1b}'),
            "{e}"
        );
    }
}
