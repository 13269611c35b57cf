//! constrained run for ViT-L/14 (skeleton: the optimisation loop arrives with the experiment issue).
fn main() -> anyhow::Result<()> {
    anyhow::bail!("'constrained' for ViT-L/14 is not implemented yet")
}
