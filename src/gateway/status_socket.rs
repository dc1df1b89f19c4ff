//! The daemon's status: what `gasdtu status` shows. `DeviceBoard` keeps the latest state of
//! every device (last read, quality, online) as batches pass by; `StatusServer` answers on a
//! unix socket (default /run/gasdtu/gasdtu.sock) with one JSON document built by a snapshot
//! function the daemon composes (devices, buffer, link, sequence); `query` is the client side.
//! The protocol is one request line and one JSON reply line, then close: `status` (or an
//! empty line), other commands for the daemon's `RequestHandler` (`ack <occ> [by]`), and JSON
//! requests (a line starting with `{`) for the bus proxy (`gateway::bus_proxy`, the
//! commissioning CLI through the daemon). A request line is at most 4096 bytes; a longer one
//! is refused with `{"ok":false,"kind":"too_long",...}` before it is read further.

use crate::time::unix_ms;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use thiserror::Error;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio_util::sync::CancellationToken;

use super::bus_proxy::{too_long_reply, unsupported_reply, BusProxy};
use crate::model::{Quality, SampleBatch};

pub const DEFAULT_SOCKET: &str = "/run/gasdtu/gasdtu.sock";

/// Longest request line the socket reads, in bytes without the newline.
pub const MAX_REQUEST_LINE: usize = 4096;
/// Longest reply line `request` accepts (a status document of a large site fits easily).
const MAX_STATUS_REPLY: usize = 4 * 1024 * 1024;

/// Why a line could not be read.
#[derive(Debug, Error)]
pub enum LineError {
    #[error("line longer than {max} bytes")]
    TooLong { max: usize },
    #[error("line is not UTF-8")]
    NotUtf8,
    #[error("read failed: {0}")]
    Io(#[from] std::io::Error),
}

/// Read one line of at most `max` bytes (without its newline; a last line without newline
/// counts too; empty at end of input). Never buffers more than `max + 1` bytes.
pub(crate) async fn read_line_bounded<R: AsyncBufRead + Unpin>(
    rd: &mut R,
    max: usize,
) -> Result<String, LineError> {
    let mut buf = Vec::new();
    let n = (&mut *rd)
        .take(max as u64 + 1)
        .read_until(b'\n', &mut buf)
        .await?;
    if buf.last() == Some(&b'\n') {
        buf.pop();
        if buf.last() == Some(&b'\r') {
            buf.pop();
        }
    } else if n > max {
        return Err(LineError::TooLong { max });
    }
    String::from_utf8(buf).map_err(|_| LineError::NotUtf8)
}

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
            Err(p) => p
                .into_inner()
                .retain(|name, _| keep.contains(name.as_str())),
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
    proxy: Option<BusProxy>,
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
            proxy: None,
        })
    }

    /// Answer other request lines with `handler` (the daemon: `ack <occurrence> [by]`).
    pub fn with_handler(mut self, handler: RequestHandler) -> Self {
        self.handler = Some(handler);
        self
    }

    /// Pass JSON bus requests (lines starting with `{`) to `proxy`: the commissioning CLI
    /// reaches the buses this daemon owns through their bus tasks.
    pub fn with_bus_proxy(mut self, proxy: BusProxy) -> Self {
        self.proxy = Some(proxy);
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
            let proxy = self.proxy.clone();
            tokio::spawn(async move {
                let (rd, mut wr) = stream.into_split();
                let mut rd = BufReader::new(rd);
                let read = tokio::time::timeout(
                    Duration::from_secs(5),
                    read_line_bounded(&mut rd, MAX_REQUEST_LINE),
                )
                .await;
                let mut drain = false;
                let reply = match read {
                    Ok(Ok(line)) => answer(line.trim(), &provider, handler, proxy).await,
                    Ok(Err(LineError::TooLong { .. })) => {
                        drain = true;
                        too_long_reply()
                    }
                    Ok(Err(LineError::NotUtf8)) => serde_json::json!({
                        "ok": false, "kind": "bad_request", "error": "request line is not UTF-8"
                    }),
                    // A peer that vanished or never sent a line gets nothing.
                    Ok(Err(LineError::Io(_))) | Err(_) => return,
                };
                let mut out = reply.to_string();
                out.push('\n');
                let _ = wr.write_all(out.as_bytes()).await;
                if drain {
                    // Closing with unread input would reset the connection and could destroy
                    // the reply before the client reads it: discard what the client still
                    // sends (bounded in bytes and time) before closing.
                    let _ = wr.shutdown().await;
                    let mut sink = tokio::io::sink();
                    let mut rest = (&mut rd).take(1024 * 1024);
                    let _ = tokio::time::timeout(
                        Duration::from_secs(2),
                        tokio::io::copy(&mut rest, &mut sink),
                    )
                    .await;
                }
            });
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The reply to one request line.
async fn answer(
    line: &str,
    provider: &Provider,
    handler: Option<RequestHandler>,
    proxy: Option<BusProxy>,
) -> serde_json::Value {
    if line.is_empty() || line == "status" {
        return provider();
    }
    if line.starts_with('{') {
        return match proxy {
            Some(p) => p.handle_line(line).await,
            None => unsupported_reply(),
        };
    }
    let unknown = serde_json::json!({"error": format!("unknown request {line:?}; try `status`")});
    match handler {
        Some(h) => {
            let req = line.to_string();
            tokio::task::spawn_blocking(move || h(&req))
                .await
                .ok()
                .flatten()
                .unwrap_or(unknown)
        }
        None => unknown,
    }
}

/// Ask the daemon at `path` for its status.
pub async fn query(path: &Path) -> Result<serde_json::Value, StatusError> {
    request(path, "status").await
}

/// Send one request line (`status`, `ack 17 alice`) and return the JSON reply.
pub async fn request(path: &Path, line: &str) -> Result<serde_json::Value, StatusError> {
    let reply_err = |why: String| StatusError::Reply {
        path: path.to_path_buf(),
        why,
    };
    exchange(path, line.trim(), MAX_STATUS_REPLY, Duration::from_secs(10))
        .await
        .map_err(|e| match e {
            ExchangeError::Connect(source) => StatusError::Connect {
                path: path.to_path_buf(),
                source,
            },
            other => reply_err(other.to_string()),
        })
}

/// What went wrong in one client exchange with the daemon's socket.
#[derive(Debug, Error)]
pub(crate) enum ExchangeError {
    #[error("{0}")]
    Connect(std::io::Error),
    #[error("cannot send the request: {0}")]
    Send(std::io::Error),
    #[error("no reply within {} s", .0.as_secs())]
    Timeout(Duration),
    #[error("{0}")]
    Read(LineError),
    #[error("the connection closed without a reply")]
    Closed,
    #[error("not JSON: {0}")]
    NotJson(serde_json::Error),
}

/// The client side of the protocol: connect to `path`, send `line`, read one reply line of at
/// most `max_reply` bytes within `timeout`, and parse it as JSON.
pub(crate) async fn exchange(
    path: &Path,
    line: &str,
    max_reply: usize,
    timeout: Duration,
) -> Result<serde_json::Value, ExchangeError> {
    let stream = UnixStream::connect(path)
        .await
        .map_err(ExchangeError::Connect)?;
    let (rd, mut wr) = stream.into_split();
    wr.write_all(format!("{line}\n").as_bytes())
        .await
        .map_err(ExchangeError::Send)?;
    let mut rd = BufReader::new(rd);
    let reply = tokio::time::timeout(timeout, read_line_bounded(&mut rd, max_reply))
        .await
        .map_err(|_| ExchangeError::Timeout(timeout))?
        .map_err(ExchangeError::Read)?;
    if reply.is_empty() {
        return Err(ExchangeError::Closed);
    }
    serde_json::from_str(&reply).map_err(ExchangeError::NotJson)
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

    /// Send raw bytes, half-close, and read the reply line.
    async fn raw_exchange(path: &Path, bytes: &[u8]) -> String {
        let mut s = UnixStream::connect(path).await.unwrap();
        s.write_all(bytes).await.unwrap();
        s.shutdown().await.unwrap();
        let mut out = String::new();
        tokio::time::timeout(Duration::from_secs(10), s.read_to_string(&mut out))
            .await
            .expect("reply within 10 s")
            .unwrap();
        out
    }

    #[tokio::test]
    async fn long_lines_are_refused_and_json_needs_a_proxy() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gasdtu.sock");
        let server = StatusServer::bind(&path, Arc::new(|| serde_json::json!({"devices": {}})))
            .await
            .unwrap();
        let stop = CancellationToken::new();
        let task = tokio::spawn(server.run(stop.clone()));

        // (bytes sent, expected reply)
        let exactly = format!("{}\n", " ".repeat(MAX_REQUEST_LINE - 6) + "status");
        let too_long = format!("status{}\n", " ".repeat(MAX_REQUEST_LINE));
        let unterminated = "x".repeat(MAX_REQUEST_LINE * 4);
        let rows: Vec<(&[u8], serde_json::Value)> = vec![
            (b"status\n", serde_json::json!({"devices": {}})),
            (b"status\r\n", serde_json::json!({"devices": {}})),
            (exactly.as_bytes(), serde_json::json!({"devices": {}})),
            (too_long.as_bytes(), too_long_reply()),
            (unterminated.as_bytes(), too_long_reply()),
            (
                b"\xff\xfe\n",
                serde_json::json!({"ok": false, "kind": "bad_request", "error": "request line is not UTF-8"}),
            ),
            (br#"{"op":"buses"}"#, unsupported_reply()),
            (
                b"reboot\n",
                serde_json::json!({"error": "unknown request \"reboot\"; try `status`"}),
            ),
        ];
        for (bytes, want) in rows {
            let reply = raw_exchange(&path, bytes).await;
            let got: serde_json::Value = serde_json::from_str(reply.trim_end())
                .unwrap_or_else(|e| panic!("reply {reply:?} is not JSON: {e}"));
            assert_eq!(got, want, "sent {} bytes", bytes.len());
        }
        assert_eq!(
            too_long_reply()["error"],
            "request line longer than 4096 bytes refused"
        );
        stop.cancel();
        task.await.unwrap();
    }
}
