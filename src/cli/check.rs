//! `gasdtu check`: validates the configuration file with the daemon's own loader and prints
//! every error and warning (each naming its key path, line and column; the first 100 errors and
//! a count of the rest; control characters escaped), the per-bus wire-time report and a
//! summary line (a config not commissioned yet says so just before it). Diagnostics go to
//! stderr, the report and summary to stdout. Errors and warnings come in line order. Without
//! `--quiet`, one line per device counts its published points; `--show <device>` prints that
//! device's resolved points instead of the report (exit 1 when there is no such device).
//! Exit 0 valid (warnings allowed), 1 invalid, 2 unreadable. One warning is not the loader's:
//! a `store.max_bytes` larger than the state directory's file system can hold (the daemon
//! clamps it, see src/store/space.rs), measured here because loading does no such I/O.

use crate::config::{self, LoadError};

use super::Global;

#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// Print only errors, warnings and the summary line (no per-bus report).
    #[arg(long, short = 'q')]
    pub quiet: bool,
    /// Print the resolved points of this device (what will run, and where each field came
    /// from: profile, point set, override, device order) instead of the per-bus report.
    #[arg(long, value_name = "DEVICE")]
    pub show: Option<String>,
}

pub async fn run(args: CheckArgs, global: &Global) -> anyhow::Result<u8> {
    let path = &global.config;
    let name = path.display().to_string();
    let name = config::escape(&name);
    match config::load_file(path) {
        Err(LoadError::Read { path, source }) => {
            let shown = path.display().to_string();
            let shown = config::escape(&shown);
            let why = source.to_string();
            eprintln!("error: cannot read {shown}: {}", config::escape(&why));
            println!("{shown}: unreadable");
            Ok(2)
        }
        Err(LoadError::Invalid { errors, .. }) => {
            // At most `config::MAX_ERRORS` lines, then one counting the rest; every key and
            // value echoed is escaped by the errors' Display.
            for e in &errors {
                eprintln!("error: {e}");
            }
            let n = config::error_count(&errors);
            println!("{name}: {n} error{}", if n == 1 { "" } else { "s" });
            Ok(1)
        }
        Ok(loaded) => {
            let mut warnings = loaded.warnings.clone();
            warnings.extend(store_cap_warning(&name, &loaded.config));
            config::sort_by_place(&mut warnings, |w| (&w.origin, w.line, w.column));
            for w in &warnings {
                eprintln!("warning: {w}");
            }
            if let Some(device) = &args.show {
                match config::show_device(&loaded, device) {
                    Some(lines) => {
                        for line in lines {
                            println!("{line}");
                        }
                    }
                    None => {
                        let known: Vec<&str> = loaded
                            .config
                            .devices
                            .iter()
                            .map(|d| d.name.as_str())
                            .collect();
                        eprintln!(
                            "error: no device named {:?} in {name} (devices: {})",
                            config::escape(device),
                            config::escape(&known.join(", "))
                        );
                        return Ok(1);
                    }
                }
            } else if !args.quiet {
                for line in config::check_report(&loaded) {
                    println!("{line}");
                }
                for line in config::published_lines(&loaded) {
                    println!("{line}");
                }
            }
            if !loaded.config.gateway.commissioned {
                println!(
                    "{name}: NOT COMMISSIONED ([gateway] commissioned = false): `gasdtu run` idles, \
                     polling nothing and sending nothing, until it is set to true"
                );
            }
            let s = config::summary(&loaded.config);
            let disabled = if s.disabled_devices > 0 {
                format!(" ({} disabled)", s.disabled_devices)
            } else {
                String::new()
            };
            let warnings = match warnings.len() {
                0 => String::new(),
                1 => ", 1 warning".to_string(),
                n => format!(", {n} warnings"),
            };
            println!(
                "{name}: valid, {}, {}{disabled}, {}, {}{warnings}",
                counted(s.buses, "bus", "buses"),
                counted(s.devices, "device", "devices"),
                counted(s.points, "point", "points"),
                counted(s.reads, "read per cycle", "reads per cycle"),
            );
            Ok(0)
        }
    }
}

/// "1 bus", "2 buses".
fn counted(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

#[cfg(test)]
#[test]
fn counts_agree_with_their_number() {
    for (n, want) in [(0, "0 buses"), (1, "1 bus"), (2, "2 buses")] {
        assert_eq!(counted(n, "bus", "buses"), want);
    }
}

/// A warning if the configured store cap exceeds what the state directory's file system can
/// hold (free space plus what an existing store already uses, minus the floor kept free).
fn store_cap_warning(origin: &str, cfg: &config::Config) -> Option<config::ConfigWarning> {
    use crate::store::space;
    let configured = cfg.store.max_bytes;
    let dir = &cfg.gateway.state_dir;
    let c = space::capacity(dir).ok()?;
    if configured <= c.holds {
        return None;
    }
    let mib = |b: u64| format!("{:.1} MiB", b as f64 / 1048576.0);
    Some(config::ConfigWarning {
        origin: origin.to_string(),
        path: "store.max_bytes".into(),
        line: None,
        column: None,
        message: format!(
            "{} is more than the file system of {} can hold ({} free of {}, {} kept free): \
             the store will be capped at {}",
            mib(configured),
            c.measured.display(),
            mib(c.space.avail),
            mib(c.space.total),
            mib(space::floor(c.space.total)),
            mib(c.holds)
        ),
    })
}
