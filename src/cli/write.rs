//! `gasdtu write`: (being built).

use super::Global;

#[derive(Debug, clap::Args)]
pub struct WriteArgs {}

pub async fn run(_args: WriteArgs, _global: &Global) -> anyhow::Result<u8> {
    anyhow::bail!("gasdtu write is not built yet")
}
