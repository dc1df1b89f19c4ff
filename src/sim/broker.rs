//! A minimal MQTT 3.1.1 broker embedded for `gasdtu demo`, so the whole pipeline runs on a
//! fresh machine with nothing installed. It speaks enough of the protocol for the daemon and a
//! subscriber: CONNECT/CONNACK, PUBLISH QoS 0 and 1 (PUBACK), retained messages, SUBSCRIBE with
//! `+`/`#` filters (granted and delivered at QoS 0), PING, DISCONNECT and the last will. No
//! persistence, no authentication, loopback only. Packets are parsed by rumqttc's own MQTT
//! codec. It is a demo component like the simulator: the daemon never depends on it, and the
//! tests use a real mosquitto.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::BytesMut;
use rumqttc::mqttbytes::v4::{
    ConnAck, ConnectReturnCode, Packet, PubAck, Publish, SubAck, SubscribeReasonCode,
};
use rumqttc::mqttbytes::{matches, QoS};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

const MAX_PACKET: usize = 256 * 1024;

struct ClientEntry {
    tx: mpsc::Sender<Publish>,
    filters: Vec<String>,
}

#[derive(Default)]
struct State {
    next_id: u64,
    clients: HashMap<u64, ClientEntry>,
    retained: HashMap<String, Publish>,
}

/// The embedded broker. Every accepted PUBLISH is also sent to `published()` subscribers so the
/// demo can count deliveries without an MQTT client of its own.
pub struct Broker {
    listener: TcpListener,
    state: Arc<Mutex<State>>,
    published: broadcast::Sender<Publish>,
}

impl Broker {
    /// Bind on `addr` (use 127.0.0.1:0 for an ephemeral port).
    pub async fn bind(addr: &str) -> std::io::Result<Broker> {
        let listener = TcpListener::bind(addr).await?;
        let (published, _) = broadcast::channel(4096);
        Ok(Broker {
            listener,
            state: Arc::new(Mutex::new(State::default())),
            published,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// A feed of every PUBLISH the broker accepted.
    pub fn published(&self) -> broadcast::Receiver<Publish> {
        self.published.subscribe()
    }

    pub async fn run(self, shutdown: CancellationToken) {
        loop {
            let accepted = tokio::select! {
                _ = shutdown.cancelled() => return,
                a = self.listener.accept() => a,
            };
            match accepted {
                Ok((stream, _)) => {
                    let conn = Connection {
                        stream,
                        state: self.state.clone(),
                        published: self.published.clone(),
                    };
                    tokio::spawn(conn.run(shutdown.clone()));
                }
                Err(e) => tracing::warn!("demo broker: accept failed: {e}"),
            }
        }
    }
}

struct Connection {
    stream: TcpStream,
    state: Arc<Mutex<State>>,
    published: broadcast::Sender<Publish>,
}

fn lock(state: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    match state.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

fn route(state: &Mutex<State>, published: &broadcast::Sender<Publish>, p: &Publish) {
    let _ = published.send(p.clone());
    let mut st = lock(state);
    if p.retain {
        if p.payload.is_empty() {
            st.retained.remove(&p.topic);
        } else {
            let mut kept = p.clone();
            kept.qos = QoS::AtMostOnce;
            kept.pkid = 0;
            st.retained.insert(p.topic.clone(), kept);
        }
    }
    for c in st.clients.values() {
        if c.filters.iter().any(|f| matches(&p.topic, f)) {
            let mut out = Publish::new(p.topic.clone(), QoS::AtMostOnce, p.payload.clone());
            out.retain = false;
            // A slow subscriber loses messages rather than stalling the broker (demo only).
            let _ = c.tx.try_send(out);
        }
    }
}

impl Connection {
    async fn run(mut self, shutdown: CancellationToken) {
        let mut buf = BytesMut::with_capacity(4096);
        let (tx, mut rx) = mpsc::channel::<Publish>(1024);
        let mut id = None;
        let mut will: Option<Publish> = None;
        let mut clean_exit = false;
        'conn: loop {
            // Parse every complete packet in the buffer.
            loop {
                match Packet::read(&mut buf, MAX_PACKET) {
                    Ok(packet) => {
                        let mut out = BytesMut::new();
                        match packet {
                            Packet::Connect(c) => {
                                will = c.last_will.map(|w| {
                                    let mut p = Publish::new(w.topic, w.qos, w.message);
                                    p.retain = w.retain;
                                    p
                                });
                                let mut st = lock(&self.state);
                                st.next_id += 1;
                                let my = st.next_id;
                                st.clients.insert(
                                    my,
                                    ClientEntry {
                                        tx: tx.clone(),
                                        filters: Vec::new(),
                                    },
                                );
                                id = Some(my);
                                drop(st);
                                let _ = Packet::ConnAck(ConnAck::new(
                                    ConnectReturnCode::Success,
                                    false,
                                ))
                                .write(&mut out, MAX_PACKET);
                            }
                            Packet::Publish(p) => {
                                if p.qos != QoS::AtMostOnce {
                                    let _ = Packet::PubAck(PubAck::new(p.pkid))
                                        .write(&mut out, MAX_PACKET);
                                }
                                route(&self.state, &self.published, &p);
                            }
                            Packet::Subscribe(s) => {
                                let mut codes = Vec::new();
                                let mut retained = Vec::new();
                                {
                                    let mut st = lock(&self.state);
                                    for f in &s.filters {
                                        codes.push(SubscribeReasonCode::Success(QoS::AtMostOnce));
                                        for (topic, p) in &st.retained {
                                            if matches(topic, &f.path) {
                                                retained.push(p.clone());
                                            }
                                        }
                                    }
                                    if let Some(c) = id.and_then(|i| st.clients.get_mut(&i)) {
                                        c.filters.extend(s.filters.iter().map(|f| f.path.clone()));
                                    }
                                }
                                let _ = Packet::SubAck(SubAck::new(s.pkid, codes))
                                    .write(&mut out, MAX_PACKET);
                                for mut p in retained {
                                    p.retain = true;
                                    let _ = Packet::Publish(p).write(&mut out, MAX_PACKET);
                                }
                            }
                            Packet::PingReq => {
                                let _ = Packet::PingResp.write(&mut out, MAX_PACKET);
                            }
                            Packet::Disconnect => {
                                clean_exit = true;
                                break 'conn;
                            }
                            // Acks from subscribers (we deliver QoS 0) and the rest: ignore.
                            _ => {}
                        }
                        if !out.is_empty() && self.stream.write_all(&out).await.is_err() {
                            break 'conn;
                        }
                    }
                    Err(rumqttc::mqttbytes::Error::InsufficientBytes(_)) => break,
                    Err(e) => {
                        tracing::debug!("demo broker: bad packet, closing: {e}");
                        break 'conn;
                    }
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => { clean_exit = true; break 'conn; }
                n = self.stream.read_buf(&mut buf) => match n {
                    Ok(0) | Err(_) => break 'conn,
                    Ok(_) => {}
                },
                p = rx.recv() => {
                    if let Some(p) = p {
                        let mut out = BytesMut::new();
                        let _ = Packet::Publish(p).write(&mut out, MAX_PACKET);
                        if self.stream.write_all(&out).await.is_err() {
                            break 'conn;
                        }
                    }
                }
            }
        }
        if let Some(i) = id {
            lock(&self.state).clients.remove(&i);
        }
        if !clean_exit {
            if let Some(w) = will {
                route(&self.state, &self.published, &w);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rumqttc::{AsyncClient, Event, Incoming, LastWill, MqttOptions};
    use std::time::Duration;

    async fn client(
        port: u16,
        id: &str,
        will: Option<LastWill>,
    ) -> (AsyncClient, rumqttc::EventLoop) {
        let mut o = MqttOptions::new(id, "127.0.0.1", port);
        o.set_keep_alive(Duration::from_secs(5));
        if let Some(w) = will {
            o.set_last_will(w);
        }
        AsyncClient::new(o, 16)
    }

    /// Poll until a PUBLISH on `topic` arrives; returns its payload.
    async fn next_publish(ev: &mut rumqttc::EventLoop, topic: &str) -> (Vec<u8>, bool) {
        tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                if let Event::Incoming(Incoming::Publish(p)) = ev.poll().await.unwrap() {
                    if p.topic == topic {
                        return (p.payload.to_vec(), p.retain);
                    }
                }
            }
        })
        .await
        .expect("publish within 5 s")
    }

    #[tokio::test]
    async fn routes_qos1_retained_and_last_will() {
        let broker = Broker::bind("127.0.0.1:0").await.unwrap();
        let port = broker.local_addr().unwrap().port();
        let mut feed = broker.published();
        let stop = CancellationToken::new();
        tokio::spawn(broker.run(stop.clone()));

        // A publisher with a last will publishes a retained QoS 1 message and gets its PUBACK.
        let (pc, mut pe) = client(
            port,
            "pub",
            Some(LastWill::new(
                "gw/status",
                "offline",
                QoS::AtLeastOnce,
                true,
            )),
        )
        .await;
        pc.publish("gw/status", QoS::AtLeastOnce, true, "online")
            .await
            .unwrap();
        tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                if let Event::Incoming(Incoming::PubAck(_)) = pe.poll().await.unwrap() {
                    break;
                }
            }
        })
        .await
        .expect("puback");
        assert_eq!(feed.recv().await.unwrap().topic, "gw/status");

        // A later subscriber gets the retained message, then live ones matching its filter.
        let (sc, mut se) = client(port, "sub", None).await;
        sc.subscribe("gw/+", QoS::AtLeastOnce).await.unwrap();
        assert_eq!(
            next_publish(&mut se, "gw/status").await,
            (b"online".to_vec(), true)
        );
        pc.publish("gw/data", QoS::AtLeastOnce, false, "42")
            .await
            .unwrap();
        let pump = tokio::spawn(async move {
            loop {
                if pe.poll().await.is_err() {
                    break;
                }
            }
        });
        assert_eq!(
            next_publish(&mut se, "gw/data").await,
            (b"42".to_vec(), false)
        );

        // The publisher vanishes without DISCONNECT: its will is published.
        pump.abort();
        let _ = pump.await;
        drop(pc);
        assert_eq!(
            next_publish(&mut se, "gw/status").await.0,
            b"offline".to_vec()
        );
        stop.cancel();
    }
}
