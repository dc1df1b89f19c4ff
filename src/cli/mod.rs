//! The subcommands of the `gasdtu` binary, one module each. This is the only layer that uses
//! anyhow; everything below returns typed errors.

pub mod address;
pub mod busargs;
pub mod check;
pub mod cmd;
pub mod decode;
pub mod demo;
pub mod export;
pub mod keygen;
pub mod modem;
pub mod named;
pub mod ops;
pub mod push;
pub mod queue;
pub mod read;
pub mod run;
pub mod scan;
pub mod simulate;
pub mod socket;
pub mod status;
pub mod values;
pub mod write;

use std::path::PathBuf;

/// Options shared by every subcommand.
#[derive(Debug, Clone)]
pub struct Global {
    pub config: PathBuf,
    pub log_level: Option<String>,
}

/// Set up logging once for a subcommand (`RUST_LOG` style filter): to journald with structured
/// fields when systemd connected stderr to the journal (`JOURNAL_STREAM` names our stderr),
/// otherwise plain lines on stderr.
pub fn init_logging(level: &str) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;

    let filter = || {
        tracing_subscriber::EnvFilter::try_new(level)
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"))
    };
    if crate::gateway::systemd::stderr_is_journal() {
        match tracing_journald::layer() {
            Ok(journald) => {
                let journald = journald.with_syslog_identifier("gasdtu".to_string());
                if tracing_subscriber::registry()
                    .with(filter())
                    .with(journald)
                    .try_init()
                    .is_ok()
                {
                    return;
                }
            }
            // Fall through to stderr, which systemd forwards to the journal as plain lines.
            Err(e) => eprintln!("gasdtu: journald unavailable ({e}), logging to stderr"),
        }
    }
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter())
        .with_writer(std::io::stderr)
        // Colour only for a person at a terminal, never into pipes or the journal.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}
