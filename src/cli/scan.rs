//! `gasdtu scan`: (being built).

use super::Global;

#[derive(Debug, clap::Args)]
pub struct ScanArgs {}

pub async fn run(_args: ScanArgs, _global: &Global) -> anyhow::Result<u8> {
    anyhow::bail!("gasdtu scan is not built yet")
}
