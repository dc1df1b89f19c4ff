//! The `check` warning for a 16-bit value (u16, i16, bcd16) decoded with a byte-swapping
//! order (BADC, DCBA): those orders turn the two bytes of its single register around, which is
//! almost never what a meter means. The warning names the point and where its order came from
//! (`merge::OrderFrom`). Bits of a register ignore the order and are not warned about. No I/O.

use std::ops::Range;

use crate::model::DataType;

use super::diag::Diags;
use super::doc::join;
use super::merge::{BaseKind, OrderFrom, PointOrigin, Written};
use super::points::PointDraft;

/// The types whose one register a byte-swapping order turns around.
fn one_register_value(t: DataType) -> bool {
    matches!(t, DataType::U16 | DataType::I16 | DataType::Bcd16)
}

/// Warn about 16-bit values decoded with BADC or DCBA: those orders swap the two bytes of the
/// one register, which is almost never what a meter means. `device_order_span` places the
/// warning when the device's `order` is the cause.
pub(crate) fn warn_byte_swapped_16bit(
    d: &mut Diags<'_>,
    prefix: &str,
    device_span: Option<Range<usize>>,
    device_order_span: Option<Range<usize>>,
    points: &[PointDraft],
    origins: &[PointOrigin],
    device_base: Option<&BaseKind>,
) {
    for p in points {
        if !one_register_value(p.spec.data_type) || !p.spec.order.swaps_bytes() {
            continue;
        }
        let origin = origins
            .iter()
            .find(|o| o.name == p.spec.name && !o.computed);
        let base = origin.and_then(|o| o.base.clone()).or(device_base.cloned());
        let from = origin.and_then(|o| o.order_from);
        let point_path = join(&join(prefix, "points"), &p.spec.name);
        let base_name = |b: &Option<BaseKind>| match b {
            Some(b) => b.to_string(),
            None => "its base".to_string(),
        };
        // A point the device wrote (an override or its own) is placed at its entry.
        let written_here = origin
            .map(|o| o.keys.iter().any(|(_, w)| *w != Written::Base))
            .unwrap_or(false);
        let here = if written_here {
            p.span.clone()
        } else {
            device_span.clone()
        };
        let (path, span, whence) = match from {
            Some(OrderFrom::Point(Written::Base)) => {
                (point_path, here, format!("pinned by {}", base_name(&base)))
            }
            Some(OrderFrom::Point(_)) => (
                join(&point_path, "order"),
                p.span.clone(),
                "set on the point".to_string(),
            ),
            Some(OrderFrom::Device) => (
                join(prefix, "order"),
                device_order_span.clone(),
                "inherited from the device's `order`".to_string(),
            ),
            Some(OrderFrom::BaseDefault) => (
                point_path,
                here,
                format!("inherited from the default order of {}", base_name(&base)),
            ),
            _ => (point_path, p.span.clone(), "set".to_string()),
        };
        d.warn(
            &path,
            span,
            format!(
                "{} point `{}` decodes with order {} ({whence}): {} swaps the two bytes of its single register (0x1234 reads as 0x3412), almost always a mistake for a 16-bit value; set order = \"ABCD\" on the point",
                p.spec.data_type, p.spec.name, p.spec.order, p.spec.order
            ),
        );
    }
}
