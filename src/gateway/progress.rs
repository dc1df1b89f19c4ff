//! The watchdog's board: which parts of the daemon must show progress and how long each may
//! stay silent. The store consumer ticks a bus when one of its batches arrives and brackets
//! every commit, the forwarder ticks the uplink on every turn of its loop, and
//! `systemd::Watchdog` asks `health()` before each WATCHDOG=1. Bounds come from the config
//! (`bus_silence_bound`, `uplink_silence_bound`); a commit in flight longer than `STORE_HANG`
//! is a hang, a failed one is not. Pure: `Instant`s in, a verdict out (tests move the clock).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::config::{Config, UplinkConfig};

/// Added to every silence bound: the consumer's commit time, scheduling jitter, a slow SD card.
pub const SILENCE_SLACK: Duration = Duration::from_secs(10);

/// Which part of the daemon stopped making progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    /// A bus (by name): no batch of it was committed for longer than its bound.
    Bus(String),
    /// The forwarder's loop did not turn for longer than its bound.
    Uplink,
    /// One store commit has not returned for longer than `STORE_HANG` (a hung SQLite call, not
    /// a failing one: failed commits return and are retried while polling goes on).
    Store,
}

impl std::fmt::Display for Part {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Part::Bus(b) if b == ANY_BUS => write!(f, "poller"),
            Part::Bus(b) => write!(f, "bus {b}"),
            Part::Uplink => write!(f, "uplink"),
            Part::Store => write!(f, "store commit"),
        }
    }
}

/// The verdict of a progress check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    Ok,
    /// The first (longest-silent) part past its bound, and how long it has been silent.
    Stalled {
        part: Part,
        silent_for: Duration,
    },
}

/// Name of the single beat `Progress::new` watches; every bus feeds it.
pub(crate) const ANY_BUS: &str = "*";

#[derive(Debug, Clone)]
struct Beat {
    part: Part,
    max_silence: Duration,
    last: Instant,
}

#[derive(Debug)]
struct Board {
    buses: Vec<Beat>,
    uplink: Option<Beat>,
    /// When the store commit in flight began, if one is.
    commit_since: Option<Instant>,
    /// The last commit failed (the store is failing; batches are held in memory).
    store_failing: bool,
}

/// How long one store commit may stay in flight before the daemon counts as hung. A commit
/// waits at most the store's busy timeout (5 s) for a lock, plus its fsync.
pub const STORE_HANG: Duration = Duration::from_secs(30);

/// Progress counters shared by the sample consumer (`tick_poll` per committed batch), the
/// forwarder (`tick_uplink` per turn of its loop) and the `Watchdog`. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Progress {
    board: Arc<Mutex<Board>>,
}

impl Progress {
    /// Watch the pipeline as a whole: stalled when no batch at all was ticked for longer than
    /// `max_silence`. `for_config` watches each bus on its own bound instead.
    pub fn new(max_silence: Duration) -> Progress {
        Progress::with_beats(
            vec![Beat {
                part: Part::Bus(ANY_BUS.to_string()),
                max_silence,
                last: Instant::now(),
            }],
            None,
        )
    }

    /// One beat per bus that has enabled devices, bounded by `bus_silence_bound`, and the
    /// uplink's beat when `[uplink]` is configured (bounded by `uplink_silence_bound`).
    pub fn for_config(config: &Config) -> Progress {
        let (buses, uplink) = beats_for(config, Instant::now());
        Progress::with_beats(buses, uplink)
    }

    /// After a reload: watch the new config's buses and uplink, every clock restarted.
    pub fn reconfigure(&self, config: &Config) {
        let (buses, uplink) = beats_for(config, Instant::now());
        let mut b = self.lock();
        b.buses = buses;
        b.uplink = uplink;
    }

    /// Watch the uplink too (for `Progress::new` users).
    pub fn watch_uplink(&self, max_silence: Duration) {
        self.lock().uplink = Some(Beat {
            part: Part::Uplink,
            max_silence,
            last: Instant::now(),
        });
    }

    /// A batch of `bus` was committed. Unknown bus names feed the whole-pipeline beat if any.
    pub fn tick_poll(&self, bus: &str) {
        let now = Instant::now();
        let mut b = self.lock();
        let beat = b
            .buses
            .iter()
            .position(|x| matches!(&x.part, Part::Bus(n) if n == bus))
            .or_else(|| {
                b.buses
                    .iter()
                    .position(|x| matches!(&x.part, Part::Bus(n) if n == ANY_BUS))
            });
        if let Some(i) = beat {
            b.buses[i].last = now;
        }
    }

    /// A store commit begins (the consumer calls this before each attempt).
    pub fn commit_began(&self) {
        self.lock().commit_since = Some(Instant::now());
    }

    /// The commit returned, `ok` or failed.
    pub fn commit_ended(&self, ok: bool) {
        let mut b = self.lock();
        b.commit_since = None;
        b.store_failing = !ok;
    }

    /// Did the last commit fail?
    pub fn store_failing(&self) -> bool {
        self.lock().store_failing
    }

    /// The forwarder's loop turned (a publish, an ack, a ping, a reconnect attempt).
    pub fn tick_uplink(&self) {
        let now = Instant::now();
        if let Some(u) = self.lock().uplink.as_mut() {
            u.last = now;
        }
    }

    /// Is every watched part within its bound now?
    pub fn health(&self) -> Health {
        self.health_at(Instant::now())
    }

    /// `health` at a given instant (tests move the clock instead of sleeping).
    pub fn health_at(&self, now: Instant) -> Health {
        let b = self.lock();
        if let Some(since) = b.commit_since {
            let silent = now.saturating_duration_since(since);
            if silent > STORE_HANG {
                return Health::Stalled {
                    part: Part::Store,
                    silent_for: silent,
                };
            }
        }
        b.buses
            .iter()
            .chain(b.uplink.iter())
            .filter_map(|beat| {
                let silent = now.saturating_duration_since(beat.last);
                (silent > beat.max_silence).then(|| (silent - beat.max_silence, beat, silent))
            })
            .max_by_key(|(over, _, _)| *over)
            .map_or(Health::Ok, |(_, beat, silent)| Health::Stalled {
                part: beat.part.clone(),
                silent_for: silent,
            })
    }

    fn with_beats(buses: Vec<Beat>, uplink: Option<Beat>) -> Progress {
        Progress {
            board: Arc::new(Mutex::new(Board {
                buses,
                uplink,
                commit_since: None,
                store_failing: false,
            })),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Board> {
        match self.board.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }
}

fn beats_for(config: &Config, now: Instant) -> (Vec<Beat>, Option<Beat>) {
    let buses = config
        .buses
        .iter()
        .filter_map(|bus| {
            bus_silence_bound(config, &bus.name).map(|max_silence| Beat {
                part: Part::Bus(bus.name.clone()),
                max_silence,
                last: now,
            })
        })
        .collect();
    let uplink = config.uplink.as_ref().map(|u| Beat {
        part: Part::Uplink,
        max_silence: uplink_silence_bound(u),
        last: now,
    });
    (buses, uplink)
}

/// How long bus `bus` may go without a committed batch before it counts as stalled: twice its
/// longest poll interval (a device reports once per interval, aligned to the clock, so two
/// intervals cover the first slot after start and one missed slot), plus one worst-case cycle
/// (every read timing out on every attempt, with turnaround), plus `SILENCE_SLACK`. None when
/// the bus has no enabled device (nothing to watch).
pub fn bus_silence_bound(config: &Config, bus: &str) -> Option<Duration> {
    let b = config.buses.iter().find(|b| b.name == bus)?;
    let devs: Vec<_> = config
        .devices
        .iter()
        .filter(|d| d.enabled && d.bus == bus)
        .collect();
    let longest = devs.iter().map(|d| d.poll).max()?;
    let reads: usize = devs
        .iter()
        .map(|d| {
            crate::modbus::planner::plan(&d.points, d.limits())
                .map(|blocks| blocks.len())
                .unwrap_or(1)
        })
        .sum();
    let per_read = b.timeout.saturating_mul(b.retries.saturating_add(1)) + b.turnaround;
    let worst_cycle = per_read.saturating_mul(u32::try_from(reads).unwrap_or(u32::MAX));
    Some(
        longest
            .saturating_mul(2)
            .saturating_add(worst_cycle)
            .saturating_add(SILENCE_SLACK),
    )
}

/// How long the forwarder's loop may stay still: a keepalive exchange or a full reconnect
/// attempt (connect timeout after the longest backoff) must have happened by then, twice.
pub fn uplink_silence_bound(u: &UplinkConfig) -> Duration {
    let turn = u
        .keepalive
        .max(u.connect_timeout.saturating_add(u.reconnect_max));
    turn.saturating_mul(2).saturating_add(SILENCE_SLACK)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::config;
    use crate::gateway::systemd::{status_line, StatusFacts};
    use std::path::Path;

    #[test]
    fn progress_stalls_when_ticks_stop_and_recovers_on_tick() {
        let p = Progress::new(Duration::from_secs(10));
        let t0 = Instant::now();
        assert_eq!(p.health_at(t0), Health::Ok);
        assert_eq!(p.health_at(t0 + Duration::from_secs(9)), Health::Ok);
        match p.health_at(t0 + Duration::from_secs(12)) {
            Health::Stalled { part, silent_for } => {
                assert_eq!(part.to_string(), "poller");
                assert!(silent_for >= Duration::from_secs(12));
            }
            h => panic!("{h:?}"),
        }
        p.tick_poll("any-bus");
        assert_eq!(p.health_at(Instant::now()), Health::Ok);
    }

    #[test]
    fn a_hung_commit_stalls_a_failing_one_does_not() {
        let p = Progress::new(Duration::from_secs(1000));
        let t0 = Instant::now();
        // A commit that fails returns: the store is failing, the daemon is not hung.
        p.commit_began();
        p.commit_ended(false);
        assert!(p.store_failing());
        assert_eq!(p.health_at(t0 + STORE_HANG * 2), Health::Ok);
        // A commit that never returns is a hang.
        p.commit_began();
        match p.health_at(Instant::now() + STORE_HANG + Duration::from_secs(1)) {
            Health::Stalled { part, .. } => assert_eq!(part, Part::Store),
            h => panic!("{h:?}"),
        }
        p.commit_ended(true);
        assert!(!p.store_failing());
        assert_eq!(p.health_at(Instant::now() + STORE_HANG * 2), Health::Ok);
        let line = status_line(&StatusFacts {
            devices: 2,
            store_failing: true,
            ..StatusFacts::default()
        });
        assert_eq!(
            line,
            "polling 2 devices, STORE FAILING, readings held in memory"
        );
    }

    #[test]
    fn uplink_beat_counts_only_when_watched() {
        let p = Progress::new(Duration::from_secs(100));
        let later = Instant::now() + Duration::from_secs(20);
        assert_eq!(p.health_at(later), Health::Ok);
        p.watch_uplink(Duration::from_secs(5));
        assert!(matches!(
            p.health_at(later),
            Health::Stalled {
                part: Part::Uplink,
                ..
            }
        ));
        p.tick_poll("x");
        assert!(matches!(p.health_at(later), Health::Stalled { .. }));
    }

    fn config(text: &str) -> Config {
        match config::parse_str(text, "test.toml", Path::new("/nonexistent")) {
            Ok(l) => l.config,
            Err(e) => panic!("{e:?}"),
        }
    }

    #[test]
    fn silence_bounds_follow_the_longest_poll_and_worst_cycle() {
        let c = config(TWO_BUSES);
        let reads = |dev: &str| {
            let d = c.devices.iter().find(|d| d.name == dev).unwrap();
            crate::modbus::planner::plan(&d.points, d.limits())
                .unwrap()
                .len() as u32
        };
        // a: 2 x 1m + (fast + slow reads) x (500ms x 2 attempts) + slack.
        let a = Duration::from_secs(120)
            + Duration::from_millis(1000) * (reads("fast") + reads("slow"))
            + SILENCE_SLACK;
        assert_eq!(bus_silence_bound(&c, "a"), Some(a));
        let b = Duration::from_secs(20) + Duration::from_secs(1) * reads("b1") + SILENCE_SLACK;
        assert_eq!(bus_silence_bound(&c, "b"), Some(b));
        assert_eq!(bus_silence_bound(&c, "idle"), None, "only disabled devices");
        assert_eq!(bus_silence_bound(&c, "nope"), None);
    }

    #[test]
    fn per_bus_beats_catch_one_hung_bus_while_another_runs() {
        let c = config(TWO_BUSES);
        let p = Progress::for_config(&c);
        let bound_b = bus_silence_bound(&c, "b").unwrap();
        let later = Instant::now() + bound_b + Duration::from_secs(1);
        // Bus a keeps ticking (its bound is longer anyway); bus b went silent.
        p.tick_poll("a");
        match p.health_at(later) {
            Health::Stalled { part, .. } => assert_eq!(part, Part::Bus("b".into())),
            h => panic!("{h:?}"),
        }
        p.tick_poll("b");
        assert_eq!(p.health_at(Instant::now()), Health::Ok);
        // A reload to a config without bus b stops watching it.
        let c2 = config(&TWO_BUSES.replace("bus = \"b\"\nunit = 1", "bus = \"a\"\nunit = 3"));
        p.reconfigure(&c2);
        assert_eq!(bus_silence_bound(&c2, "b"), None);
        assert_eq!(p.health_at(Instant::now()), Health::Ok);
    }

    /// Three buses: two with devices on different polls, one with a disabled device only
    /// (also the reload test's config in `systemd`).
    pub(crate) const TWO_BUSES: &str = r#"
[gateway]
id = "t"
[buses.a]
kind = "tcp"
host = "127.0.0.1"
timeout = "500ms"
retries = 1
[buses.b]
kind = "tcp"
host = "127.0.0.2"
timeout = "1s"
retries = 0
[buses.idle]
kind = "tcp"
host = "127.0.0.3"
[devices.fast]
bus = "a"
unit = 1
poll = "1s"
profile = "pt-float"
[devices.slow]
bus = "a"
unit = 2
poll = "1m"
profile = "pt-float"
[devices.b1]
bus = "b"
unit = 1
poll = "10s"
profile = "pt-float"
[devices.off]
bus = "idle"
unit = 1
poll = "1s"
profile = "pt-float"
enabled = false
"#;
}
