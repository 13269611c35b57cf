//! `clip sweep SPEC.toml`: any bytes as the SPEC (written to a file in an empty directory, as the
//! tool reads it), then its plan streamed — at most 2 000 runs, each with its request validated
//! and its `--dry-run` fields written. Must hold: a plan or an error, never a panic, hang or
//! unbounded allocation, whatever the axes multiply to; a `--dry-run` field holds no tab or line
//! break.
#![no_main]

use clip_app::sweep::{plan, spec::Spec, tsv_field};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(dir) = tempfile::tempdir() else { return };
    let path = dir.path().join("spec.toml");
    if std::fs::write(&path, data).is_err() {
        return;
    }
    let Ok(spec) = Spec::read(&path) else { return };
    let Ok(plan) = plan::Plan::new(&spec) else { return };
    let _ = plan.len();
    for run in plan.runs().take(2_000) {
        let _ = run.request(dir.path()).validate();
        for field in [run.name.as_str(), run.prompt.as_str(), &run.model.label()] {
            let shown = tsv_field(field);
            assert!(!shown.contains(['\t', '\n', '\r']), "{shown:?}");
        }
    }
});
