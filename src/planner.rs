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
    /// The effective block limit for `table`: the device limit for registers, and for bit
    /// tables the device limit scaled to bits only when it was lowered below 125.
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
