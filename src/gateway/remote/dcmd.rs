//! A Sparkplug DCMD in the remote service (issue 14): the DCMD bytes the forwarder handed over
//! (`InboundKind::Dcmd`, with the device of its topic) become write commands through
//! `sparkplug::dcmd_commands` against the running config (its metric model, `[remote]` and
//! `[remote.writes]`), and each runs on the `cmd/req` path (`run_authorized`: exactly once by
//! id, bus write and read back, audit event); a refusal is stored with `command_reject` under
//! the DCMD's id. The host sees the outcome in the next DDATA (Sparkplug has no reply topic);
//! the `cmd/res` reply goes out on its gasdtu topic like any other.

use super::{reject, run_authorized, Handled, RemoteContext};
use crate::uplink::sparkplug::{build, dcmd_commands};

/// Who sent a DCMD, as the audit event says it: Sparkplug carries no signature.
const SIGNER: &str = "unsigned (sparkplug DCMD)";

/// One DCMD to `device`, from bytes to persisted answers (all or nothing: a refused DCMD
/// runs none of its writes).
pub(super) async fn handle_dcmd(ctx: &RemoteContext, device: &str, payload: &[u8]) -> Handled {
    let cfg = ctx.config.borrow().clone();
    let now = crate::time::now_ms();
    let model = match build(&cfg) {
        Ok(m) => m,
        Err(e) => {
            // The validator builds the same model: only a config without Sparkplug gets here.
            tracing::warn!(device, "DCMD dropped: no Sparkplug model: {e}");
            return Handled::Ack;
        }
    };
    let cmds = match dcmd_commands(&model, cfg.remote.as_ref(), device, payload, now) {
        Ok(c) => c,
        Err(r) => {
            tracing::warn!(device, id = ?r.id, code = r.error.code(), "DCMD refused: {}", r.error);
            let id = r.id.as_deref();
            return reject(ctx, id, id, "write", &r.error, SIGNER).await;
        }
    };
    let Some(remote) = cfg.remote.clone() else {
        // `dcmd_commands` refuses without [remote]; kept for the type.
        return Handled::Ack;
    };
    let mut handled = Handled::Ack;
    for cmd in &cmds {
        tracing::info!(id = %cmd.id, device, "DCMD write");
        if run_authorized(ctx, &cfg, &remote, cmd, SIGNER, now).await == Handled::Keep {
            handled = Handled::Keep;
        }
    }
    handled
}
