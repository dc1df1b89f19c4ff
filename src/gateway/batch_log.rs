//! The consumer's per-batch log line (`BatchLog`): INFO when a device's state changes, DEBUG
//! otherwise. Owns the last state logged per device; no I/O beyond `tracing`.

use std::collections::HashMap;
use std::sync::Arc;

use crate::model::SampleBatch;

/// The per-batch log line (target `gasdtu::batch`): at INFO when a device's state changes
/// (its first batch, online/offline, bad readings appear, change or go), else at DEBUG. One
/// INFO line per device and poll was 20 journal lines a second on W1, flash written and CPU
/// spent to say nothing new (issue 13); `--log-level info,gasdtu::batch=debug` shows every
/// batch again. One entry per device seen (the configured devices bound it).
#[derive(Default)]
pub(crate) struct BatchLog {
    last: HashMap<Arc<str>, (bool, usize, Option<String>)>,
}

impl BatchLog {
    pub(crate) fn log(&mut self, b: &SampleBatch) {
        let good = b.samples.iter().filter(|s| s.quality.is_good()).count();
        let bad = b.samples.len() - good;
        let first_bad = b.samples.iter().find_map(|s| match &s.quality {
            crate::model::Quality::Bad(r) => Some(format!("{}: {r}", s.point)),
            crate::model::Quality::Good => None,
        });
        let now = (b.online, bad, first_bad);
        let changed = self.last.get(&b.device) != Some(&now);
        let (online, bad, first_bad) = &now;
        let first_bad = first_bad.as_deref().unwrap_or("");
        macro_rules! line {
            ($level:ident) => {
                tracing::$level!(
                    target: "gasdtu::batch",
                    device = %b.device,
                    bus = %b.bus,
                    good,
                    bad,
                    online,
                    first_bad,
                    "batch"
                )
            };
        }
        if changed {
            line!(info);
            self.last.insert(b.device.clone(), now);
        } else {
            line!(debug);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use std::time::UNIX_EPOCH;

    use tracing::Level;
    use tracing_subscriber::layer::{Context, SubscriberExt};

    use crate::model::{BadReason, Quality, Sample, Value};

    /// Levels of the `gasdtu::batch` events seen.
    struct Levels(Arc<Mutex<Vec<Level>>>);

    impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Levels {
        fn on_event(&self, e: &tracing::Event<'_>, _: Context<'_, S>) {
            if e.metadata().target() == "gasdtu::batch" {
                self.0.lock().unwrap().push(*e.metadata().level());
            }
        }
    }

    fn batch(device: &str, bad: Option<BadReason>, online: bool) -> SampleBatch {
        let quality = bad.map_or(Quality::Good, Quality::Bad);
        SampleBatch {
            device: Arc::from(device),
            bus: Arc::from("b"),
            slot: UNIX_EPOCH,
            samples: vec![Sample {
                point: Arc::from("p"),
                value: quality.is_good().then_some(Value::Float(1.0)),
                unit: None,
                quality,
                read_at: UNIX_EPOCH,
            }],
            online,
            failed_cycles: 0,
        }
    }

    #[test]
    fn a_batch_is_info_only_when_its_device_changes() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sub = tracing_subscriber::registry().with(Levels(seen.clone()));
        tracing::subscriber::with_default(sub, || {
            let mut log = BatchLog::default();
            log.log(&batch("a", None, true)); // first of a
            log.log(&batch("a", None, true)); // nothing new
            log.log(&batch("b", None, true)); // first of b
            log.log(&batch("a", Some(BadReason::Timeout), true)); // bad appears
            log.log(&batch("a", Some(BadReason::Timeout), true));
            log.log(&batch("a", Some(BadReason::Crc), true)); // another bad reading
            log.log(&batch("a", Some(BadReason::Crc), false)); // offline
            log.log(&batch("a", None, true)); // back
            log.log(&batch("a", None, true));
        });
        use Level as L;
        assert_eq!(
            *seen.lock().unwrap(),
            [
                L::INFO,
                L::DEBUG,
                L::INFO,
                L::INFO,
                L::DEBUG,
                L::INFO,
                L::INFO,
                L::INFO,
                L::DEBUG
            ]
        );
    }
}
