//! What is done: a run counts as done when a JSON record with its id (`run_id`) exists under the
//! output directory, was not interrupted, did not stop on a non-finite loss, and its PNG is there.
//! A run that failed has `<out>/.sweep/failed/<id>.json` with its error (removed once it is done);
//! one interrupted (Ctrl-C, its record says so) or killed (no record) is pending.

use super::plan::Run;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// A run's state.
#[derive(Debug, Clone, PartialEq)]
pub enum RunState {
    Done,
    Failed(String),
    Pending,
}

impl RunState {
    pub fn word(&self) -> &'static str {
        match self {
            Self::Done => "done",
            Self::Failed(_) => "failed",
            Self::Pending => "pending",
        }
    }
}

/// A result record found under the output directory.
#[derive(Debug, Clone)]
struct Found {
    frozen_at_step: Option<u64>,
    /// Finished: not interrupted, not frozen, its PNG there (`output::finished`).
    done: bool,
}

/// A failed run's file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Failure {
    pub run_id: String,
    pub model: String,
    pub name: String,
    pub prompt: String,
    pub seed: u64,
    pub error: String,
}

/// The states of the runs under `out`.
pub struct States {
    found: HashMap<String, Found>,
    failed: HashMap<String, Failure>,
}

/// `<out>/.sweep`: the sweep's own files.
pub fn sweep_dir(out: &Path) -> PathBuf {
    out.join(".sweep")
}

fn failed_dir(out: &Path) -> PathBuf {
    sweep_dir(out).join("failed")
}

impl States {
    /// Reads the records in `out/*/` and the failures in `out/.sweep/failed/`.
    pub fn scan(out: &Path) -> Self {
        let mut found = HashMap::new();
        for dir in read_dirs(out) {
            let Ok(entries) = std::fs::read_dir(&dir) else { continue };
            for entry in entries.flatten() {
                let path = entry.path();
                if path.extension().is_none_or(|e| e != "json") {
                    continue;
                }
                if let Some((id, record)) = read_record(&dir, &path) {
                    found.insert(id, record);
                }
            }
        }
        let mut failed = HashMap::new();
        if let Ok(entries) = std::fs::read_dir(failed_dir(out)) {
            for entry in entries.flatten() {
                let Ok(bytes) = std::fs::read(entry.path()) else { continue };
                if let Ok(f) = serde_json::from_slice::<Failure>(&bytes) {
                    failed.insert(f.run_id.clone(), f);
                }
            }
        }
        Self { found, failed }
    }

    pub fn of(&self, run: &Run) -> RunState {
        match self.found.get(&run.id) {
            Some(f) if f.frozen_at_step.is_some() => {
                RunState::Failed(frozen_error(f.frozen_at_step.unwrap_or_default()))
            }
            Some(f) if f.done => RunState::Done,
            _ => match self.failed.get(&run.id) {
                Some(f) => RunState::Failed(f.error.clone()),
                None => RunState::Pending,
            },
        }
    }
}

/// A result record at `path` in `dir`: its run id and what it says.
fn read_record(dir: &Path, path: &Path) -> Option<(String, Found)> {
    let bytes = std::fs::read(path).ok()?;
    let record = serde_json::from_slice::<serde_json::Value>(&bytes).ok()?;
    let id = record.get("run_id").and_then(|v| v.as_str())?;
    let found = Found {
        frozen_at_step: record.get("frozen_at_step").and_then(|v| v.as_u64()),
        done: crate::output::finished(dir, &record),
    };
    Some((id.to_string(), found))
}

/// Whether `run` is done on disk now: its record read where its files go (the folder of its
/// models' token, known before loading for every sweep run) — for a run another process (a second
/// sweep on the same `out`) may have finished since this one scanned.
pub fn done_now(out: &Path, run: &Run) -> bool {
    let Some(token) = run.token() else { return false };
    let dir = out.join(&token);
    let record = dir.join(format!("{}.json", run.stem(&token)));
    read_record(&dir, &record).is_some_and(|(id, found)| id == run.id && found.done)
}

/// The error of a run stopped by a non-finite loss.
pub fn frozen_error(step: u64) -> String {
    format!(
        "the loss or gradient was not finite (NaN/Inf) at step {step}; the image before it was \
         saved (try a lower learning_rate, or precision = \"fp32\")"
    )
}

/// The result directories under `out` (not its hidden ones).
fn read_dirs(out: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(out) else { return Vec::new() };
    entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .map(|e| e.path())
        .collect()
}

/// Records that `run` failed with `error`.
pub fn record_failure(out: &Path, run: &Run, error: &str) -> anyhow::Result<()> {
    let dir = failed_dir(out);
    std::fs::create_dir_all(&dir)?;
    let failure = Failure {
        run_id: run.id.clone(),
        model: run.model.label(),
        name: run.name.clone(),
        prompt: run.prompt.clone(),
        seed: run.seed,
        error: error.to_string(),
    };
    let bytes = serde_json::to_vec_pretty(&failure)?;
    crate::output::write_atomic(&dir.join(format!("{}.json", run.id)), &bytes)?;
    Ok(())
}

/// Forgets an earlier failure of `run` (it is done now).
pub fn clear_failure(out: &Path, run: &Run) {
    let _ = std::fs::remove_file(failed_dir(out).join(format!("{}.json", run.id)));
}
