//! `gasdtu decode [FILE|-] [--pretty]`: turns a captured MQTT payload of any gasdtu topic
//! (data as JSON or compact CBOR, alarm, event, cmd/res, config/state, health, status) into
//! JSON on stdout, e.g. from `mosquitto_sub -C 1 -t 'gasdtu/+/data' > msg.bin`; with
//! `--pretty` it also says on stderr what it recognised. The decoding lives in
//! `uplink::payload`.

use std::io::Read;
use std::path::PathBuf;

use anyhow::Context;

use super::Global;

#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  mosquitto_sub -C 1 -t 'gasdtu/gw-1/data' > msg.bin && gasdtu decode msg.bin --pretty
  cat msg.cbor | gasdtu decode -")]
pub struct DecodeArgs {
    /// Payload file; `-` or nothing reads stdin.
    pub file: Option<PathBuf>,
    /// Indent the JSON output, and say on stderr which message it is.
    #[arg(long)]
    pub pretty: bool,
}

/// Largest capture read: far above any payload gasdtu publishes (its MQTT client refuses
/// packets over `max_payload` + 4 KiB, and the broker's default limit is 256 MiB for others).
const MAX_CAPTURE: u64 = 16 << 20;

pub async fn run(args: DecodeArgs, _global: &Global) -> anyhow::Result<u8> {
    let origin = match &args.file {
        Some(p) if p.as_os_str() != "-" => p.display().to_string(),
        _ => "stdin".to_string(),
    };
    let bytes = match args.file.as_deref() {
        Some(p) if p.as_os_str() != "-" => {
            let f = std::fs::File::open(p).with_context(|| format!("cannot read {origin}"))?;
            read_bounded(f).with_context(|| format!("cannot read {origin}"))?
        }
        _ => read_bounded(std::io::stdin()).context("cannot read stdin")?,
    };
    if bytes.len() as u64 > MAX_CAPTURE {
        anyhow::bail!("{origin}: more than {MAX_CAPTURE} bytes: not one MQTT payload of gasdtu");
    }
    let (kind, v) = crate::uplink::payload::decode_kind(&bytes)
        .with_context(|| format!("{origin}: {} bytes", bytes.len()))?;
    if args.pretty {
        eprintln!("{origin}: {} bytes, {kind} message", bytes.len());
    }
    let text = if args.pretty {
        serde_json::to_string_pretty(&v)?
    } else {
        serde_json::to_string(&v)?
    };
    println!("{text}");
    Ok(0)
}

/// At most `MAX_CAPTURE` + 1 bytes (one more tells "too large").
fn read_bounded(r: impl Read) -> std::io::Result<Vec<u8>> {
    let mut b = Vec::new();
    r.take(MAX_CAPTURE + 1).read_to_end(&mut b)?;
    Ok(b)
}
