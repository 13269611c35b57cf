//! Preparing the outputs before anything slow: the result names, the refusal to replace another
//! prompt's record, the results' locks, the output directory created and probed for writing.

use super::*;
use crate::output::{self, NewDirs, ResultLock};
use std::path::PathBuf;

/// The outputs, ready to be written: names, locks, the directory.
pub(super) struct Prepared {
    pub(super) dir: PathBuf,
    pub(super) stems: Vec<String>,
    /// Dropped before `new_dirs`: their files go first, so a new directory can be empty again.
    pub(super) _locks: Vec<ResultLock>,
    pub(super) new_dirs: NewDirs,
}

/// The result names, checked against the records already in the directory, locked, and the
/// directory created and probed for writing.
pub(super) fn prepare(
    spec: &RunRequest,
    resolved: &Resolved,
    token: &str,
    reporter: &mut dyn Reporter,
) -> anyhow::Result<Prepared> {
    let stems = output::file_stems_named(&resolved.names, token, &resolved.prompts)?;
    let dir = spec.out.join(token);
    let new_dirs = output::create_writable_dir(&dir)?;
    let mut locks = Vec::new();
    let mut stale = 0;
    for (i, (stem, prompt)) in stems.iter().zip(&resolved.prompts).enumerate() {
        let (lock, removed) = ResultLock::take(&dir, stem)?;
        locks.push(lock);
        stale += removed;
        let run_id = resolved.rows.get(i).map(|r| r.run_id.as_str());
        output::check_existing(&dir, stem, prompt, run_id)?;
    }
    if stale > 0 {
        reporter.note(&format!(
            "removed {stale} temporary file(s) that an earlier, killed run left in {}",
            dir.display()
        ));
    }
    Ok(Prepared { dir, stems, _locks: locks, new_dirs })
}
