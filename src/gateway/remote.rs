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
//! `refuse_config_push` refuses them.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value as Json};
use tokio::sync::{mpsc, watch, Notify};
use tokio_util::sync::CancellationToken;

use super::alarms::{AlarmError, AlarmService};
use super::status_socket::DeviceBoard;
use super::BusPorts;
use crate::alarm::engine::AckError;
use crate::config::{Config, RemoteConfig};
use crate::modbus::bus::{BusRequest, RawOp, RawRequest, WriteRequest};
use crate::model::{DataType, PointSpec, Value};
use crate::outbox::ReplyTopic;
use crate::remote::request::{self, Op, RemoteError, Status, WriteValue};
use crate::remote::sign::Kind;
use crate::store::{Begin, Store, StoreError};
use crate::uplink::{Inbound, InboundKind, LinkState, LinkStatus};

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
            let outcome = execute(ctx, &cfg, &remote, &cmd.op, &signer).await;
            let outcome = bounded(&cfg, &cmd.op, outcome);
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

/// An execution failure, with a partial result when there is one.
type Failure = (Option<Json>, RemoteError);

fn fail(e: RemoteError) -> Failure {
    (None, e)
}

async fn execute(
    ctx: &RemoteContext,
    cfg: &Config,
    _remote: &RemoteConfig,
    op: &Op,
    signer: &str,
) -> Result<Json, Failure> {
    match op {
        Op::Ping => Ok(json!({"pong": true, "version": env!("CARGO_PKG_VERSION")})),
        Op::Status => Ok(status_json(ctx, cfg)),
        Op::ConfigGet => config_get(ctx, cfg).await,
        Op::Read { points } => read_points(ctx, cfg, points).await,
        Op::Write {
            device,
            point,
            value,
        } => write_point(ctx, cfg, device, point, *value).await,
        Op::Ack { occurrence, note } => {
            let by = match note {
                Some(n) => format!(
                    "remote {}, says \"{}\"",
                    signer_by(signer),
                    crate::config::escape(n)
                ),
                None => format!("remote {}", signer_by(signer)),
            };
            let alarms = ctx.alarms.clone();
            let (o, by2) = (*occurrence, by.clone());
            match tokio::task::spawn_blocking(move || alarms.acknowledge(o, &by2)).await {
                Ok(Ok(n)) => {
                    ctx.wake.notify_one();
                    Ok(json!({"acked": occurrence, "by": by, "transitions": n}))
                }
                Ok(Err(AlarmError::Ack(e @ AckError::Unknown(_)))) => {
                    Err(fail(RemoteError::NotFound(e.to_string())))
                }
                Ok(Err(AlarmError::Ack(e @ AckError::AlreadyAcked(_)))) => {
                    Err(fail(RemoteError::NotAllowed(e.to_string())))
                }
                Ok(Err(AlarmError::Store(e))) => Err(fail(RemoteError::Store(e.to_string()))),
                Err(e) => Err(fail(RemoteError::Store(e.to_string()))),
            }
        }
        Op::Resend {
            device,
            from_ms,
            to_ms,
        } => {
            let store = ctx.store.clone();
            let (d, f, t) = (device.clone(), *from_ms, *to_ms);
            let r = blocking(move || store.resend_history(&d, f, t, RESEND_MAX_READINGS))
                .await
                .map_err(|e| match e {
                    StoreError::OutOfBounds { what, why } => {
                        fail(RemoteError::BadRequest(format!("{what}: {why}")))
                    }
                    e => fail(RemoteError::Store(e.to_string())),
                })?;
            if !r.device_known {
                return Err(fail(RemoteError::NotFound(format!(
                    "device {:?} has no history in this gateway's store",
                    crate::config::escape(device)
                ))));
            }
            ctx.wake.notify_one();
            Ok(json!({
                "device": device,
                "entries": r.entries,
                "readings": r.readings,
                "first": r.first_ms.map(crate::time::rfc3339_ms),
                "last": r.last_ms.map(crate::time::rfc3339_ms),
                "more": r.more,
            }))
        }
    }
}

/// The status of an error found while executing: `too_large` then means the command ran but
/// its result cannot be sent (`error`); everything else keeps its own status (a type check
/// done at execution is still a refusal: nothing was written).
fn executed_status(e: &RemoteError) -> Status {
    match e {
        RemoteError::TooLarge { .. } => Status::Error,
        e => e.status(),
    }
}

/// "by remote key <id>" or "by remote (unsigned)".
fn signer_by(signer: &str) -> String {
    if signer == "unsigned" {
        "(unsigned)".into()
    } else {
        signer.to_string()
    }
}

/// A compact status (fits a 1 KiB `max_payload`): device counts, buffer, link.
fn status_json(ctx: &RemoteContext, cfg: &Config) -> Json {
    let board = ctx.board.snapshot();
    let enabled = cfg.devices.iter().filter(|d| d.enabled).count();
    let online = board.values().filter(|d| d.online).count();
    let offline = board.values().filter(|d| !d.online).count();
    let buffer = match ctx.store.stats() {
        Ok(s) => json!({
            "pending_readings": s.pending_readings,
            "pending_entries": s.pending_entries,
            "unacked": s.sealed_messages,
            "oldest_pending_read_ms": s.oldest_pending_read_ms,
        }),
        Err(e) => json!({"error": e.to_string()}),
    };
    let l = ctx.link.borrow().clone();
    let state = match l.state {
        LinkState::Connecting => "connecting",
        LinkState::Connected => "connected",
        LinkState::Down { .. } => "down",
        LinkState::Asleep { .. } => "asleep",
    };
    json!({
        "version": env!("CARGO_PKG_VERSION"),
        "devices": {"enabled": enabled, "online": online, "offline": offline,
            "not_polled_yet": enabled.saturating_sub(online + offline)},
        "alarms_active": ctx.alarms.active().len(),
        "commands_unanswerable": ctx.unanswerable.load(std::sync::atomic::Ordering::Relaxed),
        "buffer": buffer,
        "link": {"state": state, "last_seq": l.last_seq, "reconnects": l.reconnects,
            "dead_letters": l.dead_letters},
    })
}

/// The running config file: its text when it fits both the store's result bound and the
/// uplink's `max_payload`; otherwise `too_large` with its sha256 and size (never a cut config).
async fn config_get(ctx: &RemoteContext, cfg: &Config) -> Result<Json, Failure> {
    let Some(path) = ctx.config_path.clone() else {
        return Err(fail(RemoteError::NotFound(
            "this gateway runs an embedded config (no config file)".into(),
        )));
    };
    let read = tokio::task::spawn_blocking(move || {
        use std::io::Read;
        let f = std::fs::File::open(&path)?;
        let mut buf = Vec::new();
        // Bounded: a config is at most 1 MiB (the loader's own bound is lower).
        f.take(1024 * 1024 + 1).read_to_end(&mut buf)?;
        Ok::<_, std::io::Error>((path, buf))
    })
    .await;
    let (path, bytes) = match read {
        Ok(Ok(x)) => x,
        Ok(Err(e)) => return Err(fail(RemoteError::NotFound(format!("config file: {e}")))),
        Err(e) => return Err(fail(RemoteError::Store(e.to_string()))),
    };
    let sha = crate::remote::sign::hex(&crate::remote::sign::sha256(&bytes));
    let meta = json!({"path": path.display().to_string(), "sha256": sha, "bytes": bytes.len()});
    let Ok(text) = String::from_utf8(bytes) else {
        return Err((
            Some(meta),
            RemoteError::BadRequest("the config file is not UTF-8".into()),
        ));
    };
    let limit = result_limit(cfg);
    let mut out = meta.clone();
    out["config"] = Json::String(text);
    let sent = sent_size("config/get", &out);
    if out["config"].as_str().map_or(0, str::len) > CONFIG_GET_MAX || sent > limit {
        return Err((
            Some(meta),
            RemoteError::TooLarge {
                size: sent,
                max: limit,
            },
        ));
    }
    Ok(out)
}

/// The largest result that is sent whole: the uplink's `max_payload` and the store's bound.
fn result_limit(cfg: &Config) -> usize {
    cfg.uplink
        .as_ref()
        .map(|u| u.max_payload)
        .unwrap_or(usize::MAX)
        .min(crate::store::COMMAND_JSON_MAX)
}

/// Bytes of a result on the wire: the result envelope (longest id), JSON escaping, `gw`, `seq`.
fn sent_size(op: &str, result: &Json) -> usize {
    let id = "x".repeat(crate::store::COMMAND_ID_MAX);
    request::result_json(&id, op, Status::Ok, Some(result.clone()), None, 0)
        .to_string()
        .len()
        + ENVELOPE_MARGIN
}

/// A `read` or `status` result that would not be sent whole (the forwarder would cut its
/// strings, or set it aside) becomes `too_large`: ask for fewer points. Results of ops with
/// an effect are small and kept (the forwarder's `fit_json` shortens their strings if needed).
fn bounded(cfg: &Config, op: &Op, r: Result<Json, Failure>) -> Result<Json, Failure> {
    match (op, r) {
        (Op::Read { .. } | Op::Status, Ok(v)) => {
            let (size, max) = (sent_size(op.name(), &v), result_limit(cfg));
            if size > max {
                Err(fail(RemoteError::TooLarge { size, max }))
            } else {
                Ok(v)
            }
        }
        (_, r) => r,
    }
}

/// The spec of `device.point` in the running config.
fn find_point<'a>(
    cfg: &'a Config,
    device: &str,
    point: &str,
) -> Result<(&'a crate::config::DeviceConfig, &'a PointSpec), RemoteError> {
    let d = cfg
        .devices
        .iter()
        .find(|d| d.name == device)
        .ok_or_else(|| {
            RemoteError::NotFound(format!("no device {device:?} in the running config"))
        })?;
    if !d.enabled {
        return Err(RemoteError::NotFound(format!(
            "device {device:?} is disabled"
        )));
    }
    let p = d.points.iter().find(|p| p.name == point).ok_or_else(|| {
        if d.computed.iter().any(|c| c.name == point) {
            RemoteError::NotFound(format!(
                "{device}.{point} is computed: read the points it is computed from"
            ))
        } else {
            RemoteError::NotFound(format!("device {device:?} has no point {point:?}"))
        }
    })?;
    Ok((d, p))
}

fn bus_sender(ctx: &RemoteContext, bus: &str) -> Option<mpsc::Sender<BusRequest>> {
    ctx.ports
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(bus)
        .map(|p| p.tx.clone())
}

/// Live read of each point through its bus task (between poll cycles), with its quality.
/// Every name is checked first: an unknown one fails the command before any bus traffic.
async fn read_points(
    ctx: &RemoteContext,
    cfg: &Config,
    points: &[(String, String)],
) -> Result<Json, Failure> {
    let mut specs = Vec::with_capacity(points.len());
    for (d, p) in points {
        let (dev, spec) = find_point(cfg, d, p).map_err(fail)?;
        specs.push((dev.bus.clone(), dev.unit, d.clone(), spec.clone()));
    }
    let mut values = Vec::with_capacity(specs.len());
    for (bus, unit, device, spec) in specs {
        let name = format!("{device}.{}", spec.name);
        let read = read_one(ctx, &bus, unit, &spec).await;
        let at = crate::time::rfc3339_ms(crate::time::now_ms());
        values.push(match read {
            Ok(v) => json!({"point": name, "value": v, "quality": "good", "read_at": at}),
            Err(e) => {
                json!({"point": name, "value": null, "quality": "bad", "error": e, "read_at": at})
            }
        });
    }
    Ok(json!({ "values": values }))
}

async fn read_one(
    ctx: &RemoteContext,
    bus: &str,
    unit: u8,
    p: &PointSpec,
) -> Result<Value, String> {
    let tx = bus_sender(ctx, bus).ok_or_else(|| format!("no running bus task for bus {bus:?}"))?;
    let op = RawOp::Read {
        table: p.table,
        address: p.address,
        count: p.width(),
    };
    let (req, rx) = RawRequest::new(unit, op).map_err(|e| e.to_string())?;
    tx.send(BusRequest::Raw(req))
        .await
        .map_err(|_| "the bus task stopped".to_string())?;
    let regs = match tokio::time::timeout(BUS_TIMEOUT, rx).await {
        Ok(Ok(r)) => r.map_err(|e| e.to_string())?,
        Ok(Err(_)) => return Err("the bus task dropped the request".into()),
        Err(_) => return Err(format!("no answer within {BUS_TIMEOUT:?}")),
    };
    crate::modbus::registers::decode_point(p, &regs).map_err(|e| e.to_string())
}

/// The point's type against the value: a bit takes true/false, a number type takes a number
/// its encoding can hold (checked by encoding it, scale and offset applied).
fn typed_value(p: &PointSpec, v: WriteValue) -> Result<Value, RemoteError> {
    let is_bit = matches!(p.data_type, DataType::Bool | DataType::BitOfRegister(_));
    let value = match (is_bit, v) {
        (true, WriteValue::Bool(b)) => Value::Bool(b),
        (false, WriteValue::Number(x)) => Value::Float(x),
        (true, WriteValue::Number(x)) => {
            return Err(RemoteError::OutOfRange(format!(
                "{} is a bit: write true or false, not {x}",
                p.name
            )))
        }
        (false, WriteValue::Bool(b)) => {
            return Err(RemoteError::OutOfRange(format!(
                "{} is a number: write a number, not {b}",
                p.name
            )))
        }
    };
    if matches!(p.data_type, DataType::String(_)) {
        return Err(RemoteError::NotAllowed(format!(
            "{} is a text point: not writable remotely",
            p.name
        )));
    }
    if p.table == crate::model::Table::HoldingRegister {
        crate::modbus::registers::encode_point(p, &value)
            .map_err(|e| RemoteError::OutOfRange(format!("{} cannot hold {v}: {e}", p.name)))?;
    }
    Ok(value)
}

/// Write through the bus task (`BusRequest::WritePoint`, read back), as the interlocks do.
async fn write_point(
    ctx: &RemoteContext,
    cfg: &Config,
    device: &str,
    point: &str,
    v: WriteValue,
) -> Result<Json, Failure> {
    let (dev, spec) = find_point(cfg, device, point).map_err(fail)?;
    if !spec.writable {
        return Err(fail(RemoteError::NotAllowed(format!(
            "{device}.{point} is not writable in its point spec"
        ))));
    }
    let value = typed_value(spec, v).map_err(fail)?;
    let name = format!("{device}.{point}");
    let Some(tx) = bus_sender(ctx, &dev.bus) else {
        return Err(fail(RemoteError::Bus(format!(
            "no running bus task for bus {:?}",
            dev.bus
        ))));
    };
    let (rtx, rrx) = tokio::sync::oneshot::channel();
    let req = WriteRequest {
        device: device.to_string(),
        point: point.to_string(),
        value,
        reply: rtx,
    };
    tracing::warn!(point = %name, value = %v, "remote write");
    if tx.send(BusRequest::WritePoint(req)).await.is_err() {
        return Err(fail(RemoteError::Bus("the bus task stopped".into())));
    }
    let written = json!(match v {
        WriteValue::Bool(b) => json!(b),
        WriteValue::Number(x) => json!(x),
    });
    match tokio::time::timeout(BUS_TIMEOUT, rrx).await {
        Ok(Ok(Ok(rb))) => Ok(json!({"point": name, "written": written, "readback": rb})),
        Ok(Ok(Err(e))) => Err((
            Some(json!({"point": name, "written": written})),
            RemoteError::Bus(e),
        )),
        Ok(Err(_)) => Err(fail(RemoteError::Bus(
            "the bus task dropped the request".into(),
        ))),
        Err(_) => Err(fail(RemoteError::Bus(format!(
            "no result within {BUS_TIMEOUT:?} (the write may have happened)"
        )))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Table, WordOrder};

    fn spec(dt: DataType, table: Table) -> PointSpec {
        PointSpec {
            name: "p".into(),
            table,
            address: 0,
            data_type: dt,
            order: WordOrder::default(),
            scale: 1.0,
            offset: 0.0,
            unit: None,
            writable: true,
        }
    }

    #[test]
    fn write_values_are_checked_against_the_point_type() {
        use WriteValue::*;
        let coil = spec(DataType::Bool, Table::Coil);
        let u16r = spec(DataType::U16, Table::HoldingRegister);
        let f32r = spec(DataType::F32, Table::HoldingRegister);
        let text = spec(DataType::String(4), Table::HoldingRegister);
        let cases: [(&PointSpec, WriteValue, Result<(), &str>); 8] = [
            (&coil, Bool(true), Ok(())),
            (&coil, Number(1.0), Err("out_of_range")),
            (&u16r, Bool(true), Err("out_of_range")),
            (&u16r, Number(65535.0), Ok(())),
            (&u16r, Number(-1.0), Err("out_of_range")),
            (&u16r, Number(70000.0), Err("out_of_range")),
            (&f32r, Number(2.5), Ok(())),
            (&text, Number(1.0), Err("not_allowed")),
        ];
        for (p, v, want) in cases {
            let got = typed_value(p, v).map(|_| ()).map_err(|e| e.code());
            assert_eq!(got, want, "{:?} {v:?}", p.data_type);
        }
    }

    fn cfg() -> Config {
        let text = "[gateway]\nid = \"g\"\nstate_dir = \"/tmp/x\"\n";
        match crate::config::parse_str(text, "t.toml", std::path::Path::new("/")) {
            Ok(l) => l.config,
            Err(e) => panic!("{e:?}"),
        }
    }

    #[test]
    fn read_and_status_results_that_cannot_be_sent_whole_become_too_large() {
        let cfg = cfg();
        let read = Op::Read { points: vec![] };
        let values = |n: usize, len: usize| {
            let v: Vec<Json> = (0..n)
                .map(|i| json!({"point": format!("d.p{i}"), "value": "v".repeat(len)}))
                .collect();
            json!({ "values": v })
        };
        let write = Op::Write {
            device: "d".into(),
            point: "p".into(),
            value: WriteValue::Bool(true),
        };
        // (op, result, expected error code or None for kept)
        let cases: [(&Op, Json, Option<&str>); 5] = [
            (&read, values(2, 10), None),
            (&read, values(64, 300), Some("too_large")),
            (&Op::Status, json!({"x": "y".repeat(100)}), None),
            (
                &Op::Status,
                json!({"x": "y".repeat(20_000)}),
                Some("too_large"),
            ),
            // An op with an effect keeps its result (the forwarder shortens strings).
            (&write, json!({"x": "y".repeat(20_000)}), None),
        ];
        for (op, v, want) in cases {
            let got = bounded(&cfg, op, Ok(v)).err().map(|(_, e)| e.code());
            assert_eq!(got, want, "{}", op.name());
        }
        assert_eq!(
            executed_status(&RemoteError::TooLarge { size: 2, max: 1 }),
            Status::Error
        );
        assert_eq!(
            executed_status(&RemoteError::OutOfRange("x".into())),
            Status::Refused
        );
    }

    mod props {
        //! Fixed seed, bounded cases: the write type check never panics on any number or
        //! scaling, and a value it accepts for a register point is one the bus task can encode.
        use super::*;
        use proptest::prelude::*;
        use proptest::test_runner::{Config as ProptestConfig, RngSeed};

        proptest! {
            #![proptest_config(ProptestConfig {
                cases: 2000,
                rng_seed: RngSeed::Fixed(0x0C0D_5E12),
                failure_persistence: None,
                ..ProptestConfig::default()
            })]

            #[test]
            fn accepted_register_writes_always_encode(
                dt in prop_oneof![
                    Just(DataType::U16), Just(DataType::I16), Just(DataType::U32),
                    Just(DataType::I32), Just(DataType::F32), Just(DataType::F64),
                    Just(DataType::Bcd16), Just(DataType::Bcd32), Just(DataType::U64),
                ],
                x in prop_oneof![any::<f64>(), -1e6..1e6f64],
                scale in prop_oneof![Just(1.0), Just(0.1), any::<f64>()],
                as_bool in any::<bool>(),
            ) {
                let mut p = spec(dt, Table::HoldingRegister);
                p.scale = scale;
                let v = if as_bool { WriteValue::Bool(x > 0.0) } else { WriteValue::Number(x) };
                if let Ok(value) = typed_value(&p, v) {
                    prop_assert!(crate::modbus::registers::encode_point(&p, &value).is_ok());
                }
            }
        }
    }

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
