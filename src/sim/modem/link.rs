//! The simulated NB-IoT link: per-direction pacing (a serialization delay at the direction's
//! bit rate, one byte after another, plus half the round-trip time of propagation), and the
//! task that carries one module socket over a real TCP connection to 127.0.0.1 with that
//! pacing applied both ways. `Pacer` is pure; `NetSocket` is the I/O edge.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::core::NetEvent;

/// Rates and delay of the simulated radio link.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinkSpec {
    /// Module -> network, bits per second.
    pub up_bps: u32,
    /// Network -> module, bits per second.
    pub down_bps: u32,
    /// Round-trip time; each direction adds half of it.
    pub rtt: Duration,
}

impl Default for LinkSpec {
    fn default() -> Self {
        LinkSpec {
            up_bps: 12_000,
            down_bps: 8_000,
            rtt: Duration::from_millis(1500),
        }
    }
}

/// The time `bytes` take on the air at `bps`.
pub fn serialization(bytes: usize, bps: u32) -> Duration {
    Duration::from_secs_f64(bytes as f64 * 8.0 / f64::from(bps.max(1)))
}

/// One direction of the link: bytes are serialized one chunk after another, then propagate.
#[derive(Debug, Clone)]
pub struct Pacer {
    bps: u32,
    propagation: Duration,
    free_at: Option<Instant>,
}

impl Pacer {
    pub fn new(bps: u32, propagation: Duration) -> Pacer {
        Pacer {
            bps,
            propagation,
            free_at: None,
        }
    }

    /// `len` bytes handed to the link at `at`: when they arrive at the other end.
    pub fn schedule(&mut self, at: Instant, len: usize) -> Instant {
        let start = self.free_at.map_or(at, |f| f.max(at));
        let done = start + serialization(len, self.bps);
        self.free_at = Some(done);
        done + self.propagation
    }
}

/// Bytes the module sends on a connection, with the moment it handed them over.
#[derive(Debug)]
pub struct Uplink {
    pub at: Instant,
    pub bytes: Vec<u8>,
}

/// Upper bound on one read from the peer (the pacer then spreads it over time).
const READ_CHUNK: usize = 1024;
/// Connecting to the local peer gives up after this long.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// One module socket carried over TCP to 127.0.0.1:`port`.
pub struct NetSocket {
    pub conn: u64,
    pub port: u16,
    pub link: LinkSpec,
    pub uplink: mpsc::UnboundedReceiver<Uplink>,
    pub events: mpsc::Sender<NetEvent>,
    /// Cut the connection at once (module reset, network loss).
    pub cut: CancellationToken,
}

impl NetSocket {
    /// Connect (one RTT for the handshake), then carry bytes both ways until either side
    /// closes, the module closes the socket (its uplink channel ends: queued bytes are still
    /// delivered) or `cut` fires.
    pub async fn run(self) {
        let NetSocket {
            conn,
            port,
            link,
            mut uplink,
            events,
            cut,
        } = self;
        let half = link.rtt / 2;
        let connected = tokio::select! {
            _ = cut.cancelled() => return,
            r = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(("127.0.0.1", port))) => r,
        };
        let stream = match connected {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                debug!(conn, port, "simulated modem socket cannot connect: {e}");
                let _ = events.send(NetEvent::Connected { conn, ok: false }).await;
                return;
            }
            Err(_) => {
                debug!(conn, port, "simulated modem socket: connect timed out");
                let _ = events.send(NetEvent::Connected { conn, ok: false }).await;
                return;
            }
        };
        let _ = stream.set_nodelay(true);
        tokio::select! {
            _ = cut.cancelled() => return,
            _ = tokio::time::sleep(link.rtt) => {}
        }
        if events
            .send(NetEvent::Connected { conn, ok: true })
            .await
            .is_err()
        {
            return;
        }
        let (mut rd, mut wr) = stream.into_split();
        let up = async {
            let mut pacer = Pacer::new(link.up_bps, half);
            while let Some(u) = uplink.recv().await {
                let arrive = pacer.schedule(u.at, u.bytes.len());
                tokio::time::sleep_until(arrive).await;
                if wr.write_all(&u.bytes).await.is_err() {
                    return;
                }
                let n = u.bytes.len();
                if events.send(NetEvent::Sent { conn, n }).await.is_err() {
                    return;
                }
            }
            let _ = wr.shutdown().await;
            // The module closed the socket: keep the connection until the peer is done, so
            // the queued bytes are not cut off by a reset.
            std::future::pending::<()>().await;
        };
        let (tx, mut rx) = mpsc::channel::<(Instant, Vec<u8>)>(64);
        let read = async {
            let mut pacer = Pacer::new(link.down_bps, half);
            let mut buf = vec![0u8; READ_CHUNK];
            loop {
                match rd.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        let at = pacer.schedule(Instant::now(), n);
                        if tx.send((at, buf[..n].to_vec())).await.is_err() {
                            break;
                        }
                    }
                }
            }
            drop(tx);
            std::future::pending::<()>().await;
        };
        let deliver = async {
            let mut last = Instant::now();
            while let Some((at, bytes)) = rx.recv().await {
                tokio::time::sleep_until(at).await;
                last = at;
                if events.send(NetEvent::Data { conn, bytes }).await.is_err() {
                    return;
                }
            }
            // The peer's FIN travels like data.
            tokio::time::sleep_until(last.max(Instant::now()) + half).await;
        };
        tokio::select! {
            _ = cut.cancelled() => return,
            _ = up => {}
            _ = read => {}
            _ = deliver => {}
        }
        let _ = events.send(NetEvent::Closed { conn }).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pacer_serializes_then_propagates() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut p = Pacer::new(8_000, ms(750));
        // 1000 bytes at 8 kbit/s: 1 s on the air, then 0.75 s to the other end.
        assert_eq!(p.schedule(t0, 1000), t0 + ms(1750));
        // handed over while the first is still on the air: waits its turn.
        assert_eq!(p.schedule(t0 + ms(500), 500), t0 + ms(2250));
        // handed over after the link went idle: starts at once.
        assert_eq!(p.schedule(t0 + ms(5000), 100), t0 + ms(5850));
        assert_eq!(
            serialization(2048, 12_000),
            Duration::from_secs_f64(16384.0 / 12000.0)
        );
    }
}
