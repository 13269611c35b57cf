//! `clip generate`: the optimisation with every part of the engine exposed
//! (`clip_app::generate`), run and saved as the experiment binaries do.

use clip_app::cli::{is_usage_error, USAGE_EXIT};
use clip_app::generate::GenerateArgs;
use clip_app::{interrupt, run};
use std::process::ExitCode;

/// Runs the generation; status 130 when Ctrl-C stopped it (the images reached are saved), 2 for a
/// request the flags cannot make (nothing written).
pub fn run(args: &GenerateArgs) -> anyhow::Result<ExitCode> {
    let usage = |err: anyhow::Error| -> anyhow::Result<ExitCode> {
        if is_usage_error(&err) {
            eprintln!("error: {}", interrupt::error_line(&err));
            Ok(ExitCode::from(USAGE_EXIT))
        } else {
            Err(err)
        }
    };
    let spec = match args.request() {
        Ok(spec) => spec,
        Err(err) => return usage(err),
    };
    interrupt::install();
    let results = match run::run(&spec) {
        Ok(results) => results,
        Err(err) => return usage(err),
    };
    if results.iter().any(|r| r.record.interrupted) {
        return Ok(ExitCode::from(interrupt::INTERRUPTED_EXIT));
    }
    Ok(ExitCode::SUCCESS)
}
