//! Benchmark: request plan size against the minimum. For realistic device register maps and
//! for random layouts it compares three numbers of read transactions per poll: naive (one read
//! per point), the greedy planner (`gasdtu::modbus::planner::plan`) and the true minimum, computed here
//! by an independent exact dynamic program over the sorted points. The dynamic program is
//! itself cross-checked against a brute-force set cover on small cases. It also times `plan()`
//! per device. Results go to stdout and to bench-results/planner.txt; the run exits non-zero
//! if a greedy plan is ever invalid or larger than the minimum.
//!
//! Run with `cargo bench --bench planner`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::hint::black_box;
use std::process::ExitCode;
use std::time::Instant;

use gasdtu::modbus::planner::{plan, Block, Limits};
use gasdtu::model::{DataType, PointSpec, Table, WordOrder};

// ---------------------------------------------------------------------------------------------
// Layouts

fn pt(name: &str, table: Table, address: u16, data_type: DataType) -> PointSpec {
    PointSpec {
        name: name.to_string(),
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
    }
}

/// An electronic volume corrector: totalizers as integer + float fraction, flows, P/T/Z/C,
/// battery, identity, clock, limits and counters scattered over the holding registers, a few
/// diagnostics in the input registers.
fn volume_corrector() -> Vec<PointSpec> {
    use DataType::*;
    use Table::{HoldingRegister as H, InputRegister as I};
    vec![
        pt("status", H, 0, U16),
        pt("alarm", H, 0, BitOfRegister(0)),
        pt("battery_low", H, 0, BitOfRegister(1)),
        pt("tamper", H, 0, BitOfRegister(4)),
        pt("vb_int", H, 2, U32),
        pt("vb_frac", H, 4, F32),
        pt("vm_int", H, 6, U32),
        pt("vm_frac", H, 8, F32),
        pt("vb_disturbed", H, 10, U32),
        pt("vm_disturbed", H, 12, U32),
        pt("qb", H, 20, F32),
        pt("qm", H, 22, F32),
        pt("pressure", H, 30, F32),
        pt("temperature", H, 32, F32),
        pt("z", H, 34, F32),
        pt("c", H, 36, F32),
        pt("battery_days", H, 50, U16),
        pt("battery_volts", H, 51, U16),
        pt("serial", H, 60, String(16)),
        pt("firmware", H, 100, U16),
        pt("year", H, 200, U16),
        pt("month", H, 201, U16),
        pt("day", H, 202, U16),
        pt("hour", H, 203, U16),
        pt("minute", H, 204, U16),
        pt("second", H, 205, U16),
        pt("p_min", H, 300, F32),
        pt("p_max", H, 302, F32),
        pt("t_min", H, 304, F32),
        pt("t_max", H, 306, F32),
        pt("alarm_count", H, 400, U16),
        pt("log_pointer", H, 410, U32),
        pt("cpu_temp", I, 0, I16),
        pt("supply", I, 1, U16),
    ]
}

/// A multivariable DP/SP/T transmitter: process variables as floats in the input registers,
/// configuration and tag in the holding registers.
fn multivariable() -> Vec<PointSpec> {
    use DataType::*;
    use Table::{HoldingRegister as H, InputRegister as I};
    vec![
        pt("dp", I, 0, F32),
        pt("sp", I, 2, F32),
        pt("pt", I, 4, F32),
        pt("flow", I, 6, F32),
        pt("total", I, 8, F64),
        pt("status", I, 50, U16),
        pt("sensor_fault", I, 50, BitOfRegister(0)),
        pt("out_of_range", I, 50, BitOfRegister(3)),
        pt("units", H, 100, U16),
        pt("damping", H, 101, F32),
        pt("float_format", H, 110, U16),
        pt("tag", H, 200, String(16)),
    ]
}

/// A turbine meter with built-in P/T correction and BCD totalizers that rejects reads of more
/// than 16 registers.
fn turbine() -> Vec<PointSpec> {
    use DataType::*;
    use Table::HoldingRegister as H;
    vec![
        pt("vm", H, 0, Bcd32),
        pt("vb", H, 2, Bcd32),
        pt("vm_disturbed", H, 4, Bcd32),
        pt("vb_disturbed", H, 6, Bcd32),
        pt("q", H, 8, F32),
        pt("p", H, 10, F32),
        pt("t", H, 12, F32),
        pt("alarms", H, 14, U16),
        pt("status", H, 15, U16),
        pt("battery", H, 16, U16),
        pt("q_max", H, 20, F32),
        pt("serial", H, 24, String(8)),
        pt("firmware", H, 40, U16),
        pt("k_factor", H, 41, F32),
        pt("pulse_out", H, 43, U16),
    ]
}

/// A generic RS-485 pressure transmitter (float pair plus a scaled int16 variant).
fn pressure_transmitter() -> Vec<PointSpec> {
    use DataType::*;
    use Table::{HoldingRegister as H, InputRegister as I};
    vec![
        pt("pressure", I, 0, F32),
        pt("temperature", I, 2, F32),
        pt("pressure_raw", H, 10, I16),
        pt("decimals", H, 12, U16),
    ]
}

/// Random points. `spread` is the address range per point (small: dense and overlapping,
/// large: scattered). Types and tables are weighted like real maps; no point is wider than
/// the limit, none runs past 65535.
fn random_layout(rng: &mut fastrand::Rng, n: usize, spread: u32, limits: Limits) -> Vec<PointSpec> {
    let range = (n as u32 * spread).clamp(1, 60_000);
    (0..n)
        .map(|k| {
            let table = match rng.u32(0..10) {
                0..=5 => Table::HoldingRegister,
                6..=8 => Table::InputRegister,
                _ => Table::Coil,
            };
            let data_type = if table.is_bits() {
                DataType::Bool
            } else {
                let max_w = limits.max_for(table);
                let t = match rng.u32(0..20) {
                    0..=7 => DataType::U16,
                    8..=13 => DataType::F32,
                    14 => DataType::U32,
                    15 => DataType::F64,
                    16 => DataType::Bcd32,
                    17 => DataType::BitOfRegister(rng.u8(0..16)),
                    18 => DataType::I16,
                    _ => DataType::String(rng.u16(1..=32)),
                };
                if t.width() > max_w {
                    DataType::U16
                } else {
                    t
                }
            };
            pt(&format!("r{k}"), table, rng.u32(0..range) as u16, data_type)
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The independent minimum

/// Points of one table as half-open [start, end) intervals, sorted by (start, end).
fn intervals_by_table(points: &[PointSpec]) -> BTreeMap<Table, Vec<(u32, u32)>> {
    let mut by: BTreeMap<Table, Vec<(u32, u32)>> = BTreeMap::new();
    for p in points {
        let s = p.address as u32;
        by.entry(p.table)
            .or_default()
            .push((s, s + p.data_type.width() as u32));
    }
    for v in by.values_mut() {
        v.sort_unstable();
    }
    by
}

/// Exact minimum number of reads: per table, dp[k] = fewest reads covering the first k sorted
/// points, where one read covers a run i..j whose span fits the limit and whose uncovered holes
/// never exceed max_gap. O(n * run length).
fn minimum_reads(points: &[PointSpec], limits: Limits) -> usize {
    let mut total = 0;
    for (table, iv) in intervals_by_table(points) {
        let limit = limits.max_for(table) as u32;
        let n = iv.len();
        let mut dp = vec![usize::MAX; n + 1];
        dp[0] = 0;
        for i in 0..n {
            if dp[i] == usize::MAX {
                continue;
            }
            let start = iv[i].0;
            let mut covered = iv[i].1;
            for j in i..n {
                let (s, e) = iv[j];
                if s > covered && s - covered > limits.max_gap as u32 {
                    break;
                }
                covered = covered.max(e);
                if covered - start > limit {
                    break;
                }
                dp[j + 1] = dp[j + 1].min(dp[i] + 1);
            }
        }
        total += dp[n];
    }
    total
}

/// Brute force for small cases: the fewest reads [s, e) (s a point start, e a point end)
/// such that every point lies fully inside one of them, each read fits the limit, and the
/// holes between the points inside a read never exceed max_gap. Set cover over bitmasks.
fn brute_force_minimum(points: &[PointSpec], limits: Limits) -> usize {
    let mut total = 0;
    for (table, iv) in intervals_by_table(points) {
        let limit = limits.max_for(table) as u32;
        let n = iv.len();
        assert!(n <= 16);
        let mut candidates = Vec::new();
        for &(s, _) in &iv {
            for &(_, e) in &iv {
                if e <= s || e - s > limit {
                    continue;
                }
                let mut mask = 0u32;
                let mut inside: Vec<(u32, u32)> = Vec::new();
                for (k, &(ps, pe)) in iv.iter().enumerate() {
                    if ps >= s && pe <= e {
                        mask |= 1 << k;
                        inside.push((ps, pe));
                    }
                }
                // The read must start and end on points inside it, and bridge only short holes.
                let ok_ends = inside.iter().any(|p| p.0 == s) && inside.iter().any(|p| p.1 == e);
                let mut covered = s;
                let mut ok_gaps = true;
                for (ps, pe) in inside {
                    if ps > covered && ps - covered > limits.max_gap as u32 {
                        ok_gaps = false;
                    }
                    covered = covered.max(pe);
                }
                if ok_ends && ok_gaps && mask != 0 {
                    candidates.push(mask);
                }
            }
        }
        let full = (1u32 << n) - 1;
        let mut best = vec![usize::MAX; 1 << n];
        best[0] = 0;
        for m in 0..=full {
            if best[m as usize] == usize::MAX {
                continue;
            }
            for &c in &candidates {
                let next = (m | c) as usize;
                best[next] = best[next].min(best[m as usize] + 1);
            }
        }
        total += best[full as usize];
    }
    total
}

/// Checks a plan on its own terms: every point inside exactly one block of its table, blocks
/// within the limit, holes within max_gap. Returns what is wrong.
fn validate(points: &[PointSpec], limits: Limits, blocks: &[Block]) -> Result<(), String> {
    let mut seen = vec![0u32; points.len()];
    for b in blocks {
        if b.count == 0 || b.count > limits.max_for(b.table) {
            return Err(format!("block {b:?} breaks the limit"));
        }
        let mut inside: Vec<(u32, u32)> = Vec::new();
        for &i in &b.points {
            let p = &points[i];
            seen[i] += 1;
            let (s, e) = (p.address as u32, p.address as u32 + p.width() as u32);
            if p.table != b.table || s < b.start as u32 || e > b.start as u32 + b.count as u32 {
                return Err(format!("point {} outside block {b:?}", p.name));
            }
            inside.push((s, e));
        }
        inside.sort_unstable();
        let mut covered = b.start as u32;
        for (s, e) in inside {
            if s > covered && s - covered > limits.max_gap as u32 {
                return Err(format!("block {b:?} bridges a hole of {}", s - covered));
            }
            covered = covered.max(e);
        }
        if covered != b.start as u32 + b.count as u32 {
            return Err(format!("block {b:?} reads past its last point"));
        }
    }
    match seen.iter().position(|&n| n != 1) {
        Some(i) => Err(format!(
            "point {} planned {} times",
            points[i].name, seen[i]
        )),
        None => Ok(()),
    }
}

// ---------------------------------------------------------------------------------------------
// Runner

struct Row {
    case: String,
    points: usize,
    limits: Limits,
    naive: usize,
    greedy: usize,
    minimum: usize,
    ns_per_plan: Option<f64>,
}

fn time_plan(points: &[PointSpec], limits: Limits) -> f64 {
    // Aim for roughly 50 ms of work per device whatever its size.
    let iters = (2_000_000 / (points.len().max(1) * 20)).clamp(200, 100_000);
    for _ in 0..iters / 10 {
        black_box(plan(black_box(points), limits).ok());
    }
    let t = Instant::now();
    for _ in 0..iters {
        black_box(plan(black_box(points), limits).ok());
    }
    t.elapsed().as_nanos() as f64 / iters as f64
}

/// Plans `points`, checks the plan, and compares it with the minimum.
fn measure(
    case: String,
    points: &[PointSpec],
    limits: Limits,
    timed: bool,
    problems: &mut Vec<String>,
) -> Row {
    let blocks = match plan(points, limits) {
        Ok(b) => b,
        Err(e) => {
            problems.push(format!("{case}: plan failed: {e}"));
            Vec::new()
        }
    };
    if let Err(e) = validate(points, limits, &blocks) {
        problems.push(format!("{case}: invalid plan: {e}"));
    }
    let minimum = minimum_reads(points, limits);
    if blocks.len() > minimum {
        problems.push(format!(
            "{case}: greedy plan has {} reads, minimum is {minimum}",
            blocks.len()
        ));
    }
    if blocks.len() < minimum {
        problems.push(format!(
            "{case}: greedy plan has {} reads, below the 'minimum' {minimum}: the DP is wrong",
            blocks.len()
        ));
    }
    Row {
        case,
        points: points.len(),
        limits,
        naive: points.len(),
        greedy: blocks.len(),
        minimum,
        ns_per_plan: timed.then(|| time_plan(points, limits)),
    }
}

fn lim(max_registers: u16, max_gap: u16) -> Limits {
    Limits {
        max_registers,
        max_gap,
    }
}

fn main() -> ExitCode {
    let mut problems = Vec::new();
    let mut rows = Vec::new();

    let devices: Vec<(&str, Vec<PointSpec>, Limits)> = vec![
        ("volume corrector", volume_corrector(), lim(125, 10)),
        ("volume corrector, no gaps", volume_corrector(), lim(125, 0)),
        ("multivariable transmitter", multivariable(), lim(125, 10)),
        ("turbine meter (max 16)", turbine(), lim(16, 4)),
        ("pressure transmitter", pressure_transmitter(), lim(125, 10)),
    ];
    for (name, points, limits) in &devices {
        rows.push(measure(
            name.to_string(),
            points,
            *limits,
            true,
            &mut problems,
        ));
    }

    let mut rng = fastrand::Rng::with_seed(0x6A5D_7E11);
    let layouts = [(125, 10), (125, 0), (16, 4), (32, 20), (64, 64)];
    for n in [10usize, 50, 200] {
        for (spread, label) in [(4u32, "dense"), (20, "scattered")] {
            for &(max_registers, max_gap) in &layouts {
                let limits = lim(max_registers, max_gap);
                let points = random_layout(&mut rng, n, spread, limits);
                rows.push(measure(
                    format!("random {n} {label}"),
                    &points,
                    limits,
                    true,
                    &mut problems,
                ));
            }
        }
    }

    // 1000 random cases with random limits, including overlapping points.
    let (mut cases, mut equal, mut naive_sum, mut greedy_sum, mut min_sum) = (0, 0, 0, 0, 0);
    for k in 0..1000 {
        let limits = lim(
            if rng.bool() { 125 } else { rng.u16(2..=125) },
            rng.u16(0..=30),
        );
        let n = rng.usize(1..=80);
        let spread = rng.u32(1..=30);
        let points = random_layout(&mut rng, n, spread, limits);
        let r = measure(
            format!("random case {k}"),
            &points,
            limits,
            false,
            &mut problems,
        );
        cases += 1;
        equal += usize::from(r.greedy == r.minimum);
        naive_sum += r.naive;
        greedy_sum += r.greedy;
        min_sum += r.minimum;
    }

    // The DP itself, against brute force on small dense cases (overlaps are common there).
    let mut dp_checked = 0;
    for k in 0..1000 {
        let limits = lim(rng.u16(2..=12), rng.u16(0..=4));
        let n = rng.usize(1..=12);
        let spread = rng.u32(1..=4);
        let mut points = random_layout(&mut rng, n, spread, limits);
        for p in &mut points {
            p.table = Table::HoldingRegister; // one table: up to 12 points in the bitmask
            if p.data_type == DataType::Bool {
                p.data_type = DataType::U16;
            }
        }
        let (dp, brute) = (
            minimum_reads(&points, limits),
            brute_force_minimum(&points, limits),
        );
        if dp != brute {
            problems.push(format!(
                "dp check {k}: dp says {dp}, brute force says {brute} for {limits:?} {:?}",
                points
                    .iter()
                    .map(|p| (p.address, p.width()))
                    .collect::<Vec<_>>()
            ));
        }
        dp_checked += 1;
    }

    let mut out = String::new();
    let _ = writeln!(
        out,
        "gasdtu request planner: reads per poll, greedy plan vs the exact minimum\n\
         (naive = one read per point; limits = max registers per read / max gap bridged;\n\
         minimum = independent exact dynamic program over the sorted points)\n"
    );
    let _ = writeln!(
        out,
        "{:<30} {:>6} {:>8} {:>6} {:>7} {:>8} {:>10}",
        "case", "points", "limits", "naive", "greedy", "minimum", "ns/plan"
    );
    let _ = writeln!(out, "{}", "-".repeat(81));
    for r in &rows {
        let _ = writeln!(
            out,
            "{:<30} {:>6} {:>8} {:>6} {:>7} {:>8} {:>10}",
            r.case,
            r.points,
            format!("{}/{}", r.limits.max_registers, r.limits.max_gap),
            r.naive,
            r.greedy,
            r.minimum,
            r.ns_per_plan
                .map(|ns| format!("{ns:.0}"))
                .unwrap_or_default()
        );
    }
    let _ = writeln!(
        out,
        "\n1000 random cases (1-80 points, random limits, overlaps allowed):\n  \
         greedy == minimum in {equal} of {cases}; reads in total: naive {naive_sum}, \
         greedy {greedy_sum}, minimum {min_sum}"
    );
    let _ =
        writeln!(
        out,
        "DP cross-check against brute-force set cover: {dp_checked} small cases, {} disagreements",
        problems.iter().filter(|p| p.starts_with("dp check")).count()
    );
    if problems.is_empty() {
        let _ = writeln!(
            out,
            "\nresult: OK, the greedy plan was never larger than the minimum"
        );
    } else {
        let _ = writeln!(out, "\nresult: FAILED");
        for p in &problems {
            let _ = writeln!(out, "  {p}");
        }
    }

    print!("{out}");
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("bench-results");
    let file = dir.join("planner.txt");
    if let Err(e) = std::fs::create_dir_all(&dir).and_then(|_| std::fs::write(&file, &out)) {
        eprintln!("cannot write {}: {e}", file.display());
        return ExitCode::from(2);
    }
    eprintln!("written to {}", file.display());
    if problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
