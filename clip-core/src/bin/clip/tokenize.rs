#[derive(clap::Args, Debug)]
pub struct TokenizeArgs {}
pub fn run(_: &TokenizeArgs) -> anyhow::Result<()> {
    anyhow::bail!("stub")
}
