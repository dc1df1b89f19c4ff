//! `gasdtu demo`: (being built).

use super::Global;

#[derive(Debug, clap::Args)]
pub struct DemoArgs {}

pub async fn run(_args: DemoArgs, _global: &Global) -> anyhow::Result<u8> {
    anyhow::bail!("gasdtu demo is not built yet")
}
