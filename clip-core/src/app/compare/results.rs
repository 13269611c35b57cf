//! Finding the experiment's results under a directory: each `<stem>.png` with its `<stem>.json`
//! record (and `<stem>.csv` history, when there), as `output.rs` writes them; and parsing the
//! `--real PHOTO=PROMPT` flags.
//!
//! Nothing found here is fatal: a PNG without its JSON, a JSON that does not parse, or a file that
//! is not a result becomes a warning or a note, and the rest is compared.

use super::{CompareError, OUTPUT_FILES};
use serde::Deserialize;
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// `generated_by` of the real photos given with `--real`.
pub const REAL_PHOTO: &str = "real photo";

/// The fields of a run's JSON record (`output::RunRecord`) that the comparison uses; all but the
/// prompt, model and mode are optional so that older or hand-made records still compare.
#[derive(Debug, Clone, Deserialize)]
pub struct RunInfo {
    pub prompt: String,
    pub model: String,
    pub mode: String,
    #[serde(default)]
    pub weights: Option<String>,
    #[serde(default)]
    pub weights_sha256: Option<String>,
    #[serde(default)]
    pub steps: Option<u64>,
    #[serde(default)]
    pub learning_rate: Option<f64>,
    #[serde(default)]
    pub tv_weight: Option<f64>,
    #[serde(default)]
    pub seed: Option<u64>,
    #[serde(default)]
    pub device: Option<String>,
    #[serde(default)]
    pub initial_similarity: Option<f64>,
    #[serde(default)]
    pub final_similarity: Option<f64>,
    #[serde(default)]
    pub best_step: Option<u64>,
    #[serde(default)]
    pub steps_per_second: Option<f64>,
    #[serde(default)]
    pub wall_seconds: Option<f64>,
}

/// One result of the experiment.
#[derive(Debug, Clone)]
pub struct ResultEntry {
    pub png: PathBuf,
    pub json: PathBuf,
    pub csv: Option<PathBuf>,
    pub run: RunInfo,
}

/// A `--real PHOTO=PROMPT` flag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RealPhoto {
    pub path: PathBuf,
    pub prompt: String,
}

impl std::str::FromStr for RealPhoto {
    type Err = String;

    /// `PHOTO=PROMPT`, split at the first `=` (a prompt may hold `=`, a path should not).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once('=') {
            Some((path, prompt)) if !path.is_empty() => {
                Ok(Self { path: PathBuf::from(path), prompt: prompt.to_string() })
            }
            _ => Err(format!("expected PHOTO=PROMPT, got {s:?}")),
        }
    }
}

/// What a directory holds.
#[derive(Debug, Default)]
pub struct Discovery {
    /// Sorted by path.
    pub results: Vec<ResultEntry>,
    /// Results that could not be used (PNG without JSON, unreadable JSON).
    pub warnings: Vec<String>,
    /// Files that are not results, ignored.
    pub notes: Vec<String>,
}

/// The model name a results token stands for (the seed's directory and file-name tokens), for
/// records that lack their `model` field.
pub fn model_for_token(token: &str) -> &str {
    crate::clip::released::by_token(token).map_or(token, |m| m.name)
}

/// Walks `dir` (recursively, in sorted order) for results; `clip compare`'s own outputs at the top
/// level are skipped silently.
pub fn find_results(dir: &Path) -> Result<Discovery, CompareError> {
    let mut files = Vec::new();
    walk(dir, &mut files)?;
    files.sort();
    let mut found = Discovery::default();
    let set: HashSet<&PathBuf> = files.iter().collect();
    let has = |p: &PathBuf| set.contains(p);
    for file in &files {
        let rel = super::relative(dir, file);
        if file.parent() == Some(dir) && OUTPUT_FILES.contains(&rel.as_str()) {
            continue;
        }
        let ext = file.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
        match ext.as_deref() {
            Some("png") => {
                let json = file.with_extension("json");
                if !has(&json) {
                    let message = format!(
                        "{rel} has no {} next to it: skipped (not a result of the experiment?)",
                        file_name(&json)
                    );
                    eprintln!("warning: {message}");
                    found.warnings.push(message);
                    continue;
                }
                match read_record(&json, dir) {
                    Ok(run) => {
                        let csv = Some(file.with_extension("csv")).filter(|c| has(c));
                        found.results.push(ResultEntry { png: file.clone(), json, csv, run });
                    }
                    Err(message) => {
                        eprintln!("warning: {message}");
                        found.warnings.push(message);
                    }
                }
            }
            Some("json") | Some("csv") if has(&file.with_extension("png")) => {}
            Some("json") | Some("csv") => {
                let message = format!(
                    "{rel}: no {} next to it; ignored",
                    file_name(&file.with_extension("png"))
                );
                eprintln!("note: {message}");
                found.notes.push(message);
            }
            _ => {
                let message = format!("{rel}: not a result (PNG + JSON); ignored");
                eprintln!("note: {message}");
                found.notes.push(message);
            }
        }
    }
    Ok(found)
}

fn file_name(path: &Path) -> String {
    path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

/// A run's record; a missing `model` is taken from the results token of its directory.
fn read_record(json: &Path, dir: &Path) -> Result<RunInfo, String> {
    let rel = super::relative(dir, json);
    let text =
        std::fs::read_to_string(json).map_err(|e| format!("{rel}: {e}; its PNG is skipped"))?;
    let mut value: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| format!("{rel}: not valid JSON ({e}); its PNG is skipped"))?;
    if value.get("model").is_none() {
        if let (Some(obj), Some(token)) = (
            value.as_object_mut(),
            json.parent().and_then(|p| p.file_name()).and_then(|n| n.to_str()),
        ) {
            obj.insert("model".into(), model_for_token(token).into());
        }
    }
    serde_json::from_value(value)
        .map_err(|e| format!("{rel}: not a run record ({e}); its PNG is skipped"))
}

fn walk(dir: &Path, files: &mut Vec<PathBuf>) -> Result<(), CompareError> {
    let io = |source| CompareError::Io { path: dir.to_path_buf(), source };
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let path = entry.path();
        // Directories are entered only when real ones: a symbolic link could loop.
        if entry.file_type().map_err(io)?.is_dir() {
            walk(&path, files)?;
        } else if path.is_file() {
            files.push(path);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_photo_flags() {
        let photo: RealPhoto = "dog.jpg=A dog = a pet".parse().expect("valid");
        assert_eq!(photo, RealPhoto { path: "dog.jpg".into(), prompt: "A dog = a pet".into() });
        assert!("dog.jpg".parse::<RealPhoto>().is_err());
        assert!("=A dog".parse::<RealPhoto>().is_err());
    }

    #[test]
    fn tokens_name_models() {
        assert_eq!(model_for_token("ViT-B"), "ViT-B/32");
        assert_eq!(model_for_token("ViT-L-14"), "ViT-L/14");
        assert_eq!(model_for_token("RN50"), "RN50");
    }
}
