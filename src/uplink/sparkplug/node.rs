//! The edge node's session, pure: what to publish, in which order, for each thing that happens
//! to a Sparkplug edge node (connect, subscribed, readings, a device going offline, a command,
//! node figures changing). It owns the bdSeq of the connect (the caller persists it before
//! CONNECT), the seq counter, the last known state of every metric (for rebirths) and the
//! report-by-exception filter, and splits DDATA at `max_payload`. The forwarder
//! (`uplink::forwarder::spb`) drives it and publishes what it returns; it does no I/O and reads no clock.

use std::collections::{BTreeSet, HashMap};

use super::decode::{decode_dcmd, decode_ncmd, CommandError, NodeCommand, WriteRequest};
use super::encode::{
    dbirth, ddata, ddeath, nbirth, ndata, ndeath, next_bd_seq, EncodeError, Exceptions,
    MetricUpdate, NodeState, Seq,
};
use super::metrics::NodeModel;
use super::topic::{EdgeNode, MessageType, TopicError};

/// One MQTT publish the node asks for (QoS 1, not retained: docs/sparkplug.md).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    pub topic: String,
    pub payload: Vec<u8>,
}

/// Why the session could not produce its messages.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SessionError {
    #[error(transparent)]
    Encode(#[from] EncodeError),
    #[error(transparent)]
    Topic(#[from] TopicError),
    #[error("unknown device {0:?}")]
    UnknownDevice(String),
    #[error("device {0:?} has no DBIRTH in this session: its backlog waits for the birth")]
    NotBorn(String),
    #[error("{what} is {bytes} bytes, over max_payload ({max}); a birth cannot be split: raise uplink.max_payload")]
    TooLarge {
        what: String,
        bytes: usize,
        max: usize,
    },
}

/// What a command asks of the caller.
#[derive(Debug, Clone, PartialEq)]
pub enum CommandOutcome {
    /// Not addressed to this node (or not a command): nothing to do.
    Ignored,
    /// NCMD Rebirth: publish these (NBIRTH and every DBIRTH again).
    Rebirth(Vec<Publish>),
    /// DCMD: run these writes through the command path; the result shows in the next DDATA.
    Writes(Vec<WriteRequest>),
}

/// What one session knows that the next one (same process) should start from: the last known
/// state of every metric (so its births carry values) and the devices known offline (no
/// DBIRTH until they read again).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Carry {
    current: HashMap<String, HashMap<String, MetricUpdate>>,
    offline: BTreeSet<String>,
}

/// One MQTT session of the edge node.
#[derive(Debug)]
pub struct EdgeSession {
    edge: EdgeNode,
    model: NodeModel,
    bd_seq: u8,
    seq: Seq,
    max_payload: usize,
    state: NodeState,
    /// Latest live state per device and metric (what a birth carries).
    current: HashMap<String, HashMap<String, MetricUpdate>>,
    /// Devices whose DBIRTH was published in this session and no DDEATH since.
    born: BTreeSet<String>,
    /// Devices known offline (no DBIRTH until they read again).
    offline: BTreeSet<String>,
    exceptions: Exceptions,
}

impl EdgeSession {
    /// A new session: the bdSeq for this connect (persist it before CONNECT) and the will to
    /// register (NDEATH with that bdSeq).
    pub fn connect(
        edge: EdgeNode,
        model: NodeModel,
        previous_bd_seq: Option<u8>,
        state: NodeState,
        max_payload: usize,
        now_ms: u64,
    ) -> Result<(EdgeSession, Publish), SessionError> {
        let bd_seq = next_bd_seq(previous_bd_seq);
        let will = Publish {
            topic: edge.node_topic(MessageType::NDeath)?,
            payload: ndeath(bd_seq, now_ms),
        };
        let s = EdgeSession {
            edge,
            model,
            bd_seq,
            seq: Seq::new(),
            max_payload,
            state,
            current: HashMap::new(),
            born: BTreeSet::new(),
            offline: BTreeSet::new(),
            exceptions: Exceptions::new(),
        };
        Ok((s, will))
    }

    #[cfg(test)]
    pub(super) fn max_payload_for_tests(&mut self, max: usize) {
        self.max_payload = max;
    }

    pub fn bd_seq(&self) -> u8 {
        self.bd_seq
    }

    /// What the next session of this process starts from (`resume`).
    pub fn carry(&self) -> Carry {
        Carry {
            current: self.current.clone(),
            offline: self.offline.clone(),
        }
    }

    /// Start from what an earlier session knew (before `births`): metrics and devices the
    /// model no longer has are dropped.
    pub fn resume(&mut self, c: Carry) {
        let model = &self.model;
        self.current = c
            .current
            .into_iter()
            .filter_map(|(d, m)| {
                let dev = model.device(&d)?;
                let m: HashMap<_, _> = m
                    .into_iter()
                    .filter(|(n, _)| dev.by_name(n).is_some())
                    .collect();
                Some((d, m))
            })
            .collect();
        self.offline = c
            .offline
            .into_iter()
            .filter(|d| model.device(d).is_some())
            .collect();
    }

    /// The metric model this session describes.
    pub fn model(&self) -> &NodeModel {
        &self.model
    }

    /// The latest read time of the device's known state (UTC ms), if any.
    pub fn last_read_ms(&self, device: &str) -> Option<u64> {
        self.current.get(device)?.values().map(|u| u.at_ms).max()
    }

    /// The device went offline in this session (DDEATH) and has not read since.
    pub fn is_offline(&self, device: &str) -> bool {
        self.offline.contains(device)
    }

    /// Keep `updates` as the device's known state without publishing anything (an alarm of a
    /// dead device: its next DBIRTH carries it).
    pub fn remember(
        &mut self,
        device: &str,
        updates: Vec<MetricUpdate>,
    ) -> Result<(), SessionError> {
        let dev = self
            .model
            .device(device)
            .ok_or_else(|| SessionError::UnknownDevice(device.to_string()))?;
        for u in &updates {
            if dev.by_name(&u.name).is_none() {
                return Err(EncodeError::UnknownMetric {
                    device: device.to_string(),
                    name: u.name.clone(),
                }
                .into());
            }
        }
        let cur = self.current.entry(device.to_string()).or_default();
        for u in updates {
            cur.insert(u.name.clone(), u);
        }
        Ok(())
    }

    /// The subscriptions to make before `births`: NCMD and DCMD of this node.
    pub fn subscriptions(&self) -> [String; 2] {
        self.edge.command_filters()
    }

    fn check_size(&self, what: String, payload: Vec<u8>) -> Result<Vec<u8>, SessionError> {
        if payload.len() > self.max_payload {
            return Err(SessionError::TooLarge {
                what,
                bytes: payload.len(),
                max: self.max_payload,
            });
        }
        Ok(payload)
    }

    fn device_birth(&mut self, device: &str, now_ms: u64) -> Result<Publish, SessionError> {
        let dev = self
            .model
            .device(device)
            .ok_or_else(|| SessionError::UnknownDevice(device.to_string()))?;
        let cur: Vec<MetricUpdate> = self
            .current
            .get(device)
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default();
        let payload = dbirth(dev, &cur, now_ms, &mut self.seq)?;
        let payload = self.check_size(format!("DBIRTH of {device}"), payload)?;
        self.exceptions.born(device, &cur);
        self.born.insert(device.to_string());
        Ok(Publish {
            topic: self.edge.device_topic(MessageType::DBirth, device)?,
            payload,
        })
    }

    /// After the subscriptions are granted (and on Rebirth): NBIRTH (seq 0), then a DBIRTH for
    /// every device not known offline.
    pub fn births(&mut self, now_ms: u64) -> Result<Vec<Publish>, SessionError> {
        let nb = nbirth(&self.model, self.bd_seq, &self.state, now_ms, &mut self.seq)?;
        let mut out = vec![Publish {
            topic: self.edge.node_topic(MessageType::NBirth)?,
            payload: self.check_size("NBIRTH".into(), nb)?,
        }];
        self.born.clear();
        let devices: Vec<String> = self
            .model
            .devices
            .iter()
            .map(|d| d.device.clone())
            .filter(|d| !self.offline.contains(d))
            .collect();
        for d in devices {
            out.push(self.device_birth(&d, now_ms)?);
        }
        Ok(out)
    }

    /// Readings of one device. Live ones update the known state and go out by exception (a
    /// device that was offline or never born gets its DBIRTH instead, carrying them);
    /// `historical` ones (backlog after an outage) go out as they are, flagged, after the
    /// births, without touching the live state. DDATA is split to stay within `max_payload`.
    pub fn readings(
        &mut self,
        device: &str,
        updates: Vec<MetricUpdate>,
        historical: bool,
        now_ms: u64,
    ) -> Result<Vec<Publish>, SessionError> {
        let dev = self
            .model
            .device(device)
            .ok_or_else(|| SessionError::UnknownDevice(device.to_string()))?
            .clone();
        let changed: Vec<(MetricUpdate, bool)> = if historical {
            // A host resolves aliases through the birth of this session.
            if !self.born.contains(device) {
                return Err(SessionError::NotBorn(device.to_string()));
            }
            updates.into_iter().map(|u| (u, true)).collect()
        } else {
            let cur = self.current.entry(device.to_string()).or_default();
            for u in &updates {
                if dev.by_name(&u.name).is_none() {
                    return Err(EncodeError::UnknownMetric {
                        device: device.to_string(),
                        name: u.name.clone(),
                    }
                    .into());
                }
                cur.insert(u.name.clone(), u.clone());
            }
            self.offline.remove(device);
            if !self.born.contains(device) {
                return Ok(vec![self.device_birth(device, now_ms)?]);
            }
            self.exceptions.changed(device, updates)
        };
        let topic = self.edge.device_topic(MessageType::DData, device)?;
        let mut out = Vec::new();
        let mut chunk: Vec<(MetricUpdate, bool)> = Vec::new();
        for u in changed {
            chunk.push(u);
            // Size of the chunk with this metric, on a scratch counter: seq is only consumed
            // by messages that are kept.
            let mut probe = self.seq.clone();
            let bytes = ddata(&dev, &chunk, historical, now_ms, &mut probe)?;
            if bytes.len() > self.max_payload {
                let Some(last) = chunk.pop() else { continue };
                if chunk.is_empty() {
                    return Err(SessionError::TooLarge {
                        what: format!("metric {} of {device}", last.0.name),
                        bytes: bytes.len(),
                        max: self.max_payload,
                    });
                }
                let payload = ddata(&dev, &chunk, historical, now_ms, &mut self.seq)?;
                out.push(Publish {
                    topic: topic.clone(),
                    payload,
                });
                chunk = vec![last];
            }
        }
        if !chunk.is_empty() {
            let payload = ddata(&dev, &chunk, historical, now_ms, &mut self.seq)?;
            let payload = self.check_size(format!("DDATA of {device}"), payload)?;
            out.push(Publish { topic, payload });
        }
        Ok(out)
    }

    /// A device went offline: DDEATH once (none if it was not born in this session).
    pub fn device_offline(
        &mut self,
        device: &str,
        now_ms: u64,
    ) -> Result<Option<Publish>, SessionError> {
        if self.model.device(device).is_none() {
            return Err(SessionError::UnknownDevice(device.to_string()));
        }
        self.offline.insert(device.to_string());
        self.exceptions.died(device);
        if !self.born.remove(device) {
            return Ok(None);
        }
        Ok(Some(Publish {
            topic: self.edge.device_topic(MessageType::DDeath, device)?,
            payload: ddeath(now_ms, &mut self.seq),
        }))
    }

    /// The node's figures changed: NDATA with what differs, if anything.
    pub fn node_state(
        &mut self,
        state: NodeState,
        now_ms: u64,
    ) -> Result<Option<Publish>, SessionError> {
        let p = ndata(&self.model, &self.state, &state, now_ms, &mut self.seq)?;
        self.state = state;
        match p {
            None => Ok(None),
            Some(payload) => Ok(Some(Publish {
                topic: self.edge.node_topic(MessageType::NData)?,
                payload,
            })),
        }
    }

    /// An incoming message on one of the subscriptions.
    pub fn command(
        &mut self,
        topic: &str,
        payload: &[u8],
        now_ms: u64,
    ) -> Result<CommandOutcome, CommandFailure> {
        match self.edge.parse_own(topic).map_err(CommandFailure::Topic)? {
            Some((MessageType::NCmd, None)) => {
                let cmds = decode_ncmd(&self.model, payload).map_err(CommandFailure::Command)?;
                if cmds.contains(&NodeCommand::Rebirth) {
                    let births = self.births(now_ms).map_err(CommandFailure::Session)?;
                    return Ok(CommandOutcome::Rebirth(births));
                }
                Ok(CommandOutcome::Ignored)
            }
            Some((MessageType::DCmd, Some(device))) => Ok(CommandOutcome::Writes(
                decode_dcmd(&self.model, device, payload).map_err(CommandFailure::Command)?,
            )),
            _ => Ok(CommandOutcome::Ignored),
        }
    }
}

/// Why a command was not carried out.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CommandFailure {
    #[error("command topic: {0}")]
    Topic(TopicError),
    #[error("command refused: {0}")]
    Command(CommandError),
    #[error("rebirth failed: {0}")]
    Session(SessionError),
}
