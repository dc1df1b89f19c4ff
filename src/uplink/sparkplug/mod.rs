//! Sparkplug B (Eclipse Sparkplug 3.0) for the uplink, the pure core: the payload schema as
//! prost structs (`proto`), topics and id validation (`topic`), the metric model built from the
//! config with datatypes and stable aliases (`metrics`), the modem's health as node metrics (`modem`), the edge node's encoders, seq/bdSeq
//! counters and report-by-exception filter (`encode`), the bounded NCMD/DCMD decoder
//! (`decode`), DCMD writes as remote write commands (`dcmd`), the session that says what to
//! publish when (`node`), the largest DBIRTH per device, checked against `max_payload`
//! (`size`), and the entries of a sealed outbox message as this session's publishes
//! (`translate`). No I/O: the forwarder drives it (`uplink::forwarder::spb`, docs/sparkplug.md).

pub mod dcmd;
pub mod decode;
pub mod encode;
pub mod metrics;
pub mod modem;
pub mod node;
pub mod proto;
pub mod size;
pub mod topic;
pub mod translate;

#[cfg(test)]
mod command_tests;
#[cfg(test)]
mod dcmd_tests;
#[cfg(test)]
mod modem_tests;
#[cfg(test)]
mod node_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod translate_tests;

pub use dcmd::{dcmd_commands, dcmd_id};
pub use decode::{decode_dcmd, decode_ncmd, CommandError, NodeCommand, WriteRequest};
pub use encode::{
    dbirth, ddata, ddeath, nbirth, ndata, ndeath, next_bd_seq, EncodeError, Exceptions,
    MetricUpdate, NodeState, Seq, Update,
};
pub use metrics::{build, DeviceModel, MetricDef, MetricKind, ModelError, NodeModel, SpType};
pub use modem::ModemFigures;
pub use node::{Carry, CommandFailure, CommandOutcome, EdgeSession, Publish, SessionError};
pub use topic::{state_topic, EdgeNode, IdError, MessageType, TopicError};
pub use translate::{translate, updates_of, Translated};
