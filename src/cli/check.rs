//! `gasdtu check`: (being built).

use super::Global;

#[derive(Debug, clap::Args)]
pub struct CheckArgs {}

pub async fn run(_args: CheckArgs, _global: &Global) -> anyhow::Result<u8> {
    anyhow::bail!("gasdtu check is not built yet")
}
