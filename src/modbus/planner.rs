//! The pure request planner: coalesces a device's points into the fewest Modbus read
//! transactions. Per table, points are sorted by address and merged greedily while the merged
//! block stays within the device's max block size (never above the protocol's 125 registers /
//! 2000 bits) and the hole between neighbours stays within the device's max gap. For intervals
//! on a line under these two constraints the greedy sweep is optimal (an exchange argument: the
//! greedy block always ends at least as far right as any other plan's first block). No I/O.

use thiserror::Error;

use crate::model::{PointSpec, Table};

/// Per-device limits on a single read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most registers (or bits, for bit tables, where the spec limit is 2000) one read may ask
    /// for. Values above the protocol limit are clamped to it.
    pub max_registers: u16,
    /// Largest hole of unused registers a block may bridge.
    pub max_gap: u16,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_registers: 125,
            max_gap: 10,
        }
    }
}

impl Limits {
    /// The effective block limit for `table`: the device limit (at most 125) for registers;
    /// for bit tables 2000 bits, unless the device limit was lowered below 125, in which case
    /// that number is taken as a bit count too (a meter that rejects long reads is assumed to
    /// reject long bit reads as well).
    pub fn max_for(&self, table: Table) -> u16 {
        if table.is_bits() {
            if self.max_registers >= 125 {
                2000
            } else {
                self.max_registers.max(1)
            }
        } else {
            self.max_registers.clamp(1, 125)
        }
    }
}

/// One read transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    pub table: Table,
    pub start: u16,
    pub count: u16,
    /// Indices into the point slice given to `plan`, in address order.
    pub points: Vec<usize>,
}

impl Block {
    /// Offset of `point` inside this block's returned registers.
    pub fn offset_of(&self, point: &PointSpec) -> usize {
        (point.address - self.start) as usize
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PlanError {
    #[error("point {point} needs {width} registers, more than the block limit of {limit}")]
    TooWide {
        point: String,
        width: u16,
        limit: u16,
    },
    #[error("point {point} at address {address} with width {width} runs past address 65535")]
    PastEnd {
        point: String,
        address: u16,
        width: u16,
    },
}

/// Plan the reads for `points`. Blocks come out ordered by table, then address.
pub fn plan(points: &[PointSpec], limits: Limits) -> Result<Vec<Block>, PlanError> {
    let mut idx: Vec<usize> = (0..points.len()).collect();
    idx.sort_by_key(|&i| (points[i].table, points[i].address, points[i].width()));
    let mut blocks: Vec<Block> = Vec::new();
    for i in idx {
        let p = &points[i];
        let width = p.width();
        let limit = limits.max_for(p.table);
        if width > limit {
            return Err(PlanError::TooWide {
                point: p.name.clone(),
                width,
                limit,
            });
        }
        let end = p.address as u32 + width as u32; // exclusive
        if end > 65536 {
            return Err(PlanError::PastEnd {
                point: p.name.clone(),
                address: p.address,
                width,
            });
        }
        if let Some(b) = blocks.last_mut() {
            let b_end = b.start as u32 + b.count as u32;
            let gap = (p.address as u32).saturating_sub(b_end);
            let new_end = end.max(b_end);
            if b.table == p.table
                && gap <= limits.max_gap as u32
                && new_end - b.start as u32 <= limit as u32
            {
                b.count = (new_end - b.start as u32) as u16;
                b.points.push(i);
                continue;
            }
        }
        blocks.push(Block {
            table: p.table,
            start: p.address,
            count: width,
            points: vec![i],
        });
    }
    Ok(blocks)
}

/// Bytes on the wire for one RTU read transaction of `block`: the request frame
/// (unit, function, start, count, CRC = 8 bytes) and a normal response (unit, function, byte
/// count, data, CRC).
pub fn rtu_frame_bytes(block: &Block) -> (u32, u32) {
    let data = if block.table.is_bits() {
        (block.count as u32).div_ceil(8)
    } else {
        block.count as u32 * 2
    };
    (8, 5 + data)
}

/// Theoretical time one poll of `blocks` occupies an RTU line: every character costs
/// `bits_per_char` bit times, every frame is followed by the 3.5-character silence the spec
/// requires (1.75 ms fixed above 19200 baud), and the master keeps `turnaround` between
/// transactions. Device processing time is not included (it is unknown until measured).
pub fn rtu_wire_time(
    blocks: &[Block],
    baud: u32,
    bits_per_char: u32,
    turnaround: std::time::Duration,
) -> std::time::Duration {
    let baud = baud.max(1) as f64;
    let char_s = bits_per_char as f64 / baud;
    let silence_s = if baud > 19200.0 {
        0.00175
    } else {
        3.5 * char_s
    };
    let mut total = 0.0;
    for b in blocks {
        let (req, resp) = rtu_frame_bytes(b);
        total += (req + resp) as f64 * char_s + 2.0 * silence_s + turnaround.as_secs_f64();
    }
    std::time::Duration::from_secs_f64(total)
}

#[cfg(test)]
mod tests {
    //! Each row: limits, the points (table, address, type) in the order the device lists
    //! them, and the blocks expected as (table, start, count, point indices).

    use std::time::Duration;

    use super::*;
    use crate::model::{DataType as T, Table, WordOrder};

    const C: Table = Table::Coil;
    const D: Table = Table::DiscreteInput;
    const I: Table = Table::InputRegister;
    const H: Table = Table::HoldingRegister;

    fn points(spec: &[(Table, u16, T)]) -> Vec<PointSpec> {
        spec.iter()
            .enumerate()
            .map(|(n, &(table, address, data_type))| PointSpec {
                name: format!("p{n}"),
                table,
                address,
                data_type,
                order: WordOrder::Abcd,
                scale: 1.0,
                offset: 0.0,
                unit: None,
                writable: false,
                scale_from: None,
                publish: true,
            })
            .collect()
    }

    fn lim(max_registers: u16, max_gap: u16) -> Limits {
        Limits {
            max_registers,
            max_gap,
        }
    }

    /// (table, address, type) of one point.
    type Pt = (Table, u16, T);
    type Row = (
        &'static str,
        Limits,
        Vec<Pt>,
        Vec<(Table, u16, u16, Vec<usize>)>,
    );

    #[rustfmt::skip]
    fn rows() -> Vec<Row> {
        vec![
            ("empty", lim(125, 10), vec![], vec![]),
            ("contiguous points merge", lim(125, 10),
                vec![(H, 0, T::U16), (H, 1, T::U16), (H, 2, T::F32)],
                vec![(H, 0, 4, vec![0, 1, 2])]),
            ("gap of exactly max_gap is bridged", lim(125, 10),
                vec![(H, 0, T::U16), (H, 11, T::U16)],
                vec![(H, 0, 12, vec![0, 1])]),
            ("gap one over max_gap splits", lim(125, 10),
                vec![(H, 0, T::U16), (H, 12, T::U16)],
                vec![(H, 0, 1, vec![0]), (H, 12, 1, vec![1])]),
            ("max_gap 0 merges only adjacent points", lim(125, 0),
                vec![(H, 0, T::U16), (H, 1, T::U16), (H, 3, T::U16)],
                vec![(H, 0, 2, vec![0, 1]), (H, 3, 1, vec![2])]),
            ("gap is measured from the block end, not the previous point", lim(125, 10),
                vec![(H, 0, T::U64), (H, 1, T::U16), (H, 14, T::U16)],
                vec![(H, 0, 15, vec![0, 1, 2])]),
            ("max_registers 16: a block ending at 16 fits", lim(16, 20),
                vec![(H, 0, T::F32), (H, 4, T::F32), (H, 14, T::F32)],
                vec![(H, 0, 16, vec![0, 1, 2])]),
            ("max_registers 16: one register more splits", lim(16, 20),
                vec![(H, 0, T::F32), (H, 4, T::F32), (H, 15, T::F32)],
                vec![(H, 0, 6, vec![0, 1]), (H, 15, 2, vec![2])]),
            ("protocol cap of 125 registers", lim(200, 200),
                vec![(I, 0, T::U16), (I, 123, T::F32)],
                vec![(I, 0, 125, vec![0, 1])]),
            ("protocol cap of 125 registers splits at 126", lim(200, 200),
                vec![(I, 0, T::U16), (I, 124, T::F32)],
                vec![(I, 0, 1, vec![0]), (I, 124, 2, vec![1])]),
            ("bits read up to 2000 at a time", lim(125, 2000),
                vec![(C, 0, T::Bool), (C, 1999, T::Bool)],
                vec![(C, 0, 2000, vec![0, 1])]),
            ("bits split at 2001", lim(125, 2000),
                vec![(D, 0, T::Bool), (D, 2000, T::Bool)],
                vec![(D, 0, 1, vec![0]), (D, 2000, 1, vec![1])]),
            ("a lowered device limit applies to bits too", lim(16, 100),
                vec![(C, 0, T::Bool), (C, 15, T::Bool), (C, 16, T::Bool)],
                vec![(C, 0, 16, vec![0, 1]), (C, 16, 1, vec![2])]),
            ("tables never merge, blocks ordered coil, discrete, input, holding", lim(125, 10),
                vec![(H, 0, T::U16), (I, 0, T::U16), (H, 1, T::U16), (D, 0, T::Bool), (C, 1, T::Bool)],
                vec![(C, 1, 1, vec![4]), (D, 0, 1, vec![3]), (I, 0, 1, vec![1]), (H, 0, 2, vec![0, 2])]),
            ("overlapping points share a block", lim(125, 0),
                vec![(H, 5, T::U16), (H, 5, T::BitOfRegister(3)), (H, 5, T::U32), (H, 6, T::BitOfRegister(15))],
                vec![(H, 5, 2, vec![0, 1, 2, 3])]),
            ("a nested point does not shrink the block", lim(125, 0),
                vec![(H, 1, T::U16), (H, 0, T::U64), (H, 4, T::U16)],
                vec![(H, 0, 5, vec![1, 0, 2])]),
            ("blocks come out by address whatever the listing order", lim(125, 2),
                vec![(H, 300, T::U16), (H, 100, T::F32), (H, 200, T::U16), (H, 102, T::U16)],
                vec![(H, 100, 3, vec![1, 3]), (H, 200, 1, vec![2]), (H, 300, 1, vec![0])]),
            ("the last register of the address space", lim(125, 10),
                vec![(H, 65534, T::U16), (H, 65535, T::U16)],
                vec![(H, 65534, 2, vec![0, 1])]),
            ("a wide string fills its block", lim(16, 10),
                vec![(H, 10, T::String(32)), (H, 26, T::U16)],
                vec![(H, 10, 16, vec![0]), (H, 26, 1, vec![1])]),
        ]
    }

    #[test]
    fn plan_table() {
        let mut failures = Vec::new();
        for (name, limits, spec, want) in rows() {
            let pts = points(&spec);
            let got: Vec<(Table, u16, u16, Vec<usize>)> = plan(&pts, limits)
                .unwrap()
                .into_iter()
                .map(|b| (b.table, b.start, b.count, b.points))
                .collect();
            if got != want {
                failures.push(format!("{name}:\n  want {want:?}\n  got  {got:?}"));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[test]
    fn every_point_lies_inside_its_block() {
        for (name, limits, spec, _) in rows() {
            let pts = points(&spec);
            let blocks = plan(&pts, limits).unwrap();
            let mut seen = vec![0; pts.len()];
            for b in &blocks {
                for &i in &b.points {
                    seen[i] += 1;
                    let p = &pts[i];
                    assert_eq!(p.table, b.table, "{name}");
                    let off = b.offset_of(p);
                    assert!(
                        off + p.width() as usize <= b.count as usize,
                        "{name}: {p:?}"
                    );
                }
            }
            assert!(seen.iter().all(|&n| n == 1), "{name}: {seen:?}");
        }
    }

    #[test]
    fn plan_errors() {
        #[rustfmt::skip]
        let rows: Vec<(Limits, Vec<Pt>, PlanError)> = vec![
            (lim(16, 10), vec![(H, 0, T::U16), (H, 10, T::String(40))],
                PlanError::TooWide { point: "p1".into(), width: 20, limit: 16 }),
            (lim(2, 10), vec![(I, 0, T::U64)],
                PlanError::TooWide { point: "p0".into(), width: 4, limit: 2 }),
            (lim(200, 10), vec![(H, 0, T::String(252))],
                PlanError::TooWide { point: "p0".into(), width: 126, limit: 125 }),
            (lim(125, 10), vec![(H, 65535, T::U32)],
                PlanError::PastEnd { point: "p0".into(), address: 65535, width: 2 }),
            (lim(125, 10), vec![(H, 65533, T::F64)],
                PlanError::PastEnd { point: "p0".into(), address: 65533, width: 4 }),
        ];
        for (limits, spec, want) in rows {
            assert_eq!(plan(&points(&spec), limits), Err(want.clone()), "{want}");
        }
    }

    #[test]
    fn plan_error_messages_name_the_point() {
        let e = plan(&points(&[(H, 0, T::String(40))]), lim(16, 0)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "point p0 needs 20 registers, more than the block limit of 16"
        );
    }

    fn block(table: Table, count: u16) -> Block {
        Block {
            table,
            start: 0,
            count,
            points: vec![],
        }
    }

    #[test]
    fn rtu_frame_sizes() {
        // (table, count, request bytes, response bytes)
        let rows = [
            (H, 10, 8, 25),
            (I, 125, 8, 255),
            (H, 1, 8, 7),
            (C, 10, 8, 7),
            (D, 8, 8, 6),
            (C, 2000, 8, 255),
        ];
        for (t, n, req, resp) in rows {
            assert_eq!(rtu_frame_bytes(&block(t, n)), (req, resp), "{t} x{n}");
        }
    }

    #[test]
    fn rtu_wire_time_known_cases() {
        let close = |got: Duration, want_s: f64| (got.as_secs_f64() - want_s).abs() < 1e-6;
        // One 10-register read at 9600 8E1 (11 bits/char), 5 ms turnaround:
        // (8 + 25) bytes * 11 / 9600 + 2 * 3.5 chars + 5 ms.
        let t = rtu_wire_time(&[block(H, 10)], 9600, 11, Duration::from_millis(5));
        let want = 33.0 * 11.0 / 9600.0 + 7.0 * 11.0 / 9600.0 + 0.005;
        assert!(close(t, want), "{t:?} vs {want}");
        assert!(close(t, 0.0508333), "{t:?}");
        // Above 19200 baud the silence is a fixed 1.75 ms; two blocks add up.
        let t = rtu_wire_time(&[block(H, 10), block(C, 16)], 38400, 10, Duration::ZERO);
        let want = (33.0 + 8.0 + 7.0) * 10.0 / 38400.0 + 4.0 * 0.00175;
        assert!(close(t, want), "{t:?} vs {want}");
        assert_eq!(
            rtu_wire_time(&[], 9600, 11, Duration::from_millis(5)),
            Duration::ZERO
        );
    }

    #[test]
    fn limits_for_each_table() {
        assert_eq!(lim(125, 0).max_for(H), 125);
        assert_eq!(lim(500, 0).max_for(I), 125);
        assert_eq!(lim(0, 0).max_for(H), 1);
        assert_eq!(lim(125, 0).max_for(C), 2000);
        assert_eq!(lim(16, 0).max_for(D), 16);
    }
}
