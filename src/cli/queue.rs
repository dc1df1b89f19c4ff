//! `gasdtu queue`: buffer statistics of the store (outbox depth, history, losses, sequence
//! high-water mark), read through a read-only connection so it works while the daemon runs.
//! Also owns the state-directory resolution shared with `gasdtu export`.

use std::path::PathBuf;
use std::time::SystemTime;

use super::Global;
use crate::store::{Store, StoreStats};
use crate::time::{rfc3339_ms, unix_ms};

#[derive(Debug, clap::Args)]
pub struct QueueArgs {
    /// State directory holding gasdtu.db (default: gateway.state_dir of the config).
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Print the statistics as one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// `--state-dir` if given, else the config's `gateway.state_dir`.
pub fn resolve_state_dir(arg: Option<PathBuf>, global: &Global) -> anyhow::Result<PathBuf> {
    if let Some(d) = arg {
        return Ok(d);
    }
    // The load error already names the file and its cause (kept out of the chain so it is
    // printed once).
    let loaded = crate::config::load_file(&global.config).map_err(|e| {
        anyhow::anyhow!(
            "cannot take the state directory from the config ({e}); pass --state-dir DIR to read a store without a config"
        )
    })?;
    Ok(loaded.config.gateway.state_dir)
}

pub async fn run(args: QueueArgs, global: &Global) -> anyhow::Result<u8> {
    let dir = resolve_state_dir(args.state_dir, global)?;
    let (path, stats) = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
        let store = Store::open_read_only(&dir)?;
        Ok((store.path().to_path_buf(), store.stats()?))
    })
    .await??;
    if args.json {
        println!("{}", serde_json::to_string(&stats)?);
    } else {
        for line in render(
            &path.display().to_string(),
            &stats,
            unix_ms(SystemTime::now()),
        ) {
            println!("{line}");
        }
    }
    Ok(0)
}

fn ago(ms: i64, now_ms: i64) -> String {
    let d = std::time::Duration::from_secs(((now_ms - ms).max(0) / 1000) as u64);
    format!("{} ({} ago)", rfc3339_ms(ms), humantime::format_duration(d))
}

fn mib(b: u64) -> String {
    format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0))
}

/// The human report (pure, for tests).
pub fn render(path: &str, s: &StoreStats, now_ms: i64) -> Vec<String> {
    let mut out = vec![format!("store {path}: {} on disk", mib(s.bytes_on_disk))];
    out.push(format!(
        "outbox: {} sealed message(s) awaiting PUBACK, {} pending entries, {} held until the clock is set",
        s.sealed_messages, s.pending_entries, s.held_entries
    ));
    out.push(format!(
        "readings: {} not yet delivered{}, {} delivered (history)",
        s.pending_readings,
        s.oldest_pending_read_ms
            .map(|t| format!(", oldest read {}", ago(t, now_ms)))
            .unwrap_or_default(),
        s.history_readings
    ));
    if let (Some(lo), Some(hi)) = (s.oldest_read_ms, s.newest_read_ms) {
        out.push(format!(
            "time range: {} .. {}",
            rfc3339_ms(lo),
            rfc3339_ms(hi)
        ));
    }
    out.push(format!("sequence: last issued {}", s.seq_hwm));
    out.push(format!(
        "loss: {} unsent reading(s) evicted (reported upstream), {} delivered reading(s) expired from history",
        s.dropped_unsent, s.dropped_expired
    ));
    out.push(format!(
        "last PUBACK: {}",
        s.last_ack_ms
            .map(|t| ago(t, now_ms))
            .unwrap_or_else(|| "never".into())
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_names_every_figure() {
        let now = crate::store::MIN_TRUSTED_UNIX_MS + 7_200_000;
        let s = StoreStats {
            sealed_messages: 2,
            pending_entries: 30,
            held_entries: 1,
            pending_readings: 300,
            history_readings: 1000,
            oldest_pending_read_ms: Some(now - 3_600_000),
            oldest_read_ms: Some(now - 7_200_000),
            newest_read_ms: Some(now),
            bytes_on_disk: 3 * 1024 * 1024,
            seq_hwm: 42,
            dropped_unsent: 5,
            dropped_expired: 6,
            last_ack_ms: None,
        };
        let text = render("/x/gasdtu.db", &s, now).join("\n");
        for want in [
            "3.0 MiB",
            "2 sealed",
            "30 pending",
            "1 held",
            "300 not yet delivered",
            "oldest read 2026-01-01T01:00:00.000Z (1h ago)",
            "1000 delivered",
            "last issued 42",
            "5 unsent",
            "6 delivered",
            "last PUBACK: never",
        ] {
            assert!(text.contains(want), "missing {want:?} in\n{text}");
        }
    }
}
