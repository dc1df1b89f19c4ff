//! `gasdtu run`: (being built).

use super::Global;

#[derive(Debug, clap::Args)]
pub struct RunArgs {}

pub async fn run(_args: RunArgs, _global: &Global) -> anyhow::Result<u8> {
    anyhow::bail!("gasdtu run is not built yet")
}
