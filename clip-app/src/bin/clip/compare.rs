//! `clip compare`: scores every result under a results directory (and real photos) with every
//! CLIP model — as they are and after each robustness probe — and writes `transfer.csv`,
//! `transfer.png`, `contact_sheet.png`, `curves.png`, `robustness.csv`, `robustness.png` and
//! `report.md` there. The logic is `clip_app::compare`.

pub use clip_app::compare::args::CompareArgs;
use clip_app::compare::{self, CompareError};
use clip_app::interrupt;

pub fn run(args: &CompareArgs) -> anyhow::Result<()> {
    let options = args.options(interrupt::requested)?;
    // Ctrl-C stops between batches and between pictures; nothing is written then (status 130).
    interrupt::install();
    let comparison = compare::run(&options).map_err(|e| match e {
        CompareError::Interrupted(stopped) => anyhow::Error::new(stopped),
        e => e.into(),
    })?;
    let n_models = comparison.scoring_models().count();
    println!(
        "scored {} image(s) with {n_models} model(s); {} warning(s)",
        comparison.images.len(),
        comparison.warnings.len()
    );
    for path in &comparison.written {
        println!("wrote {}", path.display());
    }
    Ok(())
}
