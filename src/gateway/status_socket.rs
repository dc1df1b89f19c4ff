//! The daemon's status: what `gasdtu status` shows. `DeviceBoard` (`board`) keeps the latest
//! state of every device (last read, quality, online) as batches pass by; `Peer` (`peer`) is
//! who is asking, from the kernel; `StatusServer` answers on a
//! unix socket (default /run/gasdtu/gasdtu.sock) with one JSON document built by a snapshot
//! function the daemon composes (devices, buffer, link, sequence); `query` is the client side.
//! The protocol is one request line and one JSON reply line, then close: `status` (or an
//! empty line), other commands for the daemon's `RequestHandler` (`ack <occ> [note]`, told
//! who is asking from the connection's SO_PEERCRED, never from the request), and JSON
//! requests (a line starting with `{`) for the bus proxy (`gateway::bus_proxy`, the
//! commissioning CLI through the daemon).
//!
//! Hostile clients: a request line is at most 4096 bytes (a longer one is refused with
//! `{"ok":false,"kind":"too_long",...}` after reading at most 4097 bytes of it); at most
//! `MAX_CONNECTIONS` are served at once (the next is refused with `kind: "busy"` without being
//! read); the line must arrive within `REQUEST_TIMEOUT` and the reply be taken within
//! `WRITE_TIMEOUT`. The socket is created under a private name, set to mode 0660, then renamed
//! into place (a failure is fatal, never ignored); a file already at the path is replaced only
//! if it is a socket nobody answers on (ECONNREFUSED).
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::bus_proxy::{too_long_reply, unsupported_reply, BusProxy};
use super::modem_proxy::ModemProxy;

mod board;
mod peer;

pub use board::{DeviceBoard, DeviceState};
pub use peer::Peer;

pub const DEFAULT_SOCKET: &str = "/run/gasdtu/gasdtu.sock";

/// Longest request line the socket reads, in bytes without the newline.
pub const MAX_REQUEST_LINE: usize = 4096;
/// Longest reply line `request` accepts (a status document of a large site fits easily).
const MAX_STATUS_REPLY: usize = 4 * 1024 * 1024;
/// Connections served at once; the next is refused (`kind: "busy"`) until one ends.
pub const MAX_CONNECTIONS: usize = 16;
/// How long a client has to send its request line.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a client has to take its reply.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// Mode of the socket: the daemon's user and group (operators in the group) only.
pub const SOCKET_MODE: u32 = 0o660;

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

#[derive(Debug, Error)]
pub enum StatusError {
    #[error("cannot bind the status socket {path}: {source}")]
    Bind {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("another gasdtu is already answering on {0}")]
    InUse(PathBuf),
    /// Something that is not a socket is where the socket goes: it is never removed.
    #[error("{path} is {what}, not a socket: refusing to replace it (remove it if it is stale)")]
    NotASocket { path: PathBuf, what: &'static str },
    /// A socket is there but connecting to it failed otherwise than "refused": whether a
    /// daemon answers on it cannot be told, so it is left alone.
    #[error("cannot tell whether another daemon answers on {path}: {source}")]
    Probe {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot set mode {mode:o} on the status socket {path}: {source}")]
    Mode {
        path: PathBuf,
        mode: u32,
        source: std::io::Error,
    },
    #[error("cannot reach the daemon at {path}: {source} (is `gasdtu run` running?)")]
    Connect {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the daemon at {path} gave no valid answer: {why}")]
    Reply { path: PathBuf, why: String },
}

type Provider = Arc<dyn Fn() -> serde_json::Value + Send + Sync>;
/// Answers a request line other than `status` (e.g. `ack 17`) from `Peer`, or `None` if
/// unknown. May block (it runs on a blocking thread).
pub type RequestHandler = Arc<dyn Fn(&str, &Peer) -> Option<serde_json::Value> + Send + Sync>;

/// Answers status requests on a unix socket.
pub struct StatusServer {
    path: PathBuf,
    /// (device, inode) of our socket file: only that file is removed at shutdown.
    ino: (u64, u64),
    listener: UnixListener,
    provider: Provider,
    handler: Option<RequestHandler>,
    proxy: Option<BusProxy>,
    modem: Option<ModemProxy>,
}

impl StatusServer {
    /// Bind `path` (creating its directory). A stale socket file left by a crash (a socket
    /// that refuses connections) is replaced; a live one (another daemon answering), anything
    /// that is not a socket, or a socket that cannot be probed is an error. The socket is
    /// bound under a private name, set to `SOCKET_MODE` and renamed into place, so it is
    /// never reachable at `path` with another mode.
    pub async fn bind(path: &Path, provider: Provider) -> Result<StatusServer, StatusError> {
        use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
        let bind_err = |source| StatusError::Bind {
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(bind_err)?;
        }
        match std::fs::symlink_metadata(path) {
            Ok(m) if m.file_type().is_socket() => match UnixStream::connect(path).await {
                Ok(_) => return Err(StatusError::InUse(path.to_path_buf())),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                    tracing::info!("replacing the stale status socket {}", path.display());
                    std::fs::remove_file(path).map_err(bind_err)?;
                }
                Err(source) => {
                    return Err(StatusError::Probe {
                        path: path.to_path_buf(),
                        source,
                    })
                }
            },
            Ok(m) => {
                let ft = m.file_type();
                let what = if ft.is_symlink() {
                    "a symbolic link"
                } else if ft.is_dir() {
                    "a directory"
                } else if ft.is_file() {
                    "a regular file"
                } else {
                    "a special file"
                };
                return Err(StatusError::NotASocket {
                    path: path.to_path_buf(),
                    what,
                });
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(bind_err(e)),
        }
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "gasdtu.sock".into());
        let tmp = path.with_file_name(format!(".{name}.{}.new", std::process::id()));
        // Our own private name: a leftover of this pid is ours to remove.
        if std::fs::symlink_metadata(&tmp).is_ok_and(|m| m.file_type().is_socket()) {
            let _ = std::fs::remove_file(&tmp);
        }
        let listener = UnixListener::bind(&tmp).map_err(bind_err)?;
        let placed = std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(SOCKET_MODE))
            .map_err(|source| StatusError::Mode {
                path: path.to_path_buf(),
                mode: SOCKET_MODE,
                source,
            })
            .and_then(|()| std::fs::rename(&tmp, path).map_err(bind_err))
            .and_then(|()| std::fs::symlink_metadata(path).map_err(bind_err));
        let ino = match placed {
            Ok(m) => (m.dev(), m.ino()),
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                return Err(e);
            }
        };
        Ok(StatusServer {
            path: path.to_path_buf(),
            ino,
            listener,
            provider,
            handler: None,
            proxy: None,
            modem: None,
        })
    }

    /// Answer other request lines with `handler` (the daemon: `ack <occurrence> [by]`).
    pub fn with_handler(mut self, handler: RequestHandler) -> Self {
        self.handler = Some(handler);
        self
    }

    /// Pass JSON bus requests (lines starting with `{`) to `proxy`: the commissioning CLI
    /// reaches the buses this daemon owns through their bus tasks.
    /// Field tools for the modem (`{"op":"modem_..."}` lines; `gateway::modem_proxy`).
    pub fn with_modem_proxy(mut self, modem: ModemProxy) -> Self {
        self.modem = Some(modem);
        self
    }

    pub fn with_bus_proxy(mut self, proxy: BusProxy) -> Self {
        self.proxy = Some(proxy);
        self
    }

    pub async fn run(self, shutdown: CancellationToken) {
        let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        let refusals = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        loop {
            let accepted = tokio::select! {
                _ = shutdown.cancelled() => break,
                a = self.listener.accept() => a,
            };
            let Ok((stream, _)) = accepted else { continue };
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                // Refused with a reason, in a task of its own bounded in number and time;
                // beyond that the connection is just closed.
                if let Ok(refusal) = refusals.clone().try_acquire_owned() {
                    tokio::spawn(async move {
                        let _refusal = refusal;
                        refuse_busy(stream).await;
                    });
                }
                continue;
            };
            let peer = Peer::of(&stream);
            let provider = self.provider.clone();
            let handler = self.handler.clone();
            let proxy = self.proxy.clone();
            let modem = self.modem.clone();
            tokio::spawn(async move {
                let _slot = slot;
                serve(stream, peer, provider, handler, proxy, modem).await;
            });
        }
        use std::os::unix::fs::MetadataExt;
        // Only our own socket: a later daemon may have replaced the file.
        if std::fs::symlink_metadata(&self.path).is_ok_and(|m| (m.dev(), m.ino()) == self.ino) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// The reply line to a connection beyond `MAX_CONNECTIONS`.
fn busy_reply() -> String {
    format!(
        "{}\n",
        serde_json::json!({
            "ok": false,
            "kind": "busy",
            "error": format!("too many connections (at most {MAX_CONNECTIONS} at once): try again"),
        })
    )
}

/// Tell a connection beyond `MAX_CONNECTIONS` why it is refused, without reading its request
/// (at most 1 s; what it sent is discarded, at most 8 KiB, so closing does not reset the
/// connection before the client read the reason).
async fn refuse_busy(stream: UnixStream) {
    let (mut rd, mut wr) = stream.into_split();
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        wr.write_all(busy_reply().as_bytes()).await?;
        wr.shutdown().await?;
        let mut sink = tokio::io::sink();
        tokio::io::copy(&mut (&mut rd).take(8 * 1024), &mut sink).await
    })
    .await;
}

/// One connection: one bounded request line within `REQUEST_TIMEOUT`, one reply.
async fn serve(
    stream: UnixStream,
    peer: Peer,
    provider: Provider,
    handler: Option<RequestHandler>,
    proxy: Option<BusProxy>,
    modem: Option<ModemProxy>,
) {
    let (rd, mut wr) = stream.into_split();
    let mut rd = BufReader::with_capacity(MAX_REQUEST_LINE + 1, rd);
    let read = tokio::time::timeout(
        REQUEST_TIMEOUT,
        read_line_bounded(&mut rd, MAX_REQUEST_LINE),
    )
    .await;
    let mut drain = false;
    let reply = match read {
        Ok(Ok(line)) => answer(line.trim(), peer, &provider, handler, proxy, modem).await,
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
    if tokio::time::timeout(WRITE_TIMEOUT, wr.write_all(out.as_bytes()))
        .await
        .is_err()
    {
        return;
    }
    if drain {
        // Closing with unread input would reset the connection and could destroy the reply
        // before the client reads it: discard what the client still sends (bounded in bytes
        // and time) before closing.
        let _ = wr.shutdown().await;
        let mut sink = tokio::io::sink();
        let mut rest = (&mut rd).take(1024 * 1024);
        let _ = tokio::time::timeout(
            Duration::from_secs(2),
            tokio::io::copy(&mut rest, &mut sink),
        )
        .await;
    }
}

/// The reply to one request line.
async fn answer(
    line: &str,
    peer: Peer,
    provider: &Provider,
    handler: Option<RequestHandler>,
    proxy: Option<BusProxy>,
    modem: Option<ModemProxy>,
) -> serde_json::Value {
    if line.is_empty() || line == "status" {
        return provider();
    }
    if line.starts_with('{') {
        if let Ok(req) = serde_json::from_str::<serde_json::Value>(line) {
            if ModemProxy::wants(&req) {
                return match modem {
                    Some(m) => m.handle(&req, &peer.describe()).await,
                    None => unsupported_reply(),
                };
            }
        }
        return match proxy {
            Some(p) => p.handle_line(line).await,
            None => unsupported_reply(),
        };
    }
    let shown: String = line.chars().take(64).collect();
    let unknown = serde_json::json!({"error": format!("unknown request {shown:?}; try `status`")});
    match handler {
        Some(h) => {
            let req = line.to_string();
            tokio::task::spawn_blocking(move || h(&req, &peer))
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
    use crate::model::SampleBatch;

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

    fn provider() -> Provider {
        Arc::new(|| serde_json::json!({"devices": {}}))
    }

    /// Issue 9 item 7: the stale-socket cleanup unlinked whatever was at the path, and the mode
    /// was set after bind with its error ignored.
    #[tokio::test]
    async fn bind_replaces_only_a_dead_socket_and_sets_its_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("precious");
        std::fs::write(&target, "keep me").unwrap();
        let live_path = dir.path().join("live.sock");
        let _live = std::os::unix::net::UnixListener::bind(&live_path).unwrap();
        // (case, prepare the path, expected: Ok or the error's words)
        type Prep = Box<dyn Fn(&Path)>;
        let cases: Vec<(&str, Prep, Result<(), &str>)> = vec![
            ("nothing there", Box::new(|_: &Path| {}), Ok(())),
            (
                "stale socket",
                Box::new(|p: &Path| drop(std::os::unix::net::UnixListener::bind(p).unwrap())),
                Ok(()),
            ),
            (
                "regular file",
                Box::new(|p: &Path| std::fs::write(p, "data").unwrap()),
                Err("is a regular file, not a socket"),
            ),
            (
                "directory",
                Box::new(|p: &Path| std::fs::create_dir(p).unwrap()),
                Err("is a directory, not a socket"),
            ),
            (
                "symlink to a file",
                Box::new({
                    let t = target.clone();
                    move |p: &Path| std::os::unix::fs::symlink(&t, p).unwrap()
                }),
                Err("is a symbolic link, not a socket"),
            ),
        ];
        for (i, (name, prep, want)) in cases.into_iter().enumerate() {
            let path = dir.path().join(format!("s{i}.sock"));
            prep(&path);
            match (StatusServer::bind(&path, provider()).await, want) {
                (Ok(server), Ok(())) => {
                    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
                    assert_eq!(mode, SOCKET_MODE, "{name}");
                    let stop = CancellationToken::new();
                    let task = tokio::spawn(server.run(stop.clone()));
                    assert_eq!(
                        query(&path).await.unwrap(),
                        serde_json::json!({"devices": {}})
                    );
                    stop.cancel();
                    task.await.unwrap();
                    assert!(!path.exists(), "{name}: removed at shutdown");
                }
                (Err(e), Err(words)) => {
                    assert!(e.to_string().contains(words), "{name}: {e}");
                    assert!(
                        std::fs::symlink_metadata(&path).is_ok(),
                        "{name}: left in place"
                    );
                }
                (r, want) => panic!("{name}: got {:?}, want {want:?}", r.map(|_| ())),
            }
        }
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep me");
        assert!(matches!(
            StatusServer::bind(&live_path, provider()).await,
            Err(StatusError::InUse(_))
        ));
        // No private temporary name is left behind.
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".new"))
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }

    /// Issue 9 item 7: no connection limit. Now `MAX_CONNECTIONS` idle clients hold every
    /// slot, the next is refused as busy at once, and a slot frees when an idle client times
    /// out or leaves.
    #[tokio::test]
    async fn connections_are_limited_and_idle_ones_time_out() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gasdtu.sock");
        let server = StatusServer::bind(&path, provider()).await.unwrap();
        let stop = CancellationToken::new();
        let task = tokio::spawn(server.run(stop.clone()));
        let mut idle = Vec::new();
        for _ in 0..MAX_CONNECTIONS {
            idle.push(UnixStream::connect(&path).await.unwrap());
        }
        // The server takes connections in order: wait until the last idle one holds a slot,
        // i.e. until one more connection is refused.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let reply = loop {
            let mut s = UnixStream::connect(&path).await.unwrap();
            let _ = s.write_all(b"status\n").await;
            let mut out = String::new();
            let _ = tokio::time::timeout(Duration::from_secs(2), s.read_to_string(&mut out)).await;
            if out.contains("busy") || tokio::time::Instant::now() > deadline {
                break out;
            }
        };
        let v: serde_json::Value = serde_json::from_str(reply.trim()).unwrap();
        assert_eq!(v["kind"], "busy", "{v}");
        assert!(v["error"].as_str().unwrap().contains("at most 16"), "{v}");
        // One idle client leaves: a slot frees.
        drop(idle.pop());
        let v = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                match query(&path).await {
                    Ok(v) if v.get("kind").is_none() => break v,
                    _ => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            }
        })
        .await
        .expect("a freed slot serves status");
        assert_eq!(v, serde_json::json!({"devices": {}}));
        // The rest time out: the server closes them after REQUEST_TIMEOUT.
        let started = std::time::Instant::now();
        for mut s in idle {
            let mut buf = Vec::new();
            tokio::time::timeout(REQUEST_TIMEOUT * 2, s.read_to_end(&mut buf))
                .await
                .expect("an idle client is closed")
                .unwrap();
            assert!(buf.is_empty());
        }
        assert!(started.elapsed() <= REQUEST_TIMEOUT + Duration::from_secs(2));
        stop.cancel();
        task.await.unwrap();
    }
}
