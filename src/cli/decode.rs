//! `gasdtu decode [FILE|-] [--pretty]`: turns a captured MQTT payload (JSON or compact CBOR,
//! detected from the first byte) into the documented JSON shape on stdout, e.g. from
//! `mosquitto_sub -C 1 -t 'gasdtu/+/data' > msg.bin`. The decoding lives in `uplink::payload`.

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
    /// Indent the JSON output.
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
    let v = crate::uplink::decode(&bytes)
        .with_context(|| format!("{origin}: {} bytes", bytes.len()))?;
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
