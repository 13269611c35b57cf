//! Finding the experiment's results under a directory: each `<stem>.png` with its `<stem>.json`
//! record (and `<stem>.csv` history, when there), as `output.rs` writes them; and parsing the
//! `--real PHOTO=PROMPT` flags.
//!
//! Nothing found here is fatal but an unreadable results directory itself: a PNG without its JSON,
//! a JSON that does not parse or does not belong to its PNG (`image_sha256`), a subdirectory that
//! cannot be read, or a file that is not a result becomes a warning or a note, and the rest is
//! compared. Temporary and lock files left by killed runs are noted as such.

use super::{CompareError, OUTPUT_FILES};
use crate::clip::excerpt::excerpt;
use serde::{Deserialize, Deserializer};
use sha2::{Digest, Sha256};
use std::borrow::Cow;
use std::collections::HashSet;
use std::io::Read;
use std::path::{Path, PathBuf};

/// `generated_by` of the real photos given with `--real`.
pub const REAL_PHOTO: &str = "real photo";

/// The largest run record read: a record is a few kilobytes (its prompt included); a larger
/// `.json` is not one, and is not read into memory.
const MAX_RECORD_BYTES: u64 = 16 << 20;

/// The fields of a run's JSON record (`output::RunRecord`) that the comparison uses; all but the
/// prompt, model and mode are optional so that older or hand-made records still compare, and an
/// optional field of the wrong type, or a number that is not finite, reads as missing ("–").
#[derive(Debug, Clone, Deserialize)]
pub struct RunInfo {
    pub prompt: String,
    pub model: String,
    pub mode: String,
    #[serde(default, deserialize_with = "lenient_string")]
    pub weights: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub weights_sha256: Option<String>,
    /// Lower-case hex SHA-256 of the PNG's bytes, as the run wrote it: a PNG that does not match
    /// is not the image this record describes.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "lenient_string")]
    pub image_sha256: Option<String>,
    #[serde(default, deserialize_with = "lenient_u64")]
    pub steps: Option<u64>,
    #[serde(default, deserialize_with = "lenient_f64")]
    pub learning_rate: Option<f64>,
    #[serde(default, deserialize_with = "lenient_f64")]
    pub tv_weight: Option<f64>,
    #[serde(default, deserialize_with = "lenient_u64")]
    pub seed: Option<u64>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub device: Option<String>,
    #[serde(default, deserialize_with = "lenient_f64")]
    pub initial_similarity: Option<f64>,
    #[serde(default, deserialize_with = "lenient_f64")]
    pub final_similarity: Option<f64>,
    #[serde(default, deserialize_with = "lenient_u64")]
    pub best_step: Option<u64>,
    /// The step at which the prompt's loss stopped being finite (its history is NaN from there).
    #[serde(default, deserialize_with = "lenient_u64")]
    pub frozen_at_step: Option<u64>,
    #[serde(default, deserialize_with = "lenient_f64")]
    pub steps_per_second: Option<f64>,
    #[serde(default, deserialize_with = "lenient_f64")]
    pub wall_seconds: Option<f64>,
}

fn lenient_f64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    Ok(serde_json::Value::deserialize(d)?.as_f64().filter(|v| v.is_finite()))
}

fn lenient_u64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    Ok(serde_json::Value::deserialize(d)?.as_u64())
}

fn lenient_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(serde_json::Value::deserialize(d)?.as_str().map(str::to_string))
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
            _ => Err(format!("expected PHOTO=PROMPT, got {}", excerpt(s))),
        }
    }
}

/// What a directory holds.
#[derive(Debug, Default)]
pub struct Discovery {
    /// Sorted by path.
    pub results: Vec<ResultEntry>,
    /// Results that could not be used (PNG without JSON, unreadable JSON, a JSON that does not
    /// belong to its PNG) and directories that could not be read.
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
    find_results_with(dir, &|| false)
}

/// [`find_results`], asking `stop` between files whether to give up ([`CompareError::Interrupted`]).
pub fn find_results_with(dir: &Path, stop: &dyn Fn() -> bool) -> Result<Discovery, CompareError> {
    let mut found = Discovery::default();
    let mut files = Vec::new();
    let entries =
        std::fs::read_dir(dir).map_err(|source| CompareError::Io { path: dir.into(), source })?;
    walk(dir, entries, &mut files, &mut found.warnings);
    files.sort();
    let set: HashSet<&PathBuf> = files.iter().collect();
    let has = |p: &PathBuf| set.contains(p);
    for file in &files {
        if stop() {
            return Err(super::interrupted("while looking for results"));
        }
        let rel = super::relative(dir, file);
        if file.parent() == Some(dir) && OUTPUT_FILES.contains(&rel.as_str()) {
            continue;
        }
        if left_by_a_killed_run(file) {
            let message = format!(
                "{rel}: left by a run that was killed (or is still running); ignored, and safe to \
                 delete once no run writes here"
            );
            eprintln!("note: {message}");
            found.notes.push(message);
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
                match read_record(&json, dir).and_then(|run| belongs(file, &json, dir, run)) {
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

/// What an interrupted write leaves: `output::write_atomic`'s temporary files (`.tmp-…`), its
/// writability probes (`.clip-rs-probe…`) and lock files (`.….lock`).
fn left_by_a_killed_run(file: &Path) -> bool {
    let name = file_name(file);
    name.starts_with(".tmp-")
        || name.starts_with(".clip-rs-probe")
        || (name.starts_with('.') && name.ends_with(".lock"))
}

fn file_name(path: &Path) -> String {
    path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

/// A run's record; a missing `model` is taken from the results token of its directory.
fn read_record(json: &Path, dir: &Path) -> Result<RunInfo, String> {
    let rel = super::relative(dir, json);
    let skipped = |e: std::io::Error| format!("{rel}: {e}; its PNG is skipped");
    let mut bytes = Vec::new();
    std::fs::File::open(json)
        .and_then(|f| f.take(MAX_RECORD_BYTES + 1).read_to_end(&mut bytes))
        .map_err(skipped)?;
    if bytes.len() as u64 > MAX_RECORD_BYTES {
        return Err(format!(
            "{rel}: larger than {} MiB, not a run record; its PNG is skipped",
            MAX_RECORD_BYTES >> 20
        ));
    }
    let text = String::from_utf8(bytes)
        .map_err(|_| format!("{rel}: not UTF-8 text, not a run record; its PNG is skipped"))?;
    let text = python_non_finite_to_null(&text);
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

/// Python's `json` writes non-finite floats as the bare words `NaN`, `Infinity` and `-Infinity`,
/// which JSON does not have; outside strings they are read as `null` (a missing number).
fn python_non_finite_to_null(text: &str) -> Cow<'_, str> {
    if !text.contains("NaN") && !text.contains("Infinity") {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let (mut in_string, mut escaped) = (false, false);
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if in_string {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => in_string = false,
                _ => {}
            }
        } else if c == '"' {
            in_string = true;
        } else if let Some(word) =
            ["-Infinity", "Infinity", "NaN"].into_iter().find(|w| rest.starts_with(w))
        {
            out.push_str("null");
            rest = &rest[word.len()..];
            continue;
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    Cow::Owned(out)
}

/// The record, when the PNG is the image it describes: a run writes the PNG, then its JSON with
/// the PNG's SHA-256, so a mismatch means a run killed between the two writes (the JSON of an
/// earlier run next to a newer PNG) or a file replaced since.
fn belongs(png: &Path, json: &Path, dir: &Path, run: RunInfo) -> Result<RunInfo, String> {
    let Some(recorded) = run.image_sha256.as_deref() else { return Ok(run) };
    let rel = super::relative(dir, png);
    let actual = sha256_hex(png).map_err(|e| format!("{rel}: {e}; skipped"))?;
    if actual.eq_ignore_ascii_case(recorded.trim()) {
        return Ok(run);
    }
    Err(format!(
        "{rel} and {} do not belong together: the record's image_sha256 is {}, the PNG's is {actual} \
         (a run killed between writing them, or a file replaced since); skipped",
        file_name(json),
        excerpt(recorded)
    ))
}

fn sha256_hex(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// Collects the files below a directory whose `entries` are open. A subdirectory that cannot be
/// read (no permission, a path longer than the system allows) is a warning and is skipped: the
/// rest of the results are still compared.
fn walk(
    dir: &Path,
    entries: std::fs::ReadDir,
    files: &mut Vec<PathBuf>,
    warnings: &mut Vec<String>,
) {
    for entry in entries {
        let entry = match entry {
            Ok(entry) => entry,
            Err(e) => {
                unreadable(dir, &e, warnings);
                break;
            }
        };
        let path = entry.path();
        let file_type = match entry.file_type() {
            Ok(t) => t,
            Err(e) => {
                unreadable(&path, &e, warnings);
                continue;
            }
        };
        // Directories are entered only when real ones: a symbolic link could loop.
        if file_type.is_dir() {
            match std::fs::read_dir(&path) {
                Ok(sub) => walk(&path, sub, files, warnings),
                Err(e) => unreadable(&path, &e, warnings),
            }
        } else if file_type.is_file() || path.is_file() {
            files.push(path);
        }
    }
}

fn unreadable(path: &Path, e: &std::io::Error, warnings: &mut Vec<String>) {
    let message =
        format!("{}: cannot be read ({e}); the results in it are skipped", path.display());
    eprintln!("warning: {message}");
    warnings.push(message);
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
    fn python_non_finite_numbers_read_as_missing() {
        let text = r#"{"prompt": "NaN \"Infinity\"", "model": "m", "mode": "x",
            "final_similarity": NaN, "initial_similarity": -Infinity, "steps_per_second": Infinity,
            "steps": "many", "seed": -3, "learning_rate": 0.5}"#;
        let fixed = python_non_finite_to_null(text);
        let run: RunInfo = serde_json::from_str(&fixed).expect("reads");
        assert_eq!(run.prompt, "NaN \"Infinity\"");
        assert_eq!(run.final_similarity, None);
        assert_eq!(run.initial_similarity, None);
        assert_eq!(run.steps_per_second, None);
        assert_eq!((run.steps, run.seed, run.learning_rate), (None, None, Some(0.5)));
    }

    #[test]
    fn files_left_by_killed_runs() {
        for name in [".tmp-a1b2c3", ".tmp-x.png", ".clip-rs-probeXYZ", ".results.lock"] {
            assert!(left_by_a_killed_run(Path::new(name)), "{name}");
        }
        for name in ["tmp-a.png", "a.lock", "x.png", ".hidden"] {
            assert!(!left_by_a_killed_run(Path::new(name)), "{name}");
        }
    }

    #[test]
    fn tokens_name_models() {
        assert_eq!(model_for_token("ViT-B"), "ViT-B/32");
        assert_eq!(model_for_token("ViT-L-14"), "ViT-L/14");
        assert_eq!(model_for_token("RN50"), "RN50");
    }
}
