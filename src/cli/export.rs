//! `gasdtu export`: streams buffered readings out of the store as CSV or JSON lines, through a
//! read-only connection, so a field engineer can pull data onto a laptop while the daemon runs
//! and the uplink is dead. Times: RFC 3339 (`2026-11-01T00:00:00Z`, weak forms accepted) or a
//! duration back from now (`24h`). The summary on stderr counts what was written; when the
//! reader goes away (`gasdtu export | head`) it says the export stopped early instead of
//! giving counts nobody can vouch for, and the exit status stays 0.

use std::io::Write;
use std::path::PathBuf;
use std::time::SystemTime;

use anyhow::Context;

use super::queue::resolve_state_dir;
use super::Global;
use crate::model::{Quality, Value};
use crate::store::{ExportFilter, Store, StoreError, StoredBatch};
use crate::time::{rfc3339_ms, unix_ms};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Csv,
    Jsonl,
}

#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// State directory holding gasdtu.db (default: gateway.state_dir of the config).
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// First read time to include: RFC 3339 UTC, or a duration back from now ("24h").
    #[arg(long)]
    pub since: Option<String>,
    /// Read time to stop before (exclusive), same forms as --since.
    #[arg(long)]
    pub until: Option<String>,
    /// Only this device.
    #[arg(long)]
    pub device: Option<String>,
    /// Output format: CSV with a header line, or one JSON object per reading.
    #[arg(long, value_enum, default_value = "csv")]
    pub format: Format,
    /// Write here instead of stdout.
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// An RFC 3339 time, or a duration before `now`.
pub fn parse_time(s: &str, now: SystemTime) -> Result<SystemTime, String> {
    if let Ok(t) = humantime::parse_rfc3339_weak(s) {
        return Ok(t);
    }
    match humantime::parse_duration(s) {
        Ok(d) => now
            .checked_sub(d)
            .ok_or_else(|| format!("{s:?} reaches before 1970")),
        Err(_) => Err(format!(
            "{s:?} is neither an RFC 3339 time (2026-11-01T00:00:00Z) nor a duration (24h, 30m)"
        )),
    }
}

pub async fn run(args: ExportArgs, global: &Global) -> anyhow::Result<u8> {
    let now = SystemTime::now();
    let time = |flag: &str, v: &Option<String>| -> anyhow::Result<Option<SystemTime>> {
        v.as_deref()
            .map(|s| parse_time(s, now).map_err(|e| anyhow::anyhow!("--{flag}: {e}")))
            .transpose()
    };
    let filter = ExportFilter {
        since: time("since", &args.since)?,
        until: time("until", &args.until)?,
        device: args.device.clone(),
    };
    let dir = resolve_state_dir(args.state_dir.clone(), global)?;
    let format = args.format;
    let output = args.output.clone();
    let ended = tokio::task::spawn_blocking(move || -> anyhow::Result<Ended> {
        let store = Store::open_read_only(&dir)?;
        let out: Box<dyn Write> = match &output {
            Some(p) => Box::new(
                std::fs::File::create(p)
                    .with_context(|| format!("cannot create {}", p.display()))?,
            ),
            None => Box::new(std::io::stdout().lock()),
        };
        let mut out = std::io::BufWriter::new(out);
        if format == Format::Csv {
            writeln!(out, "device,point,value,unit,quality,read_at,clock")?;
        }
        let mut readings = 0u64;
        let result = store.export(&filter, &mut |b| {
            readings += b.batch.samples.len() as u64;
            for line in render(b, format) {
                writeln!(out, "{line}")?;
            }
            Ok(())
        });
        match result.map_err(anyhow::Error::from).and_then(|n| {
            out.flush().context("cannot write the export")?;
            Ok(n)
        }) {
            Ok(batches) => Ok(Ended::Complete { batches, readings }),
            // `gasdtu export | head`: the reader went away; not an error, but what it got is
            // unknown (buffered lines may never have reached it).
            Err(e) if is_broken_pipe(&e) => Ok(Ended::ReaderGone),
            Err(e) => Err(e),
        }
    })
    .await??;
    eprintln!("{}", ended.summary(args.output.as_deref()));
    Ok(0)
}

/// How an export ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// Everything was written (and flushed).
    Complete { batches: u64, readings: u64 },
    /// The reader closed the pipe first.
    ReaderGone,
}

impl Ended {
    /// The line for stderr (pure).
    pub fn summary(&self, output: Option<&std::path::Path>) -> String {
        match self {
            Ended::Complete { batches, readings } => format!(
                "exported {readings} {} ({batches} {}){}",
                if *readings == 1 {
                    "reading"
                } else {
                    "readings"
                },
                if *batches == 1 { "batch" } else { "batches" },
                output
                    .map(|p| format!(" to {}", p.display()))
                    .unwrap_or_default()
            ),
            Ended::ReaderGone => {
                "export stopped early: the reader closed the pipe (as `| head` does)".to_string()
            }
        }
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        let io = c
            .downcast_ref::<std::io::Error>()
            .or(match c.downcast_ref::<StoreError>() {
                Some(StoreError::Sink(io)) => Some(io),
                _ => None,
            });
        io.is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

fn value_text(v: &Option<Value>) -> String {
    match v {
        None => String::new(),
        Some(Value::Text(s)) => s.clone(),
        Some(v) => v.to_string(),
    }
}

fn quality_text(q: &Quality) -> String {
    match q {
        Quality::Good => "good".into(),
        Quality::Bad(r) => format!("bad: {r}"),
    }
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// The output lines of one batch (pure, for tests).
pub fn render(b: &StoredBatch, format: Format) -> Vec<String> {
    b.batch
        .samples
        .iter()
        .map(|s| {
            let read_at = rfc3339_ms(unix_ms(s.read_at));
            match format {
                Format::Csv => [
                    csv_field(&b.batch.device),
                    csv_field(&s.point),
                    csv_field(&value_text(&s.value)),
                    csv_field(s.unit.as_deref().unwrap_or("")),
                    csv_field(&quality_text(&s.quality)),
                    read_at,
                    b.clock.as_str().to_string(),
                ]
                .join(","),
                Format::Jsonl => serde_json::json!({
                    "device": &*b.batch.device,
                    "point": &*s.point,
                    "value": s.value,
                    "unit": s.unit.as_deref(),
                    "quality": s.quality,
                    "read_at": read_at,
                    "clock": b.clock.as_str(),
                    "delivered": b.delivered,
                })
                .to_string(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{BadReason, Sample, SampleBatch};
    use crate::store::ClockState;
    use crate::time::from_unix_ms;
    use std::time::Duration;

    #[test]
    fn time_arguments() {
        let now = humantime::parse_rfc3339("2026-11-02T00:00:00Z").unwrap();
        let at = |s| humantime::parse_rfc3339(s).unwrap();
        for (arg, want) in [
            ("2026-11-01T00:00:00Z", Ok(at("2026-11-01T00:00:00Z"))),
            ("2026-11-01 06:30:00", Ok(at("2026-11-01T06:30:00Z"))),
            ("24h", Ok(at("2026-11-01T00:00:00Z"))),
            ("90m", Ok(now - Duration::from_secs(5400))),
        ] {
            assert_eq!(parse_time(arg, now), want, "{arg}");
        }
        for bad in ["yesterday", "2026-13-01T00:00:00Z", ""] {
            let e = parse_time(bad, now).unwrap_err();
            assert!(e.contains("neither"), "{bad}: {e}");
        }
    }

    #[test]
    fn csv_and_jsonl_lines() {
        let t = 1_793_491_200_123; // 2026-11-01T00:00:00.123Z
        let b = StoredBatch {
            id: 1,
            clock: ClockState::Trusted,
            delivered: false,
            batch: SampleBatch {
                device: "fc,1".into(),
                bus: "b".into(),
                slot: from_unix_ms(t),
                online: true,
                failed_cycles: 0,
                samples: vec![
                    Sample {
                        point: "flow".into(),
                        value: Some(Value::Float(12.5)),
                        unit: Some("m3/h".into()),
                        quality: Quality::Good,
                        read_at: from_unix_ms(t),
                    },
                    Sample {
                        point: "p".into(),
                        value: None,
                        unit: None,
                        quality: Quality::Bad(BadReason::Timeout),
                        read_at: from_unix_ms(t),
                    },
                ],
            },
        };
        assert_eq!(
            render(&b, Format::Csv),
            vec![
                "\"fc,1\",flow,12.5,m3/h,good,2026-11-01T00:00:00.123Z,trusted",
                "\"fc,1\",p,,,bad: timeout,2026-11-01T00:00:00.123Z,trusted",
            ]
        );
        let j: serde_json::Value = serde_json::from_str(&render(&b, Format::Jsonl)[0]).unwrap();
        assert_eq!(j["value"], 12.5);
        assert_eq!(j["read_at"], "2026-11-01T00:00:00.123Z");
        assert_eq!(j["quality"], "good");
    }

    #[test]
    fn summaries_count_only_a_complete_export() {
        let out = std::path::Path::new("/tmp/x.csv");
        let rows: &[(Ended, Option<&std::path::Path>, &str)] = &[
            (
                Ended::Complete {
                    batches: 3,
                    readings: 40,
                },
                None,
                "exported 40 readings (3 batches)",
            ),
            (
                Ended::Complete {
                    batches: 1,
                    readings: 1,
                },
                Some(out),
                "exported 1 reading (1 batch) to /tmp/x.csv",
            ),
            (
                Ended::Complete {
                    batches: 0,
                    readings: 0,
                },
                None,
                "exported 0 readings (0 batches)",
            ),
            (
                Ended::ReaderGone,
                None,
                "export stopped early: the reader closed the pipe (as `| head` does)",
            ),
        ];
        for (ended, output, want) in rows {
            assert_eq!(ended.summary(*output), *want);
        }
    }

    #[tokio::test]
    async fn exports_a_live_store_to_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(dir.path(), &crate::config::StoreConfig::default()).unwrap();
        let t = 1_793_491_200_000;
        let mk = |dev: &str, t: i64| SampleBatch {
            device: dev.into(),
            bus: "b".into(),
            slot: from_unix_ms(t),
            online: true,
            failed_cycles: 0,
            samples: vec![Sample {
                point: "flow".into(),
                value: Some(Value::UInt(7)),
                unit: None,
                quality: Quality::Good,
                read_at: from_unix_ms(t),
            }],
        };
        let stamp = crate::store::ClockStamp {
            wall_ms: t + 3_600_000,
            mono_ms: 1,
            boot_id: "b".into(),
        };
        store
            .commit(
                &[mk("a", t), mk("b", t), mk("a", t + 3_600_000)],
                &[],
                &stamp,
            )
            .unwrap();
        // The daemon's store stays open (and locked by nobody) while export reads.
        let out = dir.path().join("out.csv");
        let global = Global {
            config: dir.path().join("no-such-config.toml"),
            log_level: None,
        };
        let args = ExportArgs {
            state_dir: Some(dir.path().to_path_buf()),
            since: Some("2026-11-01T00:00:00Z".into()),
            until: Some("2026-11-01T00:30:00Z".into()),
            device: Some("a".into()),
            format: Format::Csv,
            output: Some(out.clone()),
        };
        assert_eq!(run(args, &global).await.unwrap(), 0);
        assert_eq!(
            std::fs::read_to_string(&out).unwrap(),
            "device,point,value,unit,quality,read_at,clock\n\
             a,flow,7,,good,2026-11-01T00:00:00.000Z,trusted\n"
        );
        // Without --state-dir and without a readable config: a clear error.
        let args = ExportArgs {
            state_dir: None,
            since: None,
            until: None,
            device: None,
            format: Format::Jsonl,
            output: None,
        };
        let e = format!("{:#}", run(args, &global).await.unwrap_err());
        assert!(e.contains("--state-dir"), "{e}");
        drop(store);
    }
}
