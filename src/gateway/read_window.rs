//! Read success over the last 24 hours, per device (issue 11: `<root>/health` tells the
//! platform how well each meter is read, the whitepaper's "read success above 99 %"): 24
//! hourly buckets of good and total point reads, keyed by the hour of the read time, so old
//! hours fall out by themselves. Pure: no clock of its own (callers pass read times and now).

use std::collections::BTreeMap;

/// Hours kept.
const HOURS: usize = 24;
const HOUR_MS: i64 = 3_600_000;
/// Devices listed by name in the health summary (the worst first).
pub const MAX_LISTED: usize = 10;

/// One device's last 24 hours.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadWindow {
    /// (hour index = read ms / 1 h, good, total), at most one per slot `hour % 24`.
    slots: [(i64, u64, u64); HOURS],
}

impl ReadWindow {
    /// Count `good` of `total` point reads made at `at_ms`.
    pub fn add(&mut self, at_ms: i64, good: u64, total: u64) {
        let hour = at_ms.div_euclid(HOUR_MS);
        let slot = &mut self.slots[hour.rem_euclid(HOURS as i64) as usize];
        if slot.0 != hour {
            *slot = (hour, 0, 0);
        }
        slot.1 = slot.1.saturating_add(good.min(total));
        slot.2 = slot.2.saturating_add(total);
    }

    /// (good, total) over the 24 hours up to `now_ms`.
    pub fn counts(&self, now_ms: i64) -> (u64, u64) {
        let now = now_ms.div_euclid(HOUR_MS);
        self.slots
            .iter()
            .filter(|(h, _, t)| *t > 0 && *h > now - HOURS as i64 && *h <= now)
            .fold((0, 0), |(g, t), (_, sg, st)| (g + sg, t + st))
    }
}

/// The health summary: the overall share of good reads, and the devices below 99 % (worst
/// first, at most `MAX_LISTED`, with how many more there are). Ratios rounded to 0.1 %.
pub fn summary(windows: &BTreeMap<String, ReadWindow>, now_ms: i64) -> serde_json::Value {
    let round = |g: u64, t: u64| (g as f64 / t as f64 * 1000.0).round() / 1000.0;
    let (mut all_g, mut all_t) = (0u64, 0u64);
    let mut low: Vec<(f64, &str)> = Vec::new();
    for (name, w) in windows {
        let (g, t) = w.counts(now_ms);
        if t == 0 {
            continue;
        }
        all_g += g;
        all_t += t;
        let r = round(g, t);
        if r < 0.99 {
            low.push((r, name));
        }
    }
    low.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(b.1)));
    let more = low.len().saturating_sub(MAX_LISTED);
    let below: serde_json::Map<String, serde_json::Value> = low
        .into_iter()
        .take(MAX_LISTED)
        .map(|(r, n)| (n.to_string(), serde_json::json!(r)))
        .collect();
    let mut v = serde_json::json!({
        "all": if all_t > 0 { serde_json::json!(round(all_g, all_t)) } else { serde_json::Value::Null },
        "below_99": below,
    });
    if more > 0 {
        v["more_below_99"] = serde_json::json!(more);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = HOUR_MS;

    #[test]
    fn hours_older_than_a_day_fall_out() {
        let mut w = ReadWindow::default();
        let t0 = 1_800_000_000_000;
        w.add(t0, 9, 10);
        w.add(t0 + H, 10, 10);
        assert_eq!(w.counts(t0 + H), (19, 20));
        // 24 hours after the first hour started, it is gone; the second stays one hour more.
        assert_eq!(w.counts(t0 - t0.rem_euclid(H) + 24 * H), (10, 10));
        assert_eq!(w.counts(t0 + 30 * H), (0, 0));
        // A slot reused a day later starts from zero.
        w.add(t0 + 24 * H, 1, 2);
        assert_eq!(w.counts(t0 + 24 * H), (11, 12));
        // Good never exceeds total; reads before 1970 do not panic.
        w.add(-5, 7, 3);
        assert_eq!(w.counts(-5), (3, 3));
    }

    #[test]
    fn the_summary_lists_the_worst_devices_below_99_percent() {
        let t = 1_800_000_000_000;
        let mut m = BTreeMap::new();
        for (name, good) in [("a", 1000), ("b", 980), ("c", 500), ("d", 995)] {
            let mut w = ReadWindow::default();
            w.add(t, good, 1000);
            m.insert(name.to_string(), w);
        }
        m.insert("idle".to_string(), ReadWindow::default());
        let v = summary(&m, t);
        assert_eq!(v["all"], serde_json::json!(0.869));
        assert_eq!(v["below_99"], serde_json::json!({"c": 0.5, "b": 0.98}));
        assert!(v.get("more_below_99").is_none());
        // Many bad devices: ten listed, the rest counted.
        let mut many = BTreeMap::new();
        for i in 0..15 {
            let mut w = ReadWindow::default();
            w.add(t, i, 100);
            many.insert(format!("m{i:02}"), w);
        }
        let v = summary(&many, t);
        assert_eq!(v["below_99"].as_object().unwrap().len(), MAX_LISTED);
        assert_eq!(v["more_below_99"], 5);
        assert_eq!(v["below_99"]["m00"], serde_json::json!(0.0));
        assert_eq!(summary(&BTreeMap::new(), t)["all"], serde_json::Value::Null);
    }
}
