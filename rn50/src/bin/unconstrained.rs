//! unconstrained run for RN50 (skeleton: the optimisation loop arrives with the experiment issue).
fn main() -> anyhow::Result<()> {
    anyhow::bail!("'unconstrained' for RN50 is not implemented yet")
}
