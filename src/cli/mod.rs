//! The subcommands of the `gasdtu` binary, one module each. This is the only layer that uses
//! anyhow; everything below returns typed errors.

pub mod busargs;
pub mod check;
pub mod decode;
pub mod demo;
pub mod export;
pub mod queue;
pub mod read;
pub mod run;
pub mod scan;
pub mod simulate;
pub mod status;
pub mod write;

use std::path::PathBuf;

/// Options shared by every subcommand.
#[derive(Debug, Clone)]
pub struct Global {
    pub config: PathBuf,
    pub log_level: Option<String>,
}

/// Set up stderr logging once for a subcommand (`RUST_LOG` style filter).
pub fn init_logging(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour only for a person at a terminal, never into pipes or the journal.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}
