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

pub async fn run(args: DecodeArgs, _global: &Global) -> anyhow::Result<u8> {
    let bytes = match args.file.as_deref() {
        None => read_stdin()?,
        Some(p) if p.as_os_str() == "-" => read_stdin()?,
        Some(p) => std::fs::read(p).with_context(|| format!("cannot read {}", p.display()))?,
    };
    let origin = match &args.file {
        Some(p) if p.as_os_str() != "-" => p.display().to_string(),
        _ => "stdin".to_string(),
    };
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

fn read_stdin() -> anyhow::Result<Vec<u8>> {
    let mut b = Vec::new();
    std::io::stdin()
        .read_to_end(&mut b)
        .context("cannot read stdin")?;
    Ok(b)
}
