//! The simulator's serial edge: one task owns the serial line (a real RS-485 adapter or one end
//! of a pseudo-terminal pair) and answers as every simulated unit on that shared bus.
//! Requests are delimited by their known length and resynchronised after garbage by
//! `frame::RtuDeframer`; a line silence ends a frame. By default replies honour the line's
//! timing: a reply completes when the request and the reply would have finished on a real wire
//! at the configured baud (plus the 3.5-character silences), so cycle times measured against a
//! pty mean something. A port that fails or vanishes is reopened with backoff until shutdown.

use std::time::{Duration, SystemTime};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;
use tokio_serial::{SerialPortBuilderExt, SerialStream};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::config::{Parity, SerialSettings};

use super::frame::{RtuDeframer, RtuFrame};
use super::server::Simulator;

/// Incomplete bytes are dropped after this much silence at least, whatever the baud: a pty
/// delivers a frame in one piece, but OS scheduling can delay the read by milliseconds, and
/// dropping half a frame would turn a healthy request into a lost one.
const MIN_FLUSH_SILENCE: Duration = Duration::from_millis(20);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Line timing at one serial setting.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LineTiming {
    /// One character on the wire.
    pub char_time: Duration,
    /// The inter-frame silence (3.5 characters, 1.75 ms above 19200 baud).
    pub silence: Duration,
}

impl LineTiming {
    pub fn new(settings: &SerialSettings) -> Self {
        let baud = settings.baud.max(1) as f64;
        let char_s = settings.bits_per_char() as f64 / baud;
        let silence_s = if baud > 19_200.0 {
            0.00175
        } else {
            3.5 * char_s
        };
        LineTiming {
            char_time: Duration::from_secs_f64(char_s),
            silence: Duration::from_secs_f64(silence_s),
        }
    }

    /// Time from the first request byte to the last reply byte on a real wire: both frames
    /// and the silence that ends the request.
    pub fn transaction(&self, request_bytes: usize, reply_bytes: usize) -> Duration {
        self.char_time * (request_bytes + reply_bytes) as u32 + self.silence
    }
}

/// The serial line task.
pub struct SerialServer {
    sim: Simulator,
    settings: SerialSettings,
    timing: bool,
    shutdown: CancellationToken,
}

/// Why serving a port stopped.
enum Stop {
    Shutdown,
    Lost(String),
}

impl SerialServer {
    pub fn new(
        sim: Simulator,
        settings: SerialSettings,
        timing: bool,
        shutdown: CancellationToken,
    ) -> Self {
        SerialServer {
            sim,
            settings,
            timing,
            shutdown,
        }
    }

    fn open(&self) -> Result<SerialStream, tokio_serial::Error> {
        let s = &self.settings;
        tokio_serial::new(&s.port, s.baud)
            .data_bits(match s.data_bits {
                5 => tokio_serial::DataBits::Five,
                6 => tokio_serial::DataBits::Six,
                7 => tokio_serial::DataBits::Seven,
                _ => tokio_serial::DataBits::Eight,
            })
            .parity(match s.parity {
                Parity::None => tokio_serial::Parity::None,
                Parity::Even => tokio_serial::Parity::Even,
                Parity::Odd => tokio_serial::Parity::Odd,
            })
            .stop_bits(if s.stop_bits == 2 {
                tokio_serial::StopBits::Two
            } else {
                tokio_serial::StopBits::One
            })
            .open_native_async()
    }

    /// Serve the port until shutdown, reopening it with backoff (100 ms doubling to 2 s)
    /// whenever it cannot be opened or stops working.
    pub async fn run(self) {
        let port = self.settings.port.clone();
        let mut backoff = Duration::from_millis(100);
        let mut reported = false;
        loop {
            if self.shutdown.is_cancelled() {
                return;
            }
            match self.open() {
                Ok(stream) => {
                    info!(port = %port, "simulator serial port open");
                    backoff = Duration::from_millis(100);
                    reported = false;
                    match self.serve(stream).await {
                        Stop::Shutdown => return,
                        Stop::Lost(why) => {
                            warn!(port = %port, "serial port lost: {why}; reopening")
                        }
                    }
                }
                Err(e) => {
                    if !reported {
                        warn!(port = %port, "cannot open serial port: {e}; retrying with backoff");
                        reported = true;
                    } else {
                        debug!(port = %port, "cannot open serial port: {e}");
                    }
                }
            }
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    async fn serve(&self, mut stream: SerialStream) -> Stop {
        let line = LineTiming::new(&self.settings);
        let flush_after = line.silence.max(MIN_FLUSH_SILENCE);
        let mut deframer = RtuDeframer::new();
        let mut chunk = [0u8; 512];
        // When the first byte of what the deframer holds arrived (start of the next frame).
        let mut frame_start: Option<Instant> = None;
        // The earliest a new request can start on the wire (after our last reply's silence).
        let mut bus_free_at = Instant::now();
        loop {
            let pending = deframer.pending() > 0;
            let read = tokio::select! {
                _ = self.shutdown.cancelled() => return Stop::Shutdown,
                r = stream.read(&mut chunk) => Some(r),
                _ = tokio::time::sleep(flush_after), if pending => None,
            };
            let mut frames: Vec<(RtuFrame, Instant)> = Vec::new();
            match read {
                Some(Ok(0)) => return Stop::Lost("end of file".into()),
                Some(Err(e)) => return Stop::Lost(e.to_string()),
                Some(Ok(n)) => {
                    let now = Instant::now();
                    if deframer.pending() == 0 {
                        frame_start = Some(now);
                    }
                    deframer.push(&chunk[..n]);
                    while let Some(f) = deframer.next_frame() {
                        frames.push((f, frame_start.unwrap_or(now)));
                        frame_start = (deframer.pending() > 0).then_some(now);
                    }
                }
                None => {
                    if let Some(f) = deframer.silence() {
                        frames.push((f, frame_start.unwrap_or_else(Instant::now)));
                    }
                    frame_start = None;
                }
            }
            let dropped = deframer.take_dropped();
            if dropped > 0 {
                debug!(port = %self.settings.port, dropped, "dropped bytes that were not a valid RTU frame");
            }
            for (f, started) in frames {
                let outcome = self.sim.process(f.unit, &f.pdu, SystemTime::now());
                let Some(bytes) = outcome.rtu_bytes() else {
                    continue;
                };
                let mut send_at = Instant::now();
                if self.timing {
                    let start = started.max(bus_free_at);
                    send_at = send_at.max(start + line.transaction(f.len, bytes.len()));
                }
                send_at += outcome.delay();
                tokio::select! {
                    _ = self.shutdown.cancelled() => return Stop::Shutdown,
                    _ = tokio::time::sleep_until(send_at) => {}
                }
                if let Err(e) = stream.write_all(&bytes).await {
                    return Stop::Lost(e.to_string());
                }
                bus_free_at = Instant::now() + line.silence;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_timing_at_9600_8e1() {
        let s = SerialSettings {
            port: "x".into(),
            baud: 9600,
            parity: Parity::Even,
            data_bits: 8,
            stop_bits: 1,
        };
        let t = LineTiming::new(&s);
        // 11 bits per char at 9600 baud: 1.1458 ms per char, 4.01 ms silence.
        assert_eq!(t.char_time.as_micros(), 1145);
        assert_eq!(t.silence.as_micros(), 4010);
        // read of 10 registers: 8 request + 25 reply bytes = 33 chars + one silence.
        assert_eq!(t.transaction(8, 25).as_micros(), 41_822);
    }
}
