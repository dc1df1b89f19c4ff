//! Sparkplug B topic names (`spBv1.0/<group>/<type>/<edge>[/<device>]`) and the validation of
//! the ids that go into them: group, edge node and device ids are non-empty UTF-8 of at most
//! `MAX_ID` bytes with no `/`, `+`, `#` (MQTT levels and wildcards) and no control characters.
//! Pure: builds and parses strings, nothing else.

use std::fmt;

/// The Sparkplug B namespace, the first topic level.
pub const NAMESPACE: &str = "spBv1.0";

/// Longest group, edge node or device id, in bytes. The spec sets no bound; 64 keeps a topic
/// well under MQTT limits and NB-IoT budgets.
pub const MAX_ID: usize = 64;

/// What is wrong with an id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("must not be empty")]
    Empty,
    #[error("{0} bytes long: at most {MAX_ID} bytes")]
    TooLong(usize),
    #[error("contains {0:?}: Sparkplug ids cannot hold '/', '+' or '#'")]
    Reserved(char),
    #[error("contains a control character")]
    Control,
}

/// Checks one group, edge node or device id.
pub fn validate_id(id: &str) -> Result<(), IdError> {
    if id.is_empty() {
        return Err(IdError::Empty);
    }
    if id.len() > MAX_ID {
        return Err(IdError::TooLong(id.len()));
    }
    if let Some(c) = id.chars().find(|c| matches!(c, '/' | '+' | '#')) {
        return Err(IdError::Reserved(c));
    }
    if id.contains(char::is_control) {
        return Err(IdError::Control);
    }
    Ok(())
}

/// The message types of an edge node and its devices (STATE is the host's, not ours).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageType {
    NBirth,
    NDeath,
    NData,
    NCmd,
    DBirth,
    DDeath,
    DData,
    DCmd,
}

impl MessageType {
    pub const ALL: [MessageType; 8] = [
        MessageType::NBirth,
        MessageType::NDeath,
        MessageType::NData,
        MessageType::NCmd,
        MessageType::DBirth,
        MessageType::DDeath,
        MessageType::DData,
        MessageType::DCmd,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            MessageType::NBirth => "NBIRTH",
            MessageType::NDeath => "NDEATH",
            MessageType::NData => "NDATA",
            MessageType::NCmd => "NCMD",
            MessageType::DBirth => "DBIRTH",
            MessageType::DDeath => "DDEATH",
            MessageType::DData => "DDATA",
            MessageType::DCmd => "DCMD",
        }
    }

    /// True for the device-level types, whose topics end with a device id.
    pub fn is_device(self) -> bool {
        matches!(
            self,
            MessageType::DBirth | MessageType::DDeath | MessageType::DData | MessageType::DCmd
        )
    }

    pub fn parse(s: &str) -> Option<MessageType> {
        MessageType::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

impl fmt::Display for MessageType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a topic could not be built or parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    #[error("group id {id:?}: {why}")]
    Group { id: String, why: IdError },
    #[error("edge node id {id:?}: {why}")]
    Edge { id: String, why: IdError },
    #[error("device id {id:?}: {why}")]
    Device { id: String, why: IdError },
    #[error("{0} is a device message and needs a device id")]
    NeedsDevice(MessageType),
    #[error("{0} is a node message and takes no device id")]
    NoDevice(MessageType),
    #[error("not a Sparkplug B topic: {0}")]
    NotSparkplug(String),
}

/// The ids of one edge node, validated once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdgeNode {
    group: String,
    edge: String,
}

impl EdgeNode {
    pub fn new(group: &str, edge: &str) -> Result<EdgeNode, TopicError> {
        validate_id(group).map_err(|why| TopicError::Group {
            id: group.to_string(),
            why,
        })?;
        validate_id(edge).map_err(|why| TopicError::Edge {
            id: edge.to_string(),
            why,
        })?;
        Ok(EdgeNode {
            group: group.to_string(),
            edge: edge.to_string(),
        })
    }

    pub fn group(&self) -> &str {
        &self.group
    }

    pub fn edge(&self) -> &str {
        &self.edge
    }

    /// The topic of a node-level message.
    pub fn node_topic(&self, t: MessageType) -> Result<String, TopicError> {
        if t.is_device() {
            return Err(TopicError::NeedsDevice(t));
        }
        Ok(format!("{NAMESPACE}/{}/{t}/{}", self.group, self.edge))
    }

    /// The topic of a device-level message.
    pub fn device_topic(&self, t: MessageType, device: &str) -> Result<String, TopicError> {
        if !t.is_device() {
            return Err(TopicError::NoDevice(t));
        }
        validate_id(device).map_err(|why| TopicError::Device {
            id: device.to_string(),
            why,
        })?;
        Ok(format!(
            "{NAMESPACE}/{}/{t}/{}/{device}",
            self.group, self.edge
        ))
    }

    /// The filters an edge node subscribes to: its NCMD and every DCMD of its devices.
    pub fn command_filters(&self) -> [String; 2] {
        [
            format!("{NAMESPACE}/{}/NCMD/{}", self.group, self.edge),
            format!("{NAMESPACE}/{}/DCMD/{}/+", self.group, self.edge),
        ]
    }

    /// Parses a topic addressed to this edge node: `Some((type, device))`, `None` when it is
    /// another node's (or not Sparkplug at all), an error when it is ours but malformed.
    pub fn parse_own<'t>(
        &self,
        topic: &'t str,
    ) -> Result<Option<(MessageType, Option<&'t str>)>, TopicError> {
        let mut levels = topic.split('/');
        let (Some(ns), Some(group), Some(kind), Some(edge)) =
            (levels.next(), levels.next(), levels.next(), levels.next())
        else {
            return Ok(None);
        };
        if ns != NAMESPACE || group != self.group || edge != self.edge {
            return Ok(None);
        }
        let Some(t) = MessageType::parse(kind) else {
            return Err(TopicError::NotSparkplug(topic.to_string()));
        };
        let device = levels.next();
        if levels.next().is_some() {
            return Err(TopicError::NotSparkplug(topic.to_string()));
        }
        match (t.is_device(), device) {
            (true, None) => Err(TopicError::NeedsDevice(t)),
            (false, Some(_)) => Err(TopicError::NoDevice(t)),
            (true, Some(d)) => {
                validate_id(d).map_err(|why| TopicError::Device {
                    id: d.to_string(),
                    why,
                })?;
                Ok(Some((t, Some(d))))
            }
            (false, None) => Ok(Some((t, None))),
        }
    }
}

/// The STATE topic of a primary host application (Sparkplug 3.0: `spBv1.0/STATE/<host id>`).
pub fn state_topic(host_id: &str) -> Result<String, IdError> {
    validate_id(host_id)?;
    Ok(format!("{NAMESPACE}/STATE/{host_id}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_checked() {
        let long = "x".repeat(MAX_ID + 1);
        let cases: [(&str, Result<(), IdError>); 8] = [
            ("gw-1", Ok(())),
            ("Station Nord", Ok(())),
            (&long[..MAX_ID], Ok(())),
            ("", Err(IdError::Empty)),
            (&long, Err(IdError::TooLong(MAX_ID + 1))),
            ("a/b", Err(IdError::Reserved('/'))),
            ("a+", Err(IdError::Reserved('+'))),
            ("a\u{7}b", Err(IdError::Control)),
        ];
        for (id, want) in cases {
            assert_eq!(validate_id(id), want, "{id:?}");
        }
        assert_eq!(validate_id("#"), Err(IdError::Reserved('#')));
    }

    #[test]
    fn topics_are_built_per_type() {
        let n = EdgeNode::new("gas", "gw-1").unwrap();
        let node = [
            (MessageType::NBirth, "spBv1.0/gas/NBIRTH/gw-1"),
            (MessageType::NDeath, "spBv1.0/gas/NDEATH/gw-1"),
            (MessageType::NData, "spBv1.0/gas/NDATA/gw-1"),
            (MessageType::NCmd, "spBv1.0/gas/NCMD/gw-1"),
        ];
        for (t, want) in node {
            assert_eq!(n.node_topic(t).unwrap(), want);
            assert_eq!(n.device_topic(t, "fc1"), Err(TopicError::NoDevice(t)));
            assert_eq!(n.parse_own(want).unwrap(), Some((t, None)));
        }
        let dev = [
            (MessageType::DBirth, "spBv1.0/gas/DBIRTH/gw-1/fc1"),
            (MessageType::DDeath, "spBv1.0/gas/DDEATH/gw-1/fc1"),
            (MessageType::DData, "spBv1.0/gas/DDATA/gw-1/fc1"),
            (MessageType::DCmd, "spBv1.0/gas/DCMD/gw-1/fc1"),
        ];
        for (t, want) in dev {
            assert_eq!(n.device_topic(t, "fc1").unwrap(), want);
            assert_eq!(n.node_topic(t), Err(TopicError::NeedsDevice(t)));
            assert_eq!(n.parse_own(want).unwrap(), Some((t, Some("fc1"))));
        }
        assert_eq!(
            n.command_filters(),
            [
                "spBv1.0/gas/NCMD/gw-1".to_string(),
                "spBv1.0/gas/DCMD/gw-1/+".to_string()
            ]
        );
        assert_eq!(state_topic("scada").unwrap(), "spBv1.0/STATE/scada");
        assert_eq!(state_topic("a/b"), Err(IdError::Reserved('/')));
    }

    #[test]
    fn bad_ids_and_foreign_topics() {
        assert!(matches!(
            EdgeNode::new("g#", "e"),
            Err(TopicError::Group {
                why: IdError::Reserved('#'),
                ..
            })
        ));
        assert!(matches!(
            EdgeNode::new("g", ""),
            Err(TopicError::Edge {
                why: IdError::Empty,
                ..
            })
        ));
        let n = EdgeNode::new("gas", "gw-1").unwrap();
        assert!(matches!(
            n.device_topic(MessageType::DData, "a+b"),
            Err(TopicError::Device {
                why: IdError::Reserved('+'),
                ..
            })
        ));
        // (topic, parse result): other nodes are None, ours but malformed is an error.
        type Parsed<'a> = Result<Option<(MessageType, Option<&'a str>)>, ()>;
        let cases: [(&str, Parsed); 9] = [
            ("spBv1.0/gas/NCMD/gw-2", Ok(None)),
            ("spBv1.0/water/NCMD/gw-1", Ok(None)),
            ("spAv1.0/gas/NCMD/gw-1", Ok(None)),
            ("spBv1.0/gas", Ok(None)),
            ("spBv1.0/gas/XCMD/gw-1", Err(())),
            ("spBv1.0/gas/DCMD/gw-1", Err(())),
            ("spBv1.0/gas/NCMD/gw-1/fc1", Err(())),
            ("spBv1.0/gas/DCMD/gw-1/fc1/x", Err(())),
            ("spBv1.0/gas/DCMD/gw-1/", Err(())),
        ];
        for (topic, want) in cases {
            assert_eq!(n.parse_own(topic).map_err(drop), want, "{topic}");
        }
    }
}
