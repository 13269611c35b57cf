//! constrained run for RN50 (skeleton: the optimisation loop arrives with the experiment issue).
fn main() -> anyhow::Result<()> {
    anyhow::bail!("'constrained' for RN50 is not implemented yet")
}
