//! `gasdtu read`: (being built).

use super::Global;

#[derive(Debug, clap::Args)]
pub struct ReadArgs {}

pub async fn run(_args: ReadArgs, _global: &Global) -> anyhow::Result<u8> {
    anyhow::bail!("gasdtu read is not built yet")
}
