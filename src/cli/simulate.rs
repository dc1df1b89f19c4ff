//! `gasdtu simulate`: (being built).

use super::Global;

#[derive(Debug, clap::Args)]
pub struct SimulateArgs {}

pub async fn run(_args: SimulateArgs, _global: &Global) -> anyhow::Result<u8> {
    anyhow::bail!("gasdtu simulate is not built yet")
}
