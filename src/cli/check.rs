//! `gasdtu check`: validates the configuration file with the daemon's own loader and prints
//! every error and warning (each naming its key path, line and column), the per-bus wire-time
//! report and a summary line. Diagnostics go to stderr, the report and summary to stdout.
//! Exit 0 valid (warnings allowed), 1 invalid, 2 unreadable.

use crate::config::{self, LoadError};

use super::Global;

#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// Print only errors, warnings and the summary line (no per-bus report).
    #[arg(long, short = 'q')]
    pub quiet: bool,
}

pub async fn run(args: CheckArgs, global: &Global) -> anyhow::Result<u8> {
    let path = &global.config;
    let name = path.display();
    match config::load_file(path) {
        Err(LoadError::Read { path, source }) => {
            eprintln!("error: cannot read {}: {source}", path.display());
            println!("{}: unreadable", path.display());
            Ok(2)
        }
        Err(LoadError::Invalid { errors, .. }) => {
            for e in &errors {
                eprintln!("error: {e}");
            }
            let n = errors.len();
            println!("{name}: {n} error{}", if n == 1 { "" } else { "s" });
            Ok(1)
        }
        Ok(loaded) => {
            for w in &loaded.warnings {
                eprintln!("warning: {w}");
            }
            if !args.quiet {
                for line in config::check_report(&loaded) {
                    println!("{line}");
                }
            }
            let s = config::summary(&loaded.config);
            let disabled = if s.disabled_devices > 0 {
                format!(" ({} disabled)", s.disabled_devices)
            } else {
                String::new()
            };
            let warnings = match loaded.warnings.len() {
                0 => String::new(),
                1 => ", 1 warning".to_string(),
                n => format!(", {n} warnings"),
            };
            println!(
                "{name}: valid, {} buses, {} devices{disabled}, {} points, {} reads per cycle{warnings}",
                s.buses, s.devices, s.points, s.reads
            );
            Ok(0)
        }
    }
}
