//! The daemon's status: what `gasdtu status` shows. `DeviceBoard` keeps the latest state of
//! every device (last read, quality, online) as batches pass by; `StatusServer` answers on a
//! unix socket (default /run/gasdtu/gasdtu.sock) with one JSON document built by a snapshot
//! function the daemon composes (devices, buffer, link, sequence); `query` is the client side.
//! The protocol is one request line (`status`) and one JSON reply line, then close.

use crate::time::unix_ms;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use thiserror::Error;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio_util::sync::CancellationToken;

use crate::model::{Quality, SampleBatch};

pub const DEFAULT_SOCKET: &str = "/run/gasdtu/gasdtu.sock";

/// Latest known state of one device.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DeviceState {
    pub bus: String,
    pub online: bool,
    pub failed_cycles: u32,
    /// Last poll slot (UTC ms).
    pub last_poll_ms: i64,
    /// Last time any point of the device was read good (UTC ms).
    pub last_good_ms: Option<i64>,
    pub good: usize,
    pub bad: usize,
    /// First bad reason of the last cycle, if any.
    pub last_error: Option<String>,
    pub cycles: u64,
}

/// Device states, updated by the sample consumer.
#[derive(Default, Clone)]
pub struct DeviceBoard {
    inner: Arc<Mutex<BTreeMap<String, DeviceState>>>,
}

impl DeviceBoard {
    /// Forget every device not in `keep` (a reload removed or disabled it): it must not stay
    /// "offline" in `status` and the STATUS= line forever.
    pub fn retain<'a>(&self, keep: impl IntoIterator<Item = &'a str>) {
        let keep: std::collections::HashSet<&str> = keep.into_iter().collect();
        match self.inner.lock() {
            Ok(mut g) => g.retain(|name, _| keep.contains(name.as_str())),
            Err(p) => p.into_inner().retain(|name, _| keep.contains(name.as_str())),
        }
    }

    pub fn observe(&self, b: &SampleBatch) {
        let good = b.samples.iter().filter(|s| s.quality.is_good()).count();
        let last_good = b
            .samples
            .iter()
            .filter(|s| s.quality.is_good())
            .map(|s| unix_ms(s.read_at))
            .max();
        let err = b.samples.iter().find_map(|s| match &s.quality {
            Quality::Bad(r) => Some(format!("{}: {r}", s.point)),
            Quality::Good => None,
        });
        let mut m = match self.inner.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let e = m
            .entry(b.device.to_string())
            .or_insert_with(|| DeviceState {
                bus: b.bus.to_string(),
                online: b.online,
                failed_cycles: 0,
                last_poll_ms: 0,
                last_good_ms: None,
                good: 0,
                bad: 0,
                last_error: None,
                cycles: 0,
            });
        e.online = b.online;
        e.failed_cycles = b.failed_cycles;
        e.last_poll_ms = unix_ms(b.slot);
        if last_good.is_some() {
            e.last_good_ms = last_good;
        }
        e.good = good;
        e.bad = b.samples.len() - good;
        e.last_error = err;
        e.cycles += 1;
    }

    pub fn snapshot(&self) -> BTreeMap<String, DeviceState> {
        match self.inner.lock() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }
}

#[derive(Debug, Error)]
pub enum StatusError {
    #[error("cannot bind the status socket {path}: {source}")]
    Bind {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("another gasdtu is already answering on {0}")]
    InUse(PathBuf),
    #[error("cannot reach the daemon at {path}: {source} (is `gasdtu run` running?)")]
    Connect {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the daemon at {path} gave no valid answer: {why}")]
    Reply { path: PathBuf, why: String },
}

type Provider = Arc<dyn Fn() -> serde_json::Value + Send + Sync>;
/// Answers a request line other than `status` (e.g. `ack 17`), or `None` if unknown. May
/// block (it runs on a blocking thread).
pub type RequestHandler = Arc<dyn Fn(&str) -> Option<serde_json::Value> + Send + Sync>;

/// Answers status requests on a unix socket.
pub struct StatusServer {
    path: PathBuf,
    listener: UnixListener,
    provider: Provider,
    handler: Option<RequestHandler>,
}

impl StatusServer {
    /// Bind `path` (creating its directory). A stale socket file left by a crash is replaced;
    /// a live one (another daemon answering) is an error.
    pub async fn bind(path: &Path, provider: Provider) -> Result<StatusServer, StatusError> {
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        if path.exists() {
            if UnixStream::connect(path).await.is_ok() {
                return Err(StatusError::InUse(path.to_path_buf()));
            }
            let _ = std::fs::remove_file(path);
        }
        let listener = UnixListener::bind(path).map_err(|source| StatusError::Bind {
            path: path.to_path_buf(),
            source,
        })?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660));
        }
        Ok(StatusServer {
            path: path.to_path_buf(),
            listener,
            provider,
            handler: None,
        })
    }

    /// Answer other request lines with `handler` (the daemon: `ack <occurrence> [by]`).
    pub fn with_handler(mut self, handler: RequestHandler) -> Self {
        self.handler = Some(handler);
        self
    }

    pub async fn run(self, shutdown: CancellationToken) {
        loop {
            let accepted = tokio::select! {
                _ = shutdown.cancelled() => break,
                a = self.listener.accept() => a,
            };
            let Ok((stream, _)) = accepted else { continue };
            let provider = self.provider.clone();
            let handler = self.handler.clone();
            tokio::spawn(async move {
                let (rd, mut wr) = stream.into_split();
                let mut line = String::new();
                let mut rd = BufReader::new(rd);
                let read =
                    tokio::time::timeout(Duration::from_secs(5), rd.read_line(&mut line)).await;
                let reply = match (read, line.trim()) {
                    (Ok(Ok(_)), "status") | (Ok(Ok(_)), "") => provider(),
                    (Ok(Ok(_)), other) => {
                        let unknown = serde_json::json!({"error": format!("unknown request {other:?}; try `status`")});
                        match handler {
                            Some(h) => {
                                let req = other.to_string();
                                tokio::task::spawn_blocking(move || h(&req))
                                    .await
                                    .ok()
                                    .flatten()
                                    .unwrap_or(unknown)
                            }
                            None => unknown,
                        }
                    }
                    _ => return,
                };
                let mut out = reply.to_string();
                out.push('\n');
                let _ = wr.write_all(out.as_bytes()).await;
            });
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Ask the daemon at `path` for its status.
pub async fn query(path: &Path) -> Result<serde_json::Value, StatusError> {
    request(path, "status").await
}

/// Send one request line (`status`, `ack 17 alice`) and return the JSON reply.
pub async fn request(path: &Path, line: &str) -> Result<serde_json::Value, StatusError> {
    let stream = UnixStream::connect(path)
        .await
        .map_err(|source| StatusError::Connect {
            path: path.to_path_buf(),
            source,
        })?;
    let (rd, mut wr) = stream.into_split();
    let reply_err = |why: String| StatusError::Reply {
        path: path.to_path_buf(),
        why,
    };
    wr.write_all(format!("{}\n", line.trim()).as_bytes())
        .await
        .map_err(|e| reply_err(e.to_string()))?;
    let mut line = String::new();
    tokio::time::timeout(
        Duration::from_secs(10),
        BufReader::new(rd).read_line(&mut line),
    )
    .await
    .map_err(|_| reply_err("no reply within 10 s".into()))?
    .map_err(|e| reply_err(e.to_string()))?;
    serde_json::from_str(&line).map_err(|e| reply_err(format!("not JSON: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn answers_status_and_replaces_a_stale_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run/gasdtu.sock");
        // A stale socket file from a crashed daemon: bound, then its listener dropped.
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        assert!(path.exists());
        let board = DeviceBoard::default();
        let b2 = board.clone();
        let server = StatusServer::bind(
            &path,
            Arc::new(move || serde_json::json!({"devices": b2.snapshot()})),
        )
        .await
        .unwrap();
        let stop = CancellationToken::new();
        let task = tokio::spawn(server.run(stop.clone()));
        // A second daemon on the same socket is refused.
        assert!(matches!(
            StatusServer::bind(&path, Arc::new(|| serde_json::json!({}))).await,
            Err(StatusError::InUse(_))
        ));
        board.observe(&SampleBatch {
            device: "pt1".into(),
            bus: "lan".into(),
            slot: std::time::UNIX_EPOCH + Duration::from_secs(1_800_000_000),
            samples: vec![],
            online: false,
            failed_cycles: 3,
        });
        let v = query(&path).await.unwrap();
        assert_eq!(v["devices"]["pt1"]["online"], false);
        assert_eq!(v["devices"]["pt1"]["failed_cycles"], 3);
        assert_eq!(v["devices"]["pt1"]["last_poll_ms"], 1_800_000_000_000i64);
        stop.cancel();
        task.await.unwrap();
        assert!(!path.exists(), "socket removed on shutdown");
        assert!(matches!(
            query(&path).await,
            Err(StatusError::Connect { .. })
        ));
    }
}
