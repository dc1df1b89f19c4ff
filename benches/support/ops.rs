//! The ops platform's side of the remote-operations benchmark: one long-lived rumqttc
//! connection over mutual TLS (persistent session, QoS 1, TCP_NODELAY as asked) subscribed to
//! a gateway's `cmd/res` and `config/state`, every received message stamped with the instant
//! its event loop saw it. Runs on the caller's tokio runtime; the event loop task is aborted
//! when the client is dropped.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS, TlsConfiguration, Transport};

use super::tls::MutualPki;
use super::Res;

/// One message the ops client received, stamped on arrival in its event loop.
pub struct Rx {
    pub at: Instant,
    pub topic: String,
    pub payload: Vec<u8>,
}

/// The ops platform: one rumqttc connection over mutual TLS (persistent session), QoS 1.
pub struct Ops {
    root: String,
    client: AsyncClient,
    rx: tokio::sync::mpsc::UnboundedReceiver<Rx>,
    subacks: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Ops {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Ops {
    /// Connect as client id `id` to `localhost:port` and subscribe to `<root>/cmd/res` and
    /// `<root>/config/state`; returns once both SUBACKs arrived (at most 20 s).
    pub async fn connect(
        pki: &MutualPki,
        port: u16,
        id: &str,
        root: &str,
        nodelay: bool,
    ) -> Res<Ops> {
        let mut o = MqttOptions::new(id, "localhost", port);
        o.set_clean_session(false);
        o.set_keep_alive(Duration::from_secs(30));
        o.set_max_packet_size(1 << 20, 1 << 20);
        o.set_inflight(200);
        o.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
            pki.client_config()?,
        )));
        let (client, mut el) = AsyncClient::new(o, 500);
        let mut net = rumqttc::NetworkOptions::new();
        net.set_tcp_nodelay(nodelay);
        el.set_network_options(net);
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let subacks = Arc::new(AtomicU64::new(0));
        let (c, s, r) = (client.clone(), subacks.clone(), root.to_string());
        let task = tokio::spawn(async move {
            loop {
                match el.poll().await {
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let at = Instant::now();
                        let _ = tx.send(Rx {
                            at,
                            topic: p.topic.clone(),
                            payload: p.payload.to_vec(),
                        });
                    }
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        for t in ["cmd/res", "config/state"] {
                            let _ = c.subscribe(format!("{r}/{t}"), QoS::AtLeastOnce).await;
                        }
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        s.fetch_add(1, Ordering::SeqCst);
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        });
        let ops = Ops {
            root: root.to_string(),
            client,
            rx,
            subacks,
            task,
        };
        let end = Instant::now() + Duration::from_secs(20);
        while ops.subacks.load(Ordering::SeqCst) < 2 {
            if Instant::now() > end {
                return Err("the ops client got no SUBACKs within 20 s (mutual TLS?)".into());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(ops)
    }

    /// Hand `payload` for `<root>/<suffix>` to the client (QoS 1); the instant just before is the start of the
    /// round trip.
    pub async fn publish(&self, suffix: &str, payload: Vec<u8>) -> Res<Instant> {
        let t0 = Instant::now();
        self.client
            .publish(
                format!("{}/{suffix}", self.root),
                QoS::AtLeastOnce,
                false,
                payload,
            )
            .await
            .map_err(|e| format!("publish on {suffix}: {e}"))?;
        Ok(t0)
    }

    /// The next received message, or None after `until`.
    pub async fn next(&mut self, until: Instant) -> Option<Rx> {
        let left = until.saturating_duration_since(Instant::now());
        tokio::time::timeout(left, self.rx.recv())
            .await
            .ok()
            .flatten()
    }
}
