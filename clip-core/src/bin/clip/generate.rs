//! `clip generate`: the optimisation with every part of the engine exposed
//! (`clip_core::app::generate`), run and saved as the experiment binaries do.

use clip_core::app::generate::GenerateArgs;
use clip_core::app::{interrupt, run};
use std::process::ExitCode;

/// Runs the generation; status 130 when Ctrl-C stopped it (the images reached are saved).
pub fn run(args: &GenerateArgs) -> anyhow::Result<ExitCode> {
    let spec = args.spec()?;
    interrupt::install();
    let results = run::run(&spec)?;
    if results.iter().any(|r| r.record.interrupted) {
        return Ok(ExitCode::from(interrupt::INTERRUPTED_EXIT));
    }
    Ok(ExitCode::SUCCESS)
}
