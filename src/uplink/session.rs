//! Per-session link figures (issue 11): what one MQTT session cost in time and bytes, as
//! `gasdtu status`, `<root>/health` and docs/mqtt.md show it (one `session` object, the same
//! shape everywhere). The phases are cut at the moments the forwarder can observe honestly:
//! the attempt's start, the tunnel open (socket mode: the modem bridge's `200` after the
//! module socket opened), the TLS handshake complete (rustls derived the client's application
//! traffic secret, i.e. it processed the server's Finished: TLS 1.3 only), CONNACK, and the
//! first moment after CONNACK with nothing left to send or acknowledge (drained). Each phase
//! runs from the previous observed moment, so a phase that cannot be observed is folded into
//! the next one (os mode: `tls_ms` includes the TCP connect).
//!
//! Also here: `LinkMeter`, the counters a transport below the MQTT client fills in (the
//! socket-mode bridge: tunnel open, bytes each way on the module socket), and
//! `HandshakeClock`, the rustls key-log hook that only notes *when* the handshake completed
//! (it never sees, keeps or writes a secret). The phase arithmetic and the text line are pure.

use std::sync::{Arc, Mutex};
use std::time::Instant;

/// What `bytes_up`/`bytes_down` count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ByteCount {
    /// MQTT payload bytes published (os mode: the OS owns the socket; nothing down).
    #[default]
    Payload,
    /// Every byte on the module socket both ways (socket mode, from the bridge): TLS records
    /// and MQTT framing included, IP/TCP headers the module adds not.
    Socket,
}

impl ByteCount {
    pub fn as_str(self) -> &'static str {
        match self {
            ByteCount::Payload => "payload",
            ByteCount::Socket => "socket",
        }
    }
}

/// The figures of one session (the current one while connected, else the last one).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SessionFigures {
    /// Attempt start to tunnel established (socket mode only).
    pub open_ms: Option<u64>,
    /// The previous observed moment to the TLS handshake complete (TLS 1.3 only).
    pub tls_ms: Option<u64>,
    /// The previous observed moment to CONNACK (MQTT CONNECT; all of the connect when
    /// nothing before it was observed).
    pub mqtt_ms: Option<u64>,
    /// Attempt start to CONNACK (the sum of the phases above).
    pub connect_ms: Option<u64>,
    /// CONNACK to the first moment with nothing left to send or acknowledge.
    pub drain_ms: Option<u64>,
    /// Attempt start to the session's end; while the session is up, to the last update
    /// (each health message carries the length so far).
    pub total_ms: Option<u64>,
    /// See `bytes`.
    pub bytes_up: u64,
    /// Socket mode only.
    pub bytes_down: Option<u64>,
    pub bytes: ByteCount,
    /// MQTT payload bytes published (also in socket mode, where `bytes_up` counts the socket).
    pub payload_up: u64,
    /// Outbox messages published in the session (resends included).
    pub messages: u64,
}

/// The moments of one connect, in the forwarder's monotonic clock.
#[derive(Debug, Clone, Copy)]
pub struct Moments {
    pub start: Instant,
    pub opened: Option<Instant>,
    pub tls_done: Option<Instant>,
    pub connack: Instant,
}

fn ms(from: Instant, to: Instant) -> u64 {
    to.saturating_duration_since(from).as_millis() as u64
}

/// `(open_ms, tls_ms, mqtt_ms, connect_ms)` of a connect (pure). A moment outside
/// `start..=connack` or before the one it follows belongs to another connection (a stale
/// meter) and is left out.
pub fn phases(m: &Moments) -> (Option<u64>, Option<u64>, u64, u64) {
    let within = |t: Option<Instant>, after: Instant| t.filter(|t| *t >= after && *t <= m.connack);
    let opened = within(m.opened, m.start);
    let tls_done = within(m.tls_done, opened.unwrap_or(m.start));
    // Every moment as ms from the start (truncated once), so the phases add up exactly.
    let at = |t: Instant| ms(m.start, t);
    let open_ms = opened.map(at);
    let tls_ms = tls_done.map(|t| at(t) - open_ms.unwrap_or(0));
    let before = tls_done.or(opened).map_or(0, at);
    let connect = at(m.connack);
    (open_ms, tls_ms, connect - before, connect)
}

impl SessionFigures {
    /// The figures known at CONNACK.
    pub fn at_connack(m: &Moments, bytes: ByteCount) -> SessionFigures {
        let (open_ms, tls_ms, mqtt_ms, connect_ms) = phases(m);
        SessionFigures {
            open_ms,
            tls_ms,
            mqtt_ms: Some(mqtt_ms),
            connect_ms: Some(connect_ms),
            bytes,
            bytes_down: (bytes == ByteCount::Socket).then_some(0),
            ..SessionFigures::default()
        }
    }

    /// The `session` object of status and health; fields not measured are left out.
    pub fn to_json(&self) -> serde_json::Value {
        let mut m = serde_json::Map::new();
        let mut put = |k: &str, v: Option<u64>| {
            if let Some(v) = v {
                m.insert(k.into(), v.into());
            }
        };
        put("open_ms", self.open_ms);
        put("tls_ms", self.tls_ms);
        put("mqtt_ms", self.mqtt_ms);
        put("connect_ms", self.connect_ms);
        put("drain_ms", self.drain_ms);
        put("total_ms", self.total_ms);
        put("bytes_up", Some(self.bytes_up));
        put("bytes_down", self.bytes_down);
        if self.bytes == ByteCount::Socket {
            put("payload_up", Some(self.payload_up));
        }
        put("messages", Some(self.messages));
        m.insert("bytes".into(), self.bytes.as_str().into());
        serde_json::Value::Object(m)
    }
}

/// The `gasdtu status` line of a `session` object (pure): `last session 8.1 s: open 1.6,
/// tls 2.0, mqtt 0.3, drain 2.6; 2.6 kB up / 0.6 kB down (socket)`. `None` before the first
/// session.
pub fn summary_line(v: &serde_json::Value) -> Option<String> {
    let connect = v.get("connect_ms")?.as_u64()?;
    let secs = |ms: u64| format!("{:.1}", ms as f64 / 1000.0);
    let kb = |b: u64| format!("{:.1} kB", b as f64 / 1000.0);
    let mut line = match v.get("total_ms").and_then(|t| t.as_u64()) {
        Some(t) => format!("last session {} s:", secs(t)),
        None => "last session:".to_string(),
    };
    let mut parts = Vec::new();
    for (k, name) in [
        ("open_ms", "open"),
        ("tls_ms", "tls"),
        ("mqtt_ms", "mqtt"),
        ("drain_ms", "drain"),
    ] {
        if let Some(ms) = v.get(k).and_then(|x| x.as_u64()) {
            parts.push(format!("{name} {}", secs(ms)));
        }
    }
    if parts.is_empty() {
        parts.push(format!("connect {}", secs(connect)));
    }
    line.push(' ');
    line.push_str(&parts.join(", "));
    let up = v.get("bytes_up").and_then(|x| x.as_u64()).unwrap_or(0);
    line.push_str(&format!("; {} up", kb(up)));
    if let Some(down) = v.get("bytes_down").and_then(|x| x.as_u64()) {
        line.push_str(&format!(" / {} down", kb(down)));
    }
    let what = v.get("bytes").and_then(|x| x.as_str()).unwrap_or("payload");
    line.push_str(&format!(
        " ({})",
        if what == "socket" {
            "socket"
        } else {
            "payload"
        }
    ));
    if let Some(n) = v.get("messages").and_then(|x| x.as_u64()) {
        line.push_str(&format!(", {n} message(s)"));
    }
    Some(line)
}

/// What a `LinkMeter` holds of the current (or last) proxied connection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MeterReading {
    /// When the tunnel was established (`None` until then).
    pub opened: Option<Instant>,
    pub up: u64,
    pub down: u64,
}

/// Counters of the transport below the MQTT client (the socket-mode bridge): one
/// connection at a time, reset when the next one is accepted.
#[derive(Debug, Default)]
pub struct LinkMeter {
    now: Mutex<MeterReading>,
}

impl LinkMeter {
    pub fn new() -> Arc<LinkMeter> {
        Arc::new(LinkMeter::default())
    }

    fn with(&self, f: impl FnOnce(&mut MeterReading)) {
        let mut g = self.now.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut g);
    }

    /// A new connection was accepted: the counters start again.
    pub fn connection(&self) {
        self.with(|m| *m = MeterReading::default());
    }

    /// The tunnel is established (the module socket is open).
    pub fn opened(&self) {
        self.with(|m| m.opened = Some(Instant::now()));
    }

    /// Bytes sent to the network.
    pub fn up(&self, n: usize) {
        self.with(|m| m.up = m.up.saturating_add(n as u64));
    }

    /// Bytes received from the network.
    pub fn down(&self, n: usize) {
        self.with(|m| m.down = m.down.saturating_add(n as u64));
    }

    pub fn reading(&self) -> MeterReading {
        *self.now.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// rustls key-log hook that notes when a TLS 1.3 handshake completed (the client's
/// application traffic secret is derived when the server's Finished has been processed).
/// It asks rustls for that one label only and drops the secret unread.
#[derive(Debug, Default)]
pub struct HandshakeClock {
    done: Mutex<Option<Instant>>,
}

/// The label rustls logs when the client's first application traffic secret exists.
const HANDSHAKE_DONE_LABEL: &str = "CLIENT_TRAFFIC_SECRET_0";

impl HandshakeClock {
    pub fn new() -> Arc<HandshakeClock> {
        Arc::new(HandshakeClock::default())
    }

    /// Forget the last handshake (before a new attempt).
    pub fn reset(&self) {
        *self.done.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// When the last handshake since `reset` completed.
    pub fn done(&self) -> Option<Instant> {
        *self.done.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl rustls::KeyLog for HandshakeClock {
    fn will_log(&self, label: &str) -> bool {
        label == HANDSHAKE_DONE_LABEL
    }

    fn log(&self, label: &str, _client_random: &[u8], _secret: &[u8]) {
        if label == HANDSHAKE_DONE_LABEL {
            *self.done.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn phases_are_cut_at_the_observed_moments() {
        let t0 = Instant::now();
        let at = |ms: u64| Some(t0 + Duration::from_millis(ms));
        // (opened, tls_done, connack) -> (open, tls, mqtt, connect)
        type Row = (
            Option<Instant>,
            Option<Instant>,
            u64,
            (Option<u64>, Option<u64>, u64, u64),
        );
        let rows: &[Row] = &[
            // Socket mode with TLS: every phase.
            (
                at(1600),
                at(3600),
                3900,
                (Some(1600), Some(2000), 300, 3900),
            ),
            // os mode with TLS: TLS includes the TCP connect.
            (None, at(2500), 2800, (None, Some(2500), 300, 2800)),
            // Socket mode, no TLS: MQTT from the open.
            (at(1000), None, 1400, (Some(1000), None, 400, 1400)),
            // Nothing observed: all of it is MQTT (connect).
            (None, None, 700, (None, None, 700, 700)),
            // A meter stamp from before this attempt (stale): left out.
            (
                Some(t0 - Duration::from_millis(5)),
                at(900),
                1000,
                (None, Some(900), 100, 1000),
            ),
            // A handshake stamp after CONNACK cannot be this connect's: left out.
            (at(100), at(2000), 1500, (Some(100), None, 1400, 1500)),
            // A handshake before the tunnel opened: left out.
            (at(500), at(400), 800, (Some(500), None, 300, 800)),
        ];
        for (i, (opened, tls_done, connack, want)) in rows.iter().enumerate() {
            let m = Moments {
                start: t0,
                opened: *opened,
                tls_done: *tls_done,
                connack: t0 + Duration::from_millis(*connack),
            };
            let got = phases(&m);
            assert_eq!(got, *want, "row {i}");
            let sum = got.0.unwrap_or(0) + got.1.unwrap_or(0) + got.2;
            assert_eq!(sum, got.3, "row {i}: phases add up to the connect");
        }
    }

    #[test]
    fn json_leaves_out_what_was_not_measured_and_stays_small() {
        let t0 = Instant::now();
        let m = Moments {
            start: t0,
            opened: Some(t0 + Duration::from_millis(1600)),
            tls_done: Some(t0 + Duration::from_millis(3600)),
            connack: t0 + Duration::from_millis(3900),
        };
        let mut f = SessionFigures::at_connack(&m, ByteCount::Socket);
        f.drain_ms = Some(2600);
        f.total_ms = Some(8100);
        f.bytes_up = 2600;
        f.bytes_down = Some(620);
        f.payload_up = 1539;
        f.messages = 4;
        let j = f.to_json();
        assert_eq!(j["open_ms"], 1600);
        assert_eq!(j["tls_ms"], 2000);
        assert_eq!(j["mqtt_ms"], 300);
        assert_eq!(j["connect_ms"], 3900);
        assert_eq!(j["bytes"], "socket");
        assert!(j.to_string().len() < 200, "{j}");
        assert_eq!(
            summary_line(&j).as_deref(),
            Some(
                "last session 8.1 s: open 1.6, tls 2.0, mqtt 0.3, drain 2.6; \
                 2.6 kB up / 0.6 kB down (socket), 4 message(s)"
            )
        );
        let os = SessionFigures {
            connect_ms: Some(2870),
            mqtt_ms: Some(2870),
            bytes_up: 1539,
            messages: 2,
            ..SessionFigures::default()
        }
        .to_json();
        assert!(
            os.get("open_ms").is_none() && os.get("bytes_down").is_none(),
            "{os}"
        );
        assert!(os.get("payload_up").is_none(), "{os}");
        assert_eq!(os["bytes"], "payload");
        assert_eq!(
            summary_line(&os).as_deref(),
            Some("last session: mqtt 2.9; 1.5 kB up (payload), 2 message(s)")
        );
        // Before the first session: no line.
        assert_eq!(summary_line(&SessionFigures::default().to_json()), None);
        assert_eq!(summary_line(&serde_json::Value::Null), None);
    }

    #[test]
    fn the_meter_restarts_per_connection_and_the_clock_notes_one_label() {
        use rustls::KeyLog;
        let m = LinkMeter::new();
        m.up(10);
        m.down(3);
        m.connection();
        assert_eq!(m.reading(), MeterReading::default());
        m.opened();
        m.up(5);
        m.down(7);
        let r = m.reading();
        assert!(r.opened.is_some());
        assert_eq!((r.up, r.down), (5, 7));

        let c = HandshakeClock::new();
        assert!(!c.will_log("CLIENT_HANDSHAKE_TRAFFIC_SECRET"));
        assert!(c.will_log("CLIENT_TRAFFIC_SECRET_0"));
        c.log("SERVER_TRAFFIC_SECRET_0", b"r", b"s");
        assert_eq!(c.done(), None);
        c.log("CLIENT_TRAFFIC_SECRET_0", b"r", b"s");
        assert!(c.done().is_some());
        c.reset();
        assert_eq!(c.done(), None);
    }
}
