//! The gateway's remote service (issue 10, part E, commands): `RemoteService` owns the inbox the
//! forwarder fills from `<root>/cmd/req` and `<root>/config/set`, and runs each command exactly
//! once: open the envelope against `[remote] keys`, parse the body at the wall clock, authorize,
//! `command_begin` in the store, execute (ping, status, config/get, read and write through the
//! bus task that owns the bus, ack through the `AlarmService`, resend), `command_finish` (result,
//! `cmd/res` reply and audit event in one transaction), wake the forwarder, and only then send
//! the PUBACK (`Inbound::ack`). Anything refused before execution is answered with
//! `command_reject`. A message whose answer could not be persisted is left unacknowledged: the
//! broker redelivers it in the next session. The service reads the running config from a watch
//! channel that `Gateway::apply` updates, so keys and `[remote.writes]` follow every reload.
//! Every SQLite call runs on a blocking thread. Config pushes: `handle_push` opens, parses,
//! authorizes and validates them (the loader of `gasdtu check`), answers a bad one `rejected`
//! on `config/state`, and hands a valid one to the owner of `Gateway::apply`
//! (`super::push::PushOwner` in the run loop); without an owner (the demo)
//! `refuse_config_push` refuses them. Executing an authorized command (and bounding its
//! result) is `ops`; a Sparkplug DCMD (`InboundKind::Dcmd`) becomes write commands in `dcmd`
//! and runs on the same exactly-once path.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value as Json};
use tokio::sync::{mpsc, watch, Notify};
use tokio_util::sync::CancellationToken;

use super::alarms::AlarmService;
use super::status_socket::DeviceBoard;
use super::BusPorts;
use crate::config::Config;
use crate::outbox::ReplyTopic;
use crate::remote::request::{self, RemoteError, Status};
use crate::remote::sign::Kind;
use crate::store::{Begin, Store, StoreError};
use crate::uplink::{Inbound, InboundKind, LinkStatus};

mod dcmd;
mod ops;

use ops::{bounded, execute, executed_status};

/// How long one bus transaction of a command (a read, or a write with its read-back) may take.
pub const BUS_TIMEOUT: Duration = Duration::from_secs(30);
/// Most readings one `resend` makes pending again (ask again from `last` for more).
pub const RESEND_MAX_READINGS: u64 = 50_000;
/// Largest config text `config/get` returns (the store's result bound is 16 KiB, JSON escaping
/// and the envelope included; the uplink's `max_payload` may be lower still).
pub const CONFIG_GET_MAX: usize = 12 * 1024;
/// What the result envelope adds around a result on the wire (`gw`, `seq`, key names).
const ENVELOPE_MARGIN: usize = 160;
/// Op recorded for a request whose op could not be read.
const UNKNOWN_OP: &str = "unknown";

/// What the service needs from the runtime; cheap to clone.
#[derive(Clone)]
pub struct RemoteContext {
    pub store: Arc<Store>,
    /// Wakes the forwarder after a reply was queued.
    pub wake: Arc<Notify>,
    pub alarms: AlarmService,
    pub ports: BusPorts,
    pub board: DeviceBoard,
    pub link: watch::Receiver<LinkStatus>,
    /// The running config (the gateway sends every applied config).
    pub config: watch::Receiver<Arc<Config>>,
    /// Where the running config was read from (`config/get`).
    pub config_path: Option<std::path::PathBuf>,
    /// Requests dropped because no id could be read from them (shown by `status`).
    pub unanswerable: Arc<std::sync::atomic::AtomicU64>,
    /// The owner of `Gateway::apply` (the run loop); None: config pushes are refused.
    pub pushes: Option<mpsc::Sender<super::push::PushJob>>,
}

/// The long-lived task answering remote requests.
pub struct RemoteService {
    rx: mpsc::Receiver<Inbound>,
    ctx: RemoteContext,
}

/// How one request ended, for the decision to acknowledge it.
#[derive(Debug, PartialEq)]
enum Handled {
    /// The answer is persisted (or nothing is owed): PUBACK.
    Ack,
    /// Nothing could be persisted: leave it for redelivery in the next session.
    Keep,
}

impl RemoteService {
    pub fn new(rx: mpsc::Receiver<Inbound>, ctx: RemoteContext) -> RemoteService {
        RemoteService { rx, ctx }
    }

    /// Serve requests one at a time until `shutdown` (a command being executed is finished
    /// first) or until the forwarder drops its sender.
    pub async fn run(mut self, shutdown: CancellationToken) {
        loop {
            let inbound = tokio::select! {
                _ = shutdown.cancelled() => break,
                m = self.rx.recv() => match m {
                    Some(m) => m,
                    None => break,
                },
            };
            let handled = match inbound.kind {
                InboundKind::Command => handle_command(&self.ctx, &inbound.payload).await,
                InboundKind::Dcmd => {
                    let device = inbound.device.clone().unwrap_or_default();
                    dcmd::handle_dcmd(&self.ctx, &device, &inbound.payload).await
                }
                InboundKind::ConfigPush => match self.ctx.pushes.clone() {
                    None => refuse_config_push(&self.ctx, &inbound.payload).await,
                    Some(tx) => {
                        handle_push(&self.ctx, &tx, inbound).await;
                        continue;
                    }
                },
            };
            match handled {
                Handled::Ack => inbound.ack(),
                Handled::Keep => tracing::warn!(
                    kind = inbound.kind.topic_suffix(),
                    "remote request not acknowledged: its answer could not be stored; the broker redelivers it"
                ),
            }
        }
    }
}

/// Config pushes are not enabled where nobody owns `Gateway::apply` for them (the demo):
/// answer with a `config/state` refusal (so the request does not stall in the session) and
/// acknowledge.
async fn refuse_config_push(ctx: &RemoteContext, payload: &[u8]) -> Handled {
    let body = json!({
        "status": "rejected",
        "errors": [{"message": "config pushes are not enabled in this build"}],
    });
    let ev = json!({"event": "config_push", "status": "rejected",
        "reason": "config pushes are not enabled in this build", "bytes": payload.len()});
    let store = ctx.store.clone();
    match blocking(move || store.queue_reply(ReplyTopic::ConfigState, &body, Some(&ev))).await {
        Ok(()) => {
            ctx.wake.notify_one();
            Handled::Ack
        }
        Err(e) => {
            tracing::error!("cannot queue the config/state refusal: {e}");
            Handled::Keep
        }
    }
}

/// Most errors listed in a `rejected` config/state.
pub const MAX_PUSH_ERRORS: usize = 100;

/// One config push: open, parse, authorize (sha256 checked by `parse_push`), validate with
/// the loader of `gasdtu check` (pushed profiles, base dir = the config file's directory),
/// refuse a change of `gateway.id` or `gateway.state_dir`, and `commissioned = false`; a valid push goes to the owner of
/// the `Gateway` (which acknowledges it once installed), a bad one is answered `rejected` on
/// `config/state` with every error (the first `MAX_PUSH_ERRORS`) and nothing changes.
async fn handle_push(
    ctx: &RemoteContext,
    tx: &mpsc::Sender<super::push::PushJob>,
    inbound: Inbound,
) {
    let cfg = ctx.config.borrow().clone();
    let Some(remote) = cfg.remote.clone() else {
        return;
    };
    let gw = cfg.gateway.id.clone();
    let now = crate::time::now_ms();
    // The sha256 of the request's bytes lets `gasdtu push` tell its own refusal from another
    // operator's, even when the body could not be read.
    let request_sha = crate::remote::install::sha256_hex(&inbound.payload);
    let refuse = |version: Option<String>, signer: String, errors: Vec<Json>| {
        let reason = errors
            .first()
            .and_then(|e| e["message"].as_str())
            .unwrap_or("")
            .to_string();
        let body = json!({"status": "rejected", "push": {"version": version},
            "request_sha256": request_sha, "errors": errors});
        let ev = json!({"event": "config_push", "status": "rejected", "version": version,
            "signer": signer, "reason": reason});
        (body, ev)
    };
    let msg = |e: &RemoteError| vec![json!({"code": e.code(), "message": e.to_string()})];
    let (body, ev) = 'refused: {
        let env = match request::open(&inbound.payload, Kind::Config, &gw, &remote.keys) {
            Ok(e) => e,
            // Unverified: the version it claims is quoted for correlation only.
            Err(e) => {
                break 'refused refuse(peek_version(&inbound.payload), "unverified".into(), msg(&e))
            }
        };
        let signer = signer_text(env.signer.as_ref());
        let push = match request::parse_push(&env.body, &gw, now) {
            Ok(p) => p,
            Err(r) => break 'refused refuse(r.id, signer, msg(&r.error)),
        };
        if let Err(e) = request::authorize_push(env.signer.as_ref(), &remote) {
            break 'refused refuse(Some(push.version), signer, msg(&e));
        }
        // A redelivery of a push already handled (its PUBACK lost with a moved uplink or a
        // restart) is acknowledged before it is validated again: its files may be gone, and
        // its answer is already on `config/state`.
        let id = super::push::push_id(&push.version, &crate::remote::sign::hex(&push.sha256));
        let store = ctx.store.clone();
        if let Ok(Ok(true)) = tokio::task::spawn_blocking(move || store.command_done(&id)).await {
            tracing::info!(version = %push.version, "config push already handled (redelivery): acknowledged before validation");
            inbound.ack();
            return;
        }
        let base = ctx
            .config_path
            .as_deref()
            .and_then(std::path::Path::parent)
            .map(std::path::Path::to_path_buf)
            .unwrap_or_else(|| std::path::PathBuf::from("."));
        let origin = format!("push {}", push.version);
        let loaded = match crate::config::parse_with_profiles(
            &push.config,
            &origin,
            &base,
            &push.profiles,
        ) {
            Ok(l) => l,
            Err(errs) => {
                let list = errs
                    .iter()
                    .take(MAX_PUSH_ERRORS)
                    .map(|e| {
                        json!({"origin": e.origin, "path": e.path, "line": e.line,
                                "col": e.column, "message": e.message})
                    })
                    .collect();
                break 'refused refuse(Some(push.version), signer, list);
            }
        };
        let mut errs = Vec::new();
        if loaded.config.gateway.id != cfg.gateway.id {
            errs.push(json!({"path": "gateway.id", "message":
                "a push cannot change the gateway id (it names this gateway's topics)"}));
        }
        if loaded.config.gateway.state_dir != cfg.gateway.state_dir {
            errs.push(json!({"path": "gateway.state_dir", "message":
                "a push cannot change gateway.state_dir (the push records live there)"}));
        }
        if loaded.config.remote.is_none() {
            errs.push(json!({"path": "remote", "message":
                "a push cannot remove [remote] (no further push could reach the gateway)"}));
        }
        if !loaded.config.gateway.commissioned {
            errs.push(json!({"path": "gateway.commissioned", "message":
                "a push cannot set commissioned = false (the gateway would idle at its next start, unreachable)"}));
        }
        if !errs.is_empty() {
            break 'refused refuse(Some(push.version), signer, errs);
        }
        let job = super::push::PushJob {
            push,
            config: loaded.config,
            inbound,
            signer,
        };
        if tx.send(job).await.is_err() {
            tracing::warn!("config push dropped: the gateway is stopping (redelivered later)");
        }
        return;
    };
    let store = ctx.store.clone();
    match blocking(move || store.queue_reply(ReplyTopic::ConfigState, &body, Some(&ev))).await {
        Ok(()) => {
            ctx.wake.notify_one();
            inbound.ack();
        }
        Err(e) => tracing::error!("cannot queue the config/state refusal: {e}"),
    }
}

/// One command, from payload to persisted answer.
async fn handle_command(ctx: &RemoteContext, payload: &[u8]) -> Handled {
    let cfg = ctx.config.borrow().clone();
    let Some(remote) = cfg.remote.clone() else {
        // [remote] was just removed: the forwarder with this inbox is being replaced.
        return Handled::Keep;
    };
    let gw = cfg.gateway.id.clone();
    let now = crate::time::now_ms();
    let env = match request::open(payload, Kind::Cmd, &gw, &remote.keys) {
        Ok(e) => e,
        Err(e) => {
            // Not authenticated: answered with the id it claims (for correlation), but never
            // remembered under it, or a forger could pre-empt a real command's id.
            let Some(claimed) = peek_id(payload) else {
                return unanswerable(ctx, &e);
            };
            return reject(ctx, Some(&claimed), None, UNKNOWN_OP, &e, "unverified").await;
        }
    };
    let signer = signer_text(env.signer.as_ref());
    let cmd = match request::parse_command(&env.body, &gw, now) {
        Ok(c) => c,
        Err(r) if r.id.is_none() => return unanswerable(ctx, &r.error),
        Err(r) => {
            let op = peek_op(&env.body);
            return reject(
                ctx,
                r.id.as_deref(),
                r.id.as_deref(),
                &op,
                &r.error,
                &signer,
            )
            .await;
        }
    };
    let op = cmd.op.name();
    if let Err(e) = request::authorize_command(&cmd.op, env.signer.as_ref(), &remote) {
        return reject(ctx, Some(&cmd.id), Some(&cmd.id), op, &e, &signer).await;
    }
    run_authorized(ctx, &cfg, &remote, &cmd, &signer, now).await
}

/// An authorized command, exactly once: `command_begin`, execute, `command_finish` (or the
/// stored answer of an earlier delivery). Shared by `cmd/req` and Sparkplug DCMD writes.
async fn run_authorized(
    ctx: &RemoteContext,
    cfg: &Config,
    remote: &crate::config::RemoteConfig,
    cmd: &request::Command,
    signer: &str,
    now: i64,
) -> Handled {
    let op = cmd.op.name();
    let signer = signer.to_string();
    let begin = {
        let (store, id, exp) = (ctx.store.clone(), cmd.id.clone(), cmd.expires_ms);
        blocking(move || store.command_begin(&id, op, exp, now)).await
    };
    match begin {
        Err(e) => {
            tracing::error!(id = %cmd.id, "command_begin failed: {e}");
            Handled::Keep
        }
        Ok(Begin::Running) => {
            // Commands run one at a time, so nothing else is running it: an earlier delivery
            // in this process ran it and could not store its result (the store failed). Its
            // effect is unknown; it is never run again.
            let e = RemoteError::Store(
                "an earlier delivery of this command ran but its result could not be stored; \
                 its effect is unknown and it is not run again"
                    .into(),
            );
            let at = crate::time::now_ms();
            let r = request::result_json(&cmd.id, op, Status::UnknownOutcome, None, Some(&e), at);
            let ev = event_json(&cmd.id, op, &r, &signer, false);
            persist_reject(ctx, Some(&cmd.id), r, ev).await
        }
        Ok(Begin::Done(stored)) => {
            // A redelivery: the stored result again, never executed again.
            let ev = event_json(&cmd.id, op, &stored, &signer, true);
            persist_reject(ctx, Some(&cmd.id), stored, ev).await
        }
        Ok(Begin::Interrupted) => {
            let e = RemoteError::Interrupted;
            reject(ctx, Some(&cmd.id), Some(&cmd.id), op, &e, &signer).await
        }
        Ok(Begin::New) => {
            let outcome = execute(ctx, cfg, remote, &cmd.op, &signer).await;
            let outcome = bounded(cfg, &cmd.op, outcome);
            let at = crate::time::now_ms();
            let result = match outcome {
                Ok(v) => request::result_json(&cmd.id, op, Status::Ok, Some(v), None, at),
                Err((partial, e)) => {
                    request::result_json(&cmd.id, op, executed_status(&e), partial, Some(&e), at)
                }
            };
            let ev = event_json(&cmd.id, op, &result, &signer, false);
            match finish(ctx, &cmd.id, &result, &ev).await {
                Ok(()) => {
                    ctx.wake.notify_one();
                    Handled::Ack
                }
                Err(StoreError::OutOfBounds { why, .. }) => {
                    let e = RemoteError::TooLarge {
                        size: result.to_string().len(),
                        max: crate::store::COMMAND_JSON_MAX,
                    };
                    tracing::warn!(id = %cmd.id, "command result too large to store: {why}");
                    // It ran: `error`, not `refused`.
                    let r = request::result_json(&cmd.id, op, Status::Error, None, Some(&e), at);
                    let ev = event_json(&cmd.id, op, &r, &signer, false);
                    persist_reject(ctx, Some(&cmd.id), r, ev).await
                }
                Err(e) => {
                    tracing::error!(id = %cmd.id, "command_finish failed: {e}");
                    Handled::Keep
                }
            }
        }
    }
}

/// `command_finish`, tried again twice (after 200 ms, then 1 s) when the store fails: the
/// effect happened, its result should not be lost to a passing store error. A result too
/// large to store is not retried.
async fn finish(ctx: &RemoteContext, id: &str, result: &Json, ev: &Json) -> Result<(), StoreError> {
    let mut last = None;
    for pause in [0, 200, 1000] {
        tokio::time::sleep(Duration::from_millis(pause)).await;
        let (store, key, r, e) = (
            ctx.store.clone(),
            id.to_string(),
            result.clone(),
            ev.clone(),
        );
        match blocking(move || store.command_finish(&key, &r, &e)).await {
            Ok(()) => return Ok(()),
            Err(e @ StoreError::OutOfBounds { .. }) => return Err(e),
            Err(e) => {
                tracing::warn!(id, "storing a command result failed: {e}");
                last = Some(e);
            }
        }
    }
    Err(last.unwrap_or(StoreError::OutOfBounds {
        what: "command result",
        why: "not stored".into(),
    }))
}

/// A request without a readable id cannot be answered (nobody could match the answer):
/// counted (`status` shows it) and logged (the first few in full, then every 100th), then
/// acknowledged so it is not redelivered.
fn unanswerable(ctx: &RemoteContext, e: &RemoteError) -> Handled {
    let n = ctx
        .unanswerable
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        + 1;
    if n <= 10 || n % 100 == 0 {
        tracing::warn!(
            count = n,
            code = e.code(),
            "remote command without a readable id dropped: {e}"
        );
    }
    Handled::Ack
}

/// Answer without execution: `reply_id` goes into the result, `store_id` (authenticated ids
/// only) is remembered so a redelivery gets the same answer.
async fn reject(
    ctx: &RemoteContext,
    reply_id: Option<&str>,
    store_id: Option<&str>,
    op: &str,
    e: &RemoteError,
    signer: &str,
) -> Handled {
    let at = crate::time::now_ms();
    let mut result =
        request::result_json(reply_id.unwrap_or(""), op, e.status(), None, Some(e), at);
    if reply_id.is_none() {
        result["id"] = Json::Null;
    }
    let ev = event_json(reply_id.unwrap_or(""), op, &result, signer, false);
    persist_reject(ctx, store_id, result, ev).await
}

async fn persist_reject(ctx: &RemoteContext, id: Option<&str>, result: Json, ev: Json) -> Handled {
    let store = ctx.store.clone();
    let id = id.map(str::to_string);
    match blocking(move || store.command_reject(id.as_deref(), &result, &ev)).await {
        Ok(()) => {
            ctx.wake.notify_one();
            Handled::Ack
        }
        Err(e) => {
            tracing::error!("cannot store a command answer: {e}");
            Handled::Keep
        }
    }
}

/// The audit event of a command: id, op, status, error code, signer; `repeat` for a redelivery
/// answered from the store.
fn event_json(id: &str, op: &str, result: &Json, signer: &str, repeat: bool) -> Json {
    let mut ev = json!({
        "event": "command",
        "id": id,
        "op": op,
        "status": result["status"],
        "signer": signer,
        "error": result["error"]["code"],
    });
    if repeat {
        ev["repeat"] = Json::Bool(true);
    }
    ev
}

fn signer_text(k: Option<&crate::remote::sign::KeyId>) -> String {
    match k {
        Some(k) => format!("key {k}"),
        None => "unsigned".into(),
    }
}

/// The id a payload claims (for the reply of a refused envelope), if it is a valid id.
fn peek_id(payload: &[u8]) -> Option<String> {
    let v: Json = serde_json::from_slice(payload).ok()?;
    let body: Json = serde_json::from_str(v.get("body")?.as_str()?).ok()?;
    let id = body.get("id")?.as_str()?;
    request::valid_command_id(id).then(|| id.to_string())
}

/// The version a push claims (envelope not opened: for correlation only), if well formed.
fn peek_version(payload: &[u8]) -> Option<String> {
    let v: Json = serde_json::from_slice(payload).ok()?;
    let body: Json = serde_json::from_str(v.get("body")?.as_str()?).ok()?;
    let version = body.get("version")?.as_str()?;
    request::valid_version(version).then(|| version.to_string())
}

/// The op a body names, if it is one of ours; else `unknown`.
fn peek_op(body: &str) -> String {
    const OPS: [&str; 7] = [
        "ping",
        "status",
        "config/get",
        "read",
        "write",
        "ack",
        "resend",
    ];
    serde_json::from_str::<Json>(body)
        .ok()
        .and_then(|v| v.get("op").and_then(Json::as_str).map(str::to_string))
        .filter(|op| OPS.contains(&op.as_str()))
        .unwrap_or_else(|| UNKNOWN_OP.to_string())
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r,
        // The blocking task panicked or was cancelled: reported as an I/O failure (not
        // `OutOfBounds`, which means "too large" to the callers).
        Err(e) => Err(StoreError::Sink(std::io::Error::other(format!(
            "store task failed: {e}"
        )))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_ops_are_peeked_only_when_valid() {
        let env = |body: &str| json!({"v": 1, "body": body}).to_string();
        assert_eq!(
            peek_id(env(r#"{"id":"ok-1"}"#).as_bytes()).as_deref(),
            Some("ok-1")
        );
        assert_eq!(peek_id(env(r#"{"id":"bad id"}"#).as_bytes()), None);
        assert_eq!(peek_id(b"not json"), None);
        assert_eq!(
            peek_version(env(r#"{"version":"2026-12-02.1"}"#).as_bytes()).as_deref(),
            Some("2026-12-02.1")
        );
        assert_eq!(peek_version(env(r#"{"version":""}"#).as_bytes()), None);
        assert_eq!(peek_version(env(r#"{"id":"x"}"#).as_bytes()), None);
        assert_eq!(peek_op(r#"{"op":"write"}"#), "write");
        assert_eq!(peek_op(r#"{"op":"format_disk"}"#), "unknown");
        assert_eq!(peek_op("{"), "unknown");
    }

    #[test]
    fn the_audit_event_names_id_op_status_and_signer() {
        let r = request::result_json(
            "c1",
            "write",
            Status::Refused,
            None,
            Some(&RemoteError::NotAllowed("x".into())),
            0,
        );
        let ev = event_json("c1", "write", &r, "key 0011223344556677", false);
        assert_eq!(ev["event"], "command");
        assert_eq!(ev["id"], "c1");
        assert_eq!(ev["op"], "write");
        assert_eq!(ev["status"], "refused");
        assert_eq!(ev["error"], "not_allowed");
        assert_eq!(ev["signer"], "key 0011223344556677");
        assert!(ev.get("repeat").is_none());
        assert_eq!(
            event_json("c1", "write", &r, "unsigned", true)["repeat"],
            true
        );
    }
}
