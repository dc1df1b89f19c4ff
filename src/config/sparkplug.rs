//! `[uplink] protocol` and the `[uplink.sparkplug]` table: which MQTT protocol the uplink
//! speaks (`"gasdtu"`, the documented topics of docs/mqtt.md, or `"sparkplug"`, Sparkplug B of
//! docs/sparkplug.md) and the Sparkplug ids (group, edge node defaulting to the gateway id,
//! optional primary host), each checked as a Sparkplug id with its key path and line:column.
//! Pure: reads the spanned document only.

use super::diag::Diags;
use super::doc::{Field, Section};
use crate::uplink::sparkplug::topic::validate_id;

/// `[uplink.sparkplug]`, present exactly when `[uplink] protocol = "sparkplug"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SparkplugConfig {
    /// The Sparkplug group id (required).
    pub group_id: String,
    /// The edge node id, default the gateway id.
    pub edge_node_id: String,
    /// The primary host application whose STATE the node follows (optional).
    pub primary_host_id: Option<String>,
}

/// One Sparkplug id key of `[uplink.sparkplug]`.
fn id_key(d: &mut Diags<'_>, sec: &mut Section<'_, '_>, key: &str) -> Field<String> {
    match sec.string(d, key) {
        Field::Value(s, sp) => match validate_id(&s) {
            Ok(()) => Field::Value(s, sp),
            Err(why) => {
                d.error(
                    &sec.key_path(key),
                    Some(sp),
                    format!("{:?}: {why}", super::escape(&s)),
                );
                Field::Invalid
            }
        },
        f => f,
    }
}

/// Reads `protocol` and `sparkplug` from `[uplink]`: `Ok(None)` for the gasdtu protocol,
/// `Ok(Some(..))` for Sparkplug, `Err(())` after reporting errors.
pub(crate) fn parse_protocol(
    d: &mut Diags<'_>,
    up: &mut Section<'_, '_>,
    gw_id: &str,
) -> Result<Option<SparkplugConfig>, ()> {
    let sparkplug = match up.string(d, "protocol") {
        Field::Value(s, sp) => match s.as_str() {
            "gasdtu" => Some(false),
            "sparkplug" => Some(true),
            _ => {
                d.error(
                    &up.key_path("protocol"),
                    Some(sp),
                    format!(
                        "unknown protocol {:?}: use \"gasdtu\" or \"sparkplug\"",
                        super::escape(&s)
                    ),
                );
                None
            }
        },
        Field::Absent => Some(false),
        Field::Invalid => None,
    };
    let protocol_span = up.value_span("protocol");
    let table = up.table(d, "sparkplug");
    let table_span = table.span();
    match (sparkplug, table) {
        (None, _) | (_, Field::Invalid) => Err(()),
        (Some(false), Field::Value(sec, _)) => {
            d.warn(
                &sec.path,
                table_span,
                "only used with protocol = \"sparkplug\" (the uplink speaks gasdtu's own topics)",
            );
            // Keys are not read: no unknown-key errors for an unused table.
            Ok(None)
        }
        (Some(false), Field::Absent) => Ok(None),
        (Some(true), Field::Absent) => {
            d.error(
                &up.key_path("sparkplug"),
                protocol_span,
                "protocol = \"sparkplug\" needs an [uplink.sparkplug] table with at least group_id",
            );
            Err(())
        }
        (Some(true), Field::Value(mut sec, _)) => {
            let group = id_key(d, &mut sec, "group_id");
            let group = sec.required(d, "group_id", "the Sparkplug group id", group);
            let edge = id_key(d, &mut sec, "edge_node_id").or(gw_id.to_string());
            let host = id_key(d, &mut sec, "primary_host_id").opt();
            sec.finish(d, |_| None);
            match (group, edge, host) {
                (Field::Value(group_id, _), Some(edge_node_id), Ok(primary_host_id)) => {
                    Ok(Some(SparkplugConfig {
                        group_id,
                        edge_node_id,
                        primary_host_id,
                    }))
                }
                _ => Err(()),
            }
        }
    }
}
