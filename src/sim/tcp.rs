//! The simulator's TCP edge: a listener task that accepts connections until shutdown and one
//! task per connection that frames requests (MBAP, or RTU carried over TCP), asks the shared
//! `Simulator` what to do, waits any injected delay and writes the (possibly broken) reply.
//! Requests for units not simulated get no reply; an MBAP stream that cannot be framed any
//! more is closed.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use super::frame::{scan_mbap, MbapScan, RtuDeframer};
use super::server::{Outcome, Simulator};

/// How requests are framed on the TCP stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcpFraming {
    /// Modbus TCP (MBAP header).
    Mbap,
    /// RTU frames (unit, PDU, CRC) on a TCP stream, like a serial device server.
    Rtu,
}

/// Silence after which an incomplete RTU-over-TCP frame is dropped.
const RTU_TCP_SILENCE: Duration = Duration::from_millis(50);

/// The listener task.
pub struct TcpServer {
    sim: Simulator,
    listener: TcpListener,
    framing: TcpFraming,
    shutdown: CancellationToken,
}

impl TcpServer {
    pub fn new(
        sim: Simulator,
        listener: TcpListener,
        framing: TcpFraming,
        shutdown: CancellationToken,
    ) -> Self {
        TcpServer {
            sim,
            listener,
            framing,
            shutdown,
        }
    }

    /// Accept and serve connections until shutdown; then wait for the connection tasks to end.
    pub async fn run(self) {
        let tracker = TaskTracker::new();
        let mut backoff = Duration::from_millis(10);
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => break,
                accepted = self.listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        backoff = Duration::from_millis(10);
                        debug!(%peer, "connection accepted");
                        let _ = stream.set_nodelay(true);
                        let conn = Connection {
                            sim: self.sim.clone(),
                            stream,
                            peer,
                            framing: self.framing,
                            shutdown: self.shutdown.child_token(),
                        };
                        tracker.spawn(conn.run());
                    }
                    Err(e) => {
                        // e.g. out of file descriptors: wait and try again.
                        warn!("simulator cannot accept a connection: {e}");
                        tokio::select! {
                            _ = self.shutdown.cancelled() => break,
                            _ = tokio::time::sleep(backoff) => {}
                        }
                        backoff = (backoff * 2).min(Duration::from_secs(1));
                    }
                }
            }
        }
        tracker.close();
        tracker.wait().await;
    }
}

/// One client connection.
struct Connection {
    sim: Simulator,
    stream: TcpStream,
    peer: SocketAddr,
    framing: TcpFraming,
    shutdown: CancellationToken,
}

enum Next {
    Bytes(usize),
    Silence,
    Closed,
}

impl Connection {
    async fn run(mut self) {
        let mut buf: Vec<u8> = Vec::with_capacity(512);
        let mut rtu = RtuDeframer::new();
        let mut chunk = [0u8; 512];
        loop {
            let waiting_rtu = self.framing == TcpFraming::Rtu && rtu.pending() > 0;
            let next = tokio::select! {
                _ = self.shutdown.cancelled() => Next::Closed,
                r = self.stream.read(&mut chunk) => match r {
                    Ok(0) => Next::Closed,
                    Ok(n) => Next::Bytes(n),
                    Err(e) => {
                        debug!(peer = %self.peer, "connection read failed: {e}");
                        Next::Closed
                    }
                },
                _ = tokio::time::sleep(RTU_TCP_SILENCE), if waiting_rtu => Next::Silence,
            };
            let ok = match next {
                Next::Closed => break,
                Next::Bytes(n) => match self.framing {
                    TcpFraming::Mbap => {
                        buf.extend_from_slice(&chunk[..n]);
                        self.drain_mbap(&mut buf).await
                    }
                    TcpFraming::Rtu => {
                        rtu.push(&chunk[..n]);
                        let mut ok = true;
                        while let Some(f) = rtu.next_frame() {
                            ok &= self.answer_rtu(f.unit, &f.pdu).await;
                        }
                        ok
                    }
                },
                Next::Silence => match rtu.silence() {
                    Some(f) => self.answer_rtu(f.unit, &f.pdu).await,
                    None => true,
                },
            };
            let dropped = rtu.take_dropped();
            if dropped > 0 {
                debug!(peer = %self.peer, dropped, "dropped bytes that were not an RTU frame");
            }
            if !ok {
                break;
            }
        }
        debug!(peer = %self.peer, "connection closed");
    }

    /// Answer every complete MBAP frame in `buf`; false when the connection must close.
    async fn drain_mbap(&mut self, buf: &mut Vec<u8>) -> bool {
        loop {
            match scan_mbap(buf) {
                MbapScan::Incomplete => return true,
                MbapScan::Invalid(e) => {
                    info!(peer = %self.peer, "closing a connection that sent a broken MBAP frame: {e}");
                    return false;
                }
                MbapScan::Frame {
                    transaction,
                    unit,
                    pdu,
                    len,
                } => {
                    buf.drain(..len);
                    let outcome = self.sim.process(unit, &pdu, SystemTime::now());
                    let bytes = outcome.mbap_bytes(transaction);
                    if !self.send(&outcome, bytes).await {
                        return false;
                    }
                }
            }
        }
    }

    async fn answer_rtu(&mut self, unit: u8, pdu: &[u8]) -> bool {
        let outcome = self.sim.process(unit, pdu, SystemTime::now());
        let bytes = outcome.rtu_bytes();
        self.send(&outcome, bytes).await
    }

    /// Wait the outcome's delay, then write `bytes` (if any); false when the connection must
    /// close.
    async fn send(&mut self, outcome: &Outcome, bytes: Option<Vec<u8>>) -> bool {
        let Some(bytes) = bytes else {
            return true;
        };
        let delay = outcome.delay();
        if !delay.is_zero() {
            tokio::select! {
                _ = self.shutdown.cancelled() => return false,
                _ = tokio::time::sleep(delay) => {}
            }
        }
        match self.stream.write_all(&bytes).await {
            Ok(()) => true,
            Err(e) => {
                debug!(peer = %self.peer, "connection write failed: {e}");
                false
            }
        }
    }
}
