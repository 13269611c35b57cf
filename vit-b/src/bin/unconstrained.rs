//! unconstrained run for ViT-B/32 (skeleton: the optimisation loop arrives with the experiment issue).
fn main() -> anyhow::Result<()> {
    anyhow::bail!("'unconstrained' for ViT-B/32 is not implemented yet")
}
