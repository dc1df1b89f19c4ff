//! Benchmark: request plan size against the minimum (being built).
fn main() {}
