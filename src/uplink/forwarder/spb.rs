//! The forwarder in Sparkplug mode (`Forwarder::with_sparkplug`, issue 14; docs/sparkplug.md,
//! "How the forwarder speaks Sparkplug"): it owns one `EdgeSession` per MQTT session and
//! drives it from the forwarder's events. Before each CONNECT the bdSeq is claimed in the store
//! (`SparkplugLink::claim`, on a blocking thread; a failed claim means no connect) and NDEATH
//! becomes the will (QoS 1, not retained, clean session); after CONNACK it subscribes NCMD,
//! DCMD (and the primary host's STATE); on the SUBACK (and, with a primary host, its STATE
//! `online: true`) it queues NBIRTH and the DBIRTHs (carrying the last session's values, or
//! for the first one the newest stored reading of each device), and only then does the outbox
//! drain.
//! Each sealed outbox message (store seq `N`) is translated at publish time
//! (`sparkplug::translate`): its publishes wait in a queue drained within the inflight window,
//! each carrying `N` in the ack FIFO, and `N` is acknowledged in the outbox when all of them
//! were PUBACKed (none: at once). Events and replies keep their gasdtu topics and sealed bytes.
//! NCMD Rebirth queues the births again; a DCMD goes to the remote service's inbox
//! (`InboundKind::Dcmd`); STATE `online: false` after the births ends the session. Before a
//! clean DISCONNECT NDEATH is published (a DISCONNECT suppresses the will).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use rumqttc::{AsyncClient, LastWill, MqttOptions, QoS, SubscribeReasonCode};

use super::{Forwarder, Session, SessionError};
use crate::outbox::{EntryKind, Outbox, OutboxError, Sealed};
use crate::store::{BdSeqClaim, StoreError};
use crate::uplink::inbox::{AckReq, AckToken, Inbound, InboundKind};
use crate::uplink::now_ms;
use crate::uplink::sparkplug::{
    next_bd_seq, state_topic, translate, updates_of, Carry, CommandOutcome, EdgeNode, EdgeSession,
    MessageType, ModemFigures, NodeModel, NodeState, Publish,
};

/// Claims the bdSeq of the next CONNECT (`Store::claim_bd_seq(next_bd_seq)`), committed
/// before it returns. Runs on a blocking thread.
pub type ClaimFn = Arc<dyn Fn() -> Result<BdSeqClaim, StoreError> + Send + Sync>;
/// Outbox entries waiting (the node's `Buffer/Depth`): O(1), called on the forwarder's task.
pub type DepthFn = Arc<dyn Fn() -> u64 + Send + Sync>;
/// The newest stored batch of a device (`Store::newest_batch`): the values of the first
/// DBIRTH of this forwarder. Runs on a blocking thread.
pub type SeedFn = Arc<dyn Fn(&str) -> Option<crate::model::SampleBatch> + Send + Sync>;
/// The modem's figures now (`Modem/...`; a `watch` borrow): O(1), on the forwarder's task.
pub type ModemFn = Arc<dyn Fn() -> ModemFigures + Send + Sync>;

/// What the forwarder needs to be a Sparkplug edge node.
pub struct SparkplugLink {
    pub edge: EdgeNode,
    pub model: NodeModel,
    /// `[uplink.sparkplug] primary_host_id`: births wait for its STATE `online: true`.
    pub primary_host: Option<String>,
    /// How the broker is reached (`Link/Transport`): "tcp", "tls", "modem-socket" ...
    pub transport: String,
    pub claim: ClaimFn,
    pub depth: DepthFn,
    pub seed: SeedFn,
    /// With a `[modem]` (and `Modem/` metrics in the model): its figures.
    pub modem: Option<ModemFn>,
    /// What the last session knew (values for the births, devices offline), for the next.
    carry: Arc<std::sync::Mutex<Option<Carry>>>,
}

impl SparkplugLink {
    /// A link whose bdSeq lives in `store` (`meta.sparkplug_bd_seq`).
    pub fn with_store(
        edge: EdgeNode,
        model: NodeModel,
        primary_host: Option<String>,
        transport: String,
        store: Arc<crate::store::Store>,
    ) -> SparkplugLink {
        let claimer = store.clone();
        let seeder = store.clone();
        SparkplugLink {
            edge,
            model,
            primary_host,
            transport,
            claim: Arc::new(move || claimer.claim_bd_seq(next_bd_seq)),
            depth: Arc::new(move || store.stats().map(|s| s.pending_entries).unwrap_or(0)),
            seed: Arc::new(move |d| seeder.newest_batch(d).ok().flatten()),
            modem: None,
            carry: Arc::default(),
        }
    }

    /// The node has a modem: its figures go out as the `Modem/` node metrics.
    pub fn with_modem(mut self, figures: ModemFn) -> SparkplugLink {
        self.modem = Some(figures);
        self
    }
}

/// The Sparkplug side of one MQTT session.
pub(super) struct SpSession {
    pub(super) edge: EdgeSession,
    will: Publish,
    /// Publishes derived and not yet requested, with the outbox message they carry (`None`:
    /// births, NDATA). Drained within the inflight window, in order (seq order).
    queue: VecDeque<(Option<u64>, Publish)>,
    /// Outbox message -> its publishes not yet PUBACKed (+1 while parked: never acked in this
    /// session, resent in the next).
    parts: HashMap<u64, usize>,
    /// Messages up to this seq were sealed before this session (`unacked`): historical.
    resumed_upto: u64,
    /// The SUBACK came; the primary host is online (always, without one).
    subscribed: bool,
    host_online: bool,
    /// The births were queued: the outbox may drain.
    born: bool,
    /// The primary host went offline after the births: end the session.
    host_gone: bool,
    /// Node figures last sent (NBIRTH / NDATA).
    sent_state: NodeState,
    /// Where this session leaves what it knew when it ends (`Drop`).
    carry: Arc<std::sync::Mutex<Option<Carry>>>,
}

impl Drop for SpSession {
    fn drop(&mut self) {
        let mut c = self.carry.lock().unwrap_or_else(|p| p.into_inner());
        *c = Some(self.edge.carry());
    }
}

impl SpSession {
    pub(super) fn queue_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// The births were queued: the outbox may drain.
    pub(super) fn born(&self) -> bool {
        self.born
    }
}

impl SpSession {
    /// Message `seq` became `n` publishes (plus one that never comes while `parked`): `true`
    /// when there is nothing to wait for, so it is acknowledged at once.
    fn expect(&mut self, seq: u64, n: usize, parked: bool) -> bool {
        let n = n + usize::from(parked);
        if n == 0 {
            return true;
        }
        self.parts.insert(seq, n);
        false
    }

    /// A PUBACK of a publish carrying `seq`: `true` when `seq` is now wholly acknowledged
    /// (or was never split: a gasdtu-topic publish).
    fn acked(&mut self, seq: u64) -> bool {
        match self.parts.get_mut(&seq) {
            None => true,
            Some(n) => {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    self.parts.remove(&seq);
                    true
                } else {
                    false
                }
            }
        }
    }
}

/// The queue is empty (true without Sparkplug).
pub(super) fn idle(s: &Session) -> bool {
    s.sp.as_ref().is_none_or(SpSession::queue_empty)
}

/// A PUBACK for outbox message `seq` came: true when `seq` is now wholly acknowledged.
pub(super) fn part_acked(s: &mut Session, seq: u64) -> bool {
    s.sp.as_mut().is_none_or(|sp| sp.acked(seq))
}

/// The `STATE` payload's `online` (Sparkplug 3.0: `{"online": true, "timestamp": ..}`).
fn state_online(payload: &[u8]) -> Option<bool> {
    let v: serde_json::Value = serde_json::from_slice(payload).ok()?;
    v.get("online")?.as_bool()
}

impl<O: Outbox> Forwarder<O> {
    /// Speak Sparkplug B instead of gasdtu's own topics (docs/sparkplug.md).
    pub fn with_sparkplug(mut self, link: SparkplugLink) -> Self {
        self.sparkplug = Some(Arc::new(link));
        self
    }

    fn node_state(&self, link: &SparkplugLink) -> NodeState {
        NodeState {
            transport: link.transport.clone(),
            reconnects: self.status.borrow().reconnects,
            buffer_depth: (link.depth)(),
            modem: link.modem.as_ref().map(|f| f()),
        }
    }

    /// Before CONNECT: claim the bdSeq (committed), start the session, register NDEATH as the
    /// will (QoS 1, not retained) and ask for a clean session. `None` in gasdtu mode.
    pub(super) async fn spb_connect(
        &self,
        opts: &mut MqttOptions,
    ) -> Result<Option<SpSession>, SessionError> {
        let Some(link) = self.sparkplug.clone() else {
            return Ok(None);
        };
        let claim = link.claim.clone();
        let c = tokio::task::spawn_blocking(move || claim())
            .await
            .map_err(|e| SessionError::Internal(format!("bdSeq claim task failed: {e}")))?
            .map_err(|e| SessionError::Sparkplug(format!("cannot claim the bdSeq: {e}")))?;
        let state = self.node_state(&link);
        let now = now_ms().max(0) as u64;
        let (mut edge, will) = EdgeSession::connect(
            link.edge.clone(),
            link.model.clone(),
            c.previous,
            state.clone(),
            self.cfg.max_payload,
            now,
        )
        .map_err(|e| SessionError::Sparkplug(e.to_string()))?;
        let known = link.carry.lock().unwrap_or_else(|p| p.into_inner()).take();
        match known {
            Some(known) => edge.resume(known),
            None => self.spb_seed(&link, &mut edge).await,
        }
        opts.set_clean_session(true);
        opts.set_last_will(LastWill::new(
            will.topic.clone(),
            will.payload.clone(),
            QoS::AtLeastOnce,
            false,
        ));
        tracing::info!(
            bd_seq = c.bd_seq,
            "sparkplug: connecting with NDEATH as the will"
        );
        Ok(Some(SpSession {
            edge,
            will,
            queue: VecDeque::new(),
            parts: HashMap::new(),
            resumed_upto: 0,
            subscribed: false,
            host_online: link.primary_host.is_none(),
            born: false,
            host_gone: false,
            sent_state: state,
            carry: link.carry.clone(),
        }))
    }

    /// The first session of this forwarder: every device's newest stored reading becomes its
    /// known state, so the first DBIRTHs carry values (with their read times).
    async fn spb_seed(&self, link: &Arc<SparkplugLink>, edge: &mut EdgeSession) {
        let devices: Vec<String> = link
            .model
            .devices
            .iter()
            .map(|d| d.device.clone())
            .collect();
        let seed = link.seed.clone();
        let Ok(batches) = tokio::task::spawn_blocking(move || {
            devices
                .into_iter()
                .filter_map(|d| seed(&d).map(|b| (d, b)))
                .collect::<Vec<_>>()
        })
        .await
        else {
            return;
        };
        for (device, b) in batches {
            let Some(dev) = edge.model().device(&device) else {
                continue;
            };
            if !b.online {
                continue;
            }
            let updates = updates_of(dev, &b);
            if let Err(e) = edge.remember(&device, updates) {
                tracing::debug!(device = %device, "sparkplug: no birth values from the store: {e}");
            }
        }
    }

    /// The filters to subscribe after CONNACK: NCMD, DCMD and the primary host's STATE.
    pub(super) fn spb_filters(&self, s: &Session) -> Vec<String> {
        let (Some(sp), Some(link)) = (&s.sp, &self.sparkplug) else {
            return Vec::new();
        };
        let mut f: Vec<String> = sp.edge.subscriptions().into();
        if let Some(h) = &link.primary_host {
            // Validated by the config.
            if let Ok(t) = state_topic(h) {
                f.push(t);
            }
        }
        f
    }

    /// The SUBACK of the subscriptions (`codes` in `spb_filters` order): births now, or when
    /// the primary host says it is online.
    pub(super) fn spb_subscribed(
        &self,
        s: &mut Session,
        codes: &[SubscribeReasonCode],
    ) -> Result<(), SessionError> {
        let Some(sp) = s.sp.as_mut() else {
            return Ok(());
        };
        if codes
            .iter()
            .any(|c| !matches!(c, SubscribeReasonCode::Success(_)))
        {
            tracing::error!(
                ?codes,
                "sparkplug: the broker refused a subscription (ACL?): no NCMD/DCMD/STATE"
            );
            // Without STATE nobody would ever let the births out: go on without the host.
            sp.host_online = true;
        }
        sp.subscribed = true;
        self.spb_births(s)
    }

    /// Queue NBIRTH and the DBIRTHs once subscribed and the host is online.
    fn spb_births(&self, s: &mut Session) -> Result<(), SessionError> {
        let Some(sp) = s.sp.as_mut() else {
            return Ok(());
        };
        if sp.born || !sp.subscribed || !sp.host_online {
            return Ok(());
        }
        let now = now_ms().max(0) as u64;
        let births = sp
            .edge
            .births(now)
            .map_err(|e| SessionError::Sparkplug(format!("births: {e}")))?;
        tracing::info!(
            devices = births.len().saturating_sub(1),
            bd_seq = sp.edge.bd_seq(),
            "sparkplug: NBIRTH and DBIRTHs"
        );
        sp.queue.extend(births.into_iter().map(|p| (None, p)));
        sp.born = true;
        Ok(())
    }

    /// Request queued publishes while the window allows. `false` while the outbox must wait
    /// (not born yet, or publishes still queued).
    pub(super) fn spb_drain(
        &self,
        client: &AsyncClient,
        s: &mut Session,
        window: usize,
    ) -> Result<bool, SessionError> {
        let Some(sp) = s.sp.as_mut() else {
            return Ok(true);
        };
        if !sp.born {
            return Ok(false);
        }
        let mut items = Vec::new();
        let mut room = window.saturating_sub(s.outstanding);
        while room > 0 {
            let Some(it) = sp.queue.pop_front() else {
                break;
            };
            items.push(it);
            room -= 1;
        }
        let more = !sp.queue.is_empty();
        for (seq, p) in items {
            self.publish(client, s, seq, p.topic, p.payload, false)?;
        }
        Ok(!more)
    }

    /// The seqs resent from before this session are historical.
    pub(super) fn spb_resumed(&self, s: &mut Session) {
        let top = s.resend.back().map_or(0, |m| m.seq);
        if let Some(sp) = s.sp.as_mut() {
            sp.resumed_upto = top;
        }
    }

    /// Publish sealed message `m`: as it is in gasdtu mode; in Sparkplug mode events and
    /// replies as they are, data and alarms translated by this session.
    pub(super) async fn send_sealed(
        &self,
        client: &AsyncClient,
        s: &mut Session,
        m: Sealed,
        window: usize,
        live_since: i64,
    ) -> Result<(), SessionError> {
        let translate_it = s.sp.is_some()
            && (m.topic == self.topics.data() || m.topic == self.topics.for_kind(EntryKind::Alarm));
        if !translate_it {
            return self.publish(client, s, Some(m.seq), m.topic, m.payload, m.retain);
        }
        let seq = m.seq;
        let mut entries = match self.blocking(move |o| o.entries_of(seq)).await? {
            Ok(v) => v,
            Err(e @ OutboxError::Store(_)) => {
                // Not published: sent again in the next session (or set aside there).
                self.store_failed(s, &e);
                if let Some(sp) = s.sp.as_mut() {
                    *sp.parts.entry(seq).or_default() += 1;
                }
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        };
        let Some(sp) = s.sp.as_mut() else {
            return Ok(());
        };
        let historical = seq <= sp.resumed_upto;
        // Committed before this session began: backlog (what `pending` says too).
        for e in &mut entries {
            e.historical = e.kind == EntryKind::Data && e.created_ms < live_since;
        }
        let t = translate(&mut sp.edge, &entries, historical, now_ms().max(0) as u64);
        for why in &t.skipped {
            tracing::warn!(seq, "sparkplug: left out of message {seq}: {why}");
        }
        if t.parked {
            tracing::info!(seq, "sparkplug: backlog of a device without a DBIRTH in this session waits for the next session");
        }
        if sp.expect(seq, t.publishes.len(), t.parked) {
            // Report by exception filtered all of it: delivered.
            s.acked.push(seq);
            return Ok(());
        }
        sp.queue
            .extend(t.publishes.into_iter().map(|p| (Some(seq), p)));
        self.spb_drain(client, s, window)?;
        Ok(())
    }

    /// A message on a Sparkplug topic: NCMD (Rebirth), DCMD (to the remote service), STATE.
    /// `true` when it was one (the caller routes everything else).
    pub(super) fn spb_on_publish(&self, p: &rumqttc::Publish, s: &mut Session) -> bool {
        let (Some(link), Some(sp)) = (self.sparkplug.clone(), s.sp.as_mut()) else {
            return false;
        };
        let req = AckReq {
            pkid: p.pkid,
            qos: p.qos,
        };
        // With an inbox the session acks by hand; without one rumqttc already did.
        let manual = self.inbox.is_some();
        if let Some(host) = &link.primary_host {
            if state_topic(host).is_ok_and(|t| t == *p.topic) {
                match state_online(&p.payload) {
                    Some(true) => {
                        tracing::info!(host = %host, "sparkplug: primary host online");
                        sp.host_online = true;
                        if let Err(e) = self.spb_births(s) {
                            tracing::error!("sparkplug: {e}");
                            if let Some(sp) = s.sp.as_mut() {
                                sp.host_gone = true;
                            }
                        }
                    }
                    Some(false) => {
                        tracing::warn!(host = %host, "sparkplug: primary host offline");
                        sp.host_online = false;
                        if sp.born {
                            sp.host_gone = true;
                        }
                    }
                    None => tracing::warn!(host = %host, bytes = p.payload.len(),
                        "sparkplug: STATE payload without a boolean `online`: ignored"),
                }
                if manual {
                    s.acks.push_back(req);
                }
                return true;
            }
        }
        let kind = match link.edge.parse_own(&p.topic) {
            Ok(Some((t, d))) => (t, d.map(str::to_string)),
            Ok(None) => return false,
            Err(e) => {
                tracing::warn!("sparkplug: {e}: dropped");
                if manual {
                    s.acks.push_back(req);
                }
                return true;
            }
        };
        match kind {
            (MessageType::NCmd, _) => {
                let now = now_ms().max(0) as u64;
                match sp.edge.command(&p.topic, &p.payload, now) {
                    Ok(CommandOutcome::Rebirth(births)) if sp.born => {
                        tracing::info!("sparkplug: NCMD Rebirth");
                        sp.queue.extend(births.into_iter().map(|b| (None, b)));
                    }
                    Ok(CommandOutcome::Rebirth(_)) => {
                        // Births are still to come (waiting for the primary host).
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!("sparkplug: NCMD refused: {e}"),
                }
                if manual {
                    s.acks.push_back(req);
                }
            }
            (MessageType::DCmd, Some(device)) => match (&self.inbox, &s.ack_tx) {
                (Some(inbox), Some(ack_tx)) => match inbox.try_reserve() {
                    Ok(permit) => {
                        self.status.send_modify(|st| st.inbound_received += 1);
                        permit.send(
                            Inbound::new(
                                InboundKind::Dcmd,
                                p.payload.clone(),
                                now_ms(),
                                p.retain,
                                p.dup,
                                AckToken::new(ack_tx.clone(), p.pkid, p.qos),
                            )
                            .for_device(device),
                        );
                    }
                    Err(_) => {
                        tracing::warn!(device = %device, "sparkplug: DCMD not taken: the inbox is full");
                        s.busy += 1;
                        self.status.send_modify(|st| st.inbound_busy += 1);
                    }
                },
                _ => tracing::warn!(device = %device,
                        "sparkplug: DCMD dropped: no [remote] section, remote writes are off"),
            },
            _ => {
                // Our own births/data echoed (we never subscribe to them) or a malformed one.
                if manual {
                    s.acks.push_back(req);
                }
            }
        }
        true
    }

    /// The session must end: the primary host went offline after the births.
    pub(super) fn spb_host_gone(&self, s: &Session) -> Option<SessionError> {
        let sp = s.sp.as_ref()?;
        let host = self.sparkplug.as_ref()?.primary_host.clone()?;
        sp.host_gone
            .then_some(SessionError::PrimaryHostOffline { host })
    }

    /// NDATA when the node's figures (link, buffer, modem) changed (after a health publish:
    /// rate-limited like it).
    pub(super) fn spb_node_state(&self, s: &mut Session) {
        let (Some(link), Some(sp)) = (self.sparkplug.clone(), s.sp.as_mut()) else {
            return;
        };
        if !sp.born {
            return;
        }
        let state = self.node_state(&link);
        if state == sp.sent_state {
            return;
        }
        match sp.edge.node_state(state.clone(), now_ms().max(0) as u64) {
            Ok(Some(p)) => sp.queue.push_back((None, p)),
            Ok(None) => {}
            Err(e) => tracing::warn!("sparkplug: NDATA: {e}"),
        }
        sp.sent_state = state;
    }

    /// Before a clean DISCONNECT: NDEATH (the DISCONNECT suppresses the will). `false` when it
    /// could not be queued: then the caller must not DISCONNECT (the connection is dropped and
    /// the broker publishes the will), or the host would never learn the node is gone.
    pub(super) fn spb_farewell(&self, client: &AsyncClient, s: &Session) -> bool {
        let Some(sp) = &s.sp else {
            return true;
        };
        client
            .try_publish(
                sp.will.topic.clone(),
                QoS::AtLeastOnce,
                false,
                sp.will.payload.clone(),
            )
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sp() -> SpSession {
        let model = NodeModel {
            node: Vec::new(),
            devices: Vec::new(),
        };
        let state = NodeState {
            transport: "tcp".into(),
            reconnects: 0,
            buffer_depth: 0,
            modem: None,
        };
        let (edge, will) = EdgeSession::connect(
            EdgeNode::new("g", "e").unwrap(),
            model,
            None,
            state.clone(),
            1024,
            1,
        )
        .unwrap();
        SpSession {
            edge,
            will,
            queue: VecDeque::new(),
            parts: HashMap::new(),
            resumed_upto: 0,
            subscribed: false,
            host_online: true,
            born: false,
            host_gone: false,
            sent_state: state,
            carry: Arc::default(),
        }
    }

    #[test]
    fn a_message_is_acked_when_all_its_publishes_are() {
        let mut s = sp();
        // Nothing derived (report by exception): acknowledged at once.
        assert!(s.expect(1, 0, false));
        // Three publishes: only the third PUBACK acknowledges it.
        assert!(!s.expect(2, 3, false));
        assert!(!s.acked(2));
        assert!(!s.acked(2));
        assert!(s.acked(2));
        // A publish on a gasdtu topic (events, replies) was never split.
        assert!(s.acked(3));
        // Parked: its own publishes acked, the message is not (resent next session).
        assert!(!s.expect(4, 1, true));
        assert!(!s.acked(4));
        // Parked with nothing else: still not acknowledged.
        assert!(!s.expect(5, 0, true));
    }

    #[test]
    fn state_payloads_say_online_or_nothing() {
        assert_eq!(
            state_online(br#"{"online":true,"timestamp":1}"#),
            Some(true)
        );
        assert_eq!(state_online(br#"{"online":false}"#), Some(false));
        for bad in [&b"ONLINE"[..], br#"{"online":"yes"}"#, b"", br#"[1]"#] {
            assert_eq!(state_online(bad), None, "{bad:?}");
        }
    }
}
