//! Latency summaries for the benchmarks: samples as `Duration`s, nearest-rank percentiles in
//! milliseconds, one aligned report line per series. Pure functions, no I/O.

use std::time::Duration;

/// Sorted milliseconds of `d`.
pub fn ms_sorted(d: &[Duration]) -> Vec<f64> {
    let mut v: Vec<f64> = d.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
    v.sort_by(|a, b| a.total_cmp(b));
    v
}

/// Nearest-rank percentile of sorted values.
pub fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// One line: label, count, p50/p90/p99/max/min in ms.
pub fn stats_line(label: &str, d: &[Duration]) -> String {
    let v = ms_sorted(d);
    format!(
        "{label:<28} n={:<4} p50 {:>7.2} ms  p90 {:>7.2} ms  p99 {:>7.2} ms  max {:>7.2} ms  min {:>6.2} ms",
        v.len(),
        pct(&v, 50.0),
        pct(&v, 90.0),
        pct(&v, 99.0),
        pct(&v, 100.0),
        pct(&v, 0.0),
    )
}
