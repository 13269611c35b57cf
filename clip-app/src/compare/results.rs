//! Finding the experiment's results under a directory: each `<stem>.png` with its `<stem>.json`
//! record (and `<stem>.csv` history, when there; and `<stem>.start.png`, the start image of a run
//! that began from a photo), as `output.rs` writes them; and parsing the `--real PHOTO=PROMPT`
//! flags.
//!
//! Nothing found here is fatal but an unreadable results directory itself: a PNG without its JSON,
//! a JSON that does not parse or does not belong to its PNG (`image_sha256`), a subdirectory that
//! cannot be read, or a file that is not a result becomes a warning or a note, and the rest is
//! compared. Temporary and lock files left by killed runs are noted as such.

use super::{CompareError, OUTPUT_FILES};
use clip_core::clip::excerpt::excerpt;
use serde::{Deserialize, Deserializer};
use sha2::{Digest, Sha256};
use std::borrow::Cow;
use std::collections::HashSet;
use std::io::Read;
use std::path::{Path, PathBuf};

/// `generated_by` of the real photos given with `--real`.
pub const REAL_PHOTO: &str = "real photo";

pub use crate::output::START_SUFFIX;

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
    /// The members of an ensemble run (`model` is then their names joined by `+`, and the
    /// top-level `weights` are absent); `None` for a single model, or when the field is not a
    /// non-empty list of members that each name their model.
    #[serde(default, deserialize_with = "lenient_ensemble")]
    pub ensemble: Option<Vec<EnsembleMember>>,
    /// Where a run that began from a photo started; `None` for a run from noise, or when the field
    /// is not an object.
    #[serde(default, deserialize_with = "lenient_object")]
    pub init: Option<PhotoStart>,
    /// The weight of the negative prompts in the loss.
    #[serde(default, deserialize_with = "lenient_f64")]
    pub negative_weight: Option<f64>,
    /// Prompts the run pushed away from; empty when none (or not a list).
    #[serde(default, deserialize_with = "lenient_negatives")]
    pub negatives: Vec<NegativePrompt>,
}

/// One model of an ensemble run (an entry of the record's `ensemble`).
#[derive(Debug, Clone, Deserialize)]
pub struct EnsembleMember {
    /// The member's model name, as a single-model run would record it (`RN50`, `ViT-B/32`, a
    /// checkpoint's token): the scoring model of that name is this member.
    pub model: String,
    /// Its results token (names its `similarity_<token>` column in the step history).
    #[serde(default, deserialize_with = "lenient_string")]
    pub token: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub weights: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub weights_sha256: Option<String>,
    /// Its weight in the ensemble's loss (a missing or negative weight reads as missing).
    #[serde(default, deserialize_with = "lenient_weight")]
    pub weight: Option<f64>,
    #[serde(default, deserialize_with = "lenient_u64")]
    pub resolution: Option<u64>,
    #[serde(default, deserialize_with = "lenient_f64")]
    pub initial_similarity: Option<f64>,
    /// Of the saved (8-bit) image under this member, as the run measured it.
    #[serde(default, deserialize_with = "lenient_f64")]
    pub final_similarity: Option<f64>,
    #[serde(default, deserialize_with = "lenient_f64")]
    pub final_similarity_unquantized: Option<f64>,
}

impl EnsembleMember {
    /// Whether the scoring model `name` is this member: its model name, or its results token.
    pub fn is(&self, name: &str) -> bool {
        self.model == name || self.token.as_deref() == Some(name)
    }
}

/// The record's `init`: the photo a run started from and how far the result strayed from it.
/// Distances are in pixel units of [0, 1] (1/255 is one 8-bit step).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct PhotoStart {
    #[serde(default, deserialize_with = "lenient_string")]
    pub photo: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub photo_sha256: Option<String>,
    /// The start image's file name, next to the result (`<stem>.start.png`).
    #[serde(default, deserialize_with = "lenient_string")]
    pub start_image: Option<String>,
    /// The start image's SHA-256 as the run wrote it: a start image that does not match is not
    /// this result's.
    #[serde(default, deserialize_with = "lenient_string")]
    pub start_image_sha256: Option<String>,
    /// The start image's similarity under the generating model(s), as the run measured it.
    #[serde(default, deserialize_with = "lenient_f64")]
    pub start_similarity: Option<f64>,
    /// The L∞ budget; `None` when the run had none.
    #[serde(default, deserialize_with = "lenient_f64")]
    pub epsilon: Option<f64>,
    /// The saved PNG's largest per-pixel difference from the start.
    #[serde(default, deserialize_with = "lenient_f64")]
    pub linf: Option<f64>,
    /// The saved PNG's Euclidean distance from the start, over all pixels and channels.
    #[serde(default, deserialize_with = "lenient_f64")]
    pub l2: Option<f64>,
}

/// A negative prompt of the run (an entry of the record's `negatives`).
#[derive(Debug, Clone, Deserialize)]
pub struct NegativePrompt {
    pub prompt: String,
    #[serde(default, deserialize_with = "lenient_f64")]
    pub initial_similarity: Option<f64>,
    #[serde(default, deserialize_with = "lenient_f64")]
    pub final_similarity: Option<f64>,
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

fn lenient_weight<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    Ok(lenient_f64(d)?.filter(|w| *w >= 0.0))
}

/// A list of members, each naming its model; anything else (not a list, an empty list, a member
/// without a model) reads as missing: the result is then compared as a single-model result.
fn lenient_ensemble<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<Vec<EnsembleMember>>, D::Error> {
    let value = serde_json::Value::deserialize(d)?;
    let members: Option<Vec<EnsembleMember>> = serde_json::from_value(value).ok();
    Ok(members.filter(|m| !m.is_empty() && m.iter().all(|m| !m.model.is_empty())))
}

fn lenient_object<'de, D: Deserializer<'de>>(d: D) -> Result<Option<PhotoStart>, D::Error> {
    let value = serde_json::Value::deserialize(d)?;
    Ok(value.is_object().then(|| serde_json::from_value(value).ok()).flatten())
}

/// The negatives that name their prompt; anything else is left out.
fn lenient_negatives<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<NegativePrompt>, D::Error> {
    let value = serde_json::Value::deserialize(d)?;
    let items = match value {
        serde_json::Value::Array(items) => items,
        _ => return Ok(Vec::new()),
    };
    Ok(items.into_iter().filter_map(|v| serde_json::from_value(v).ok()).collect())
}

/// What a record says that [`RunInfo`] could not read, for the fields that change how a result is
/// shown (an ensemble read as a single model, a photo start read as a start from noise).
fn unread_fields(value: &serde_json::Value, run: &RunInfo) -> Vec<&'static str> {
    let given = |key: &str| value.get(key).is_some_and(|v| !v.is_null());
    let mut unread = Vec::new();
    if given("ensemble") && run.ensemble.is_none() {
        unread.push("ensemble");
    }
    if given("init") && run.init.is_none() {
        unread.push("init");
    }
    unread
}

/// One result of the experiment.
#[derive(Debug, Clone)]
pub struct ResultEntry {
    pub png: PathBuf,
    pub json: PathBuf,
    pub csv: Option<PathBuf>,
    /// The start image of a run that began from a photo (its record has `init`), when it is there.
    pub start: Option<PathBuf>,
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
    clip_core::clip::released::by_token(token).map_or(token, |m| m.name)
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
    // PNGs without their JSON: warned about after the walk, unless a result claims one as its
    // start image (`init.start_image`, `<stem>.start.png`).
    let mut orphans: Vec<&PathBuf> = Vec::new();
    for file in &files {
        if stop() {
            return Err(super::interrupted("while looking for results"));
        }
        let rel = super::relative(dir, file);
        if file.parent() == Some(dir) && OUTPUT_FILES.contains(&rel.as_str()) {
            continue;
        }
        if left_by_a_killed_run(file) {
            found.note(format!(
                "{rel}: left by a run that was killed (or is still running); ignored, and safe to \
                 delete once no run writes here"
            ));
            continue;
        }
        let ext = file.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
        match ext.as_deref() {
            Some("png") if !has(&file.with_extension("json")) => orphans.push(file),
            Some("png") => found.result(file, dir, &has),
            Some("json") | Some("csv") if has(&file.with_extension("png")) => {}
            Some("json") | Some("csv") => found.note(format!(
                "{rel}: no {} next to it; ignored",
                file_name(&file.with_extension("png"))
            )),
            _ => found.note(format!("{rel}: not a result (PNG + JSON); ignored")),
        }
    }
    found.orphans(dir, &orphans);
    Ok(found)
}

impl Discovery {
    /// A note: printed on stderr and kept for the report (a harmless file ignored).
    fn note(&mut self, message: String) {
        eprintln!("note: {message}");
        self.notes.push(message);
    }

    /// A warning: printed on stderr and kept for the report.
    fn warn(&mut self, message: String) {
        eprintln!("warning: {message}");
        self.warnings.push(message);
    }

    /// The PNG `file` with its JSON beside it: a result when its record reads and belongs to it
    /// (with its CSV and its start image when they are there and its own), else a warning.
    fn result(&mut self, file: &Path, dir: &Path, has: &dyn Fn(&PathBuf) -> bool) {
        let json = file.with_extension("json");
        let read = read_record(&json, dir)
            .and_then(|(run, unread)| belongs(file, &json, dir, run).map(|run| (run, unread)));
        let (run, unread) = match read {
            Ok(read) => read,
            Err(message) => return self.warn(message),
        };
        for message in unread {
            self.warn(message);
        }
        let csv = Some(file.with_extension("csv")).filter(|c| has(c));
        let start = match run.init.as_ref().map(|init| start_image_path(file, init)) {
            Some(start) => self.start_image(file, dir, start, &run, has),
            None => None,
        };
        self.results.push(ResultEntry { png: file.to_path_buf(), json, csv, start, run });
    }

    /// The start image of the result `file` when it is there and is the one its run wrote
    /// (`start_image_sha256`); else a warning (the contact sheet shows a placeholder).
    fn start_image(
        &mut self,
        file: &Path,
        dir: &Path,
        start: PathBuf,
        run: &RunInfo,
        has: &dyn Fn(&PathBuf) -> bool,
    ) -> Option<PathBuf> {
        let rel = super::relative(dir, file);
        if !has(&start) {
            self.warn(format!(
                "{rel}: its record has `init` (a start from a photo) but its start image {} is \
                 missing; the contact sheet shows a placeholder",
                file_name(&start)
            ));
            return None;
        }
        let recorded = run.init.as_ref().and_then(|i| i.start_image_sha256.as_deref());
        match (recorded, sha256_hex(&start)) {
            (Some(recorded), Ok(actual)) if !recorded.eq_ignore_ascii_case(&actual) => {
                self.warn(format!(
                    "{rel}: its start image {} is not the one the run wrote (its SHA-256 is \
                     {actual}, the record's start_image_sha256 {}); the contact sheet shows a \
                     placeholder",
                    file_name(&start),
                    excerpt(recorded)
                ));
                None
            }
            _ => Some(start),
        }
    }

    /// PNGs without their JSON: ignored with a note when one is the start image of a result
    /// (not claimed by a result with `init` here), else warned about; a result's own start image
    /// is not mentioned.
    fn orphans(&mut self, dir: &Path, orphans: &[&PathBuf]) {
        let claimed: HashSet<PathBuf> =
            self.results.iter().filter_map(|r| r.start.clone()).collect();
        for file in orphans.iter().filter(|f| !claimed.contains(**f)) {
            let rel = super::relative(dir, file);
            if let Some(result) = result_of_start_image(file) {
                self.note(format!(
                    "{rel}: the start image of {}, which is not a result with `init` here; ignored",
                    file_name(&result)
                ));
                continue;
            }
            self.warn(format!(
                "{rel} has no {} next to it: skipped (not a result of the experiment?)",
                file_name(&file.with_extension("json"))
            ));
        }
    }
}

/// Where the start image of the result `png` is: the record's `start_image` when that is a plain
/// file name (next to the result; a path elsewhere is not followed), else `<stem>.start.png`.
fn start_image_path(png: &Path, init: &PhotoStart) -> PathBuf {
    let named = init.start_image.as_deref().filter(|name| {
        let plain = Path::new(name).file_name().and_then(|n| n.to_str()) == Some(*name);
        plain && !name.contains(['/', '\\']) && !name.starts_with('.')
    });
    match named {
        Some(name) => png.with_file_name(name),
        None => png.with_file_name(format!("{}{START_SUFFIX}", file_name(&png.with_extension("")))),
    }
}

/// The result (`<stem>.png`) whose start image `file` is by name (`<stem>.start.png`, any case).
fn result_of_start_image(file: &Path) -> Option<PathBuf> {
    let name = file_name(file);
    let cut = name.len().checked_sub(START_SUFFIX.len())?;
    let (stem, suffix) = (name.get(..cut)?, name.get(cut..)?);
    (suffix.eq_ignore_ascii_case(START_SUFFIX) && !stem.is_empty())
        .then(|| file.with_file_name(format!("{stem}.png")))
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

/// A run's record, and a warning for each field it has but that could not be read (an ensemble or
/// a photo start; the result is compared without it). A missing `model` is an ensemble's members
/// joined by `+`, or else taken from the results token of its directory.
fn read_record(json: &Path, dir: &Path) -> Result<(RunInfo, Vec<String>), String> {
    let rel = super::relative(dir, json);
    let skipped = |e: std::io::Error| format!("{rel}: {e}; its PNG is skipped");
    let mut bytes = Vec::new();
    clip_core::clip::files::open_regular(json)
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
    let members: Option<Vec<String>> = value
        .get("ensemble")
        .and_then(|e| e.as_array())
        .and_then(|e| e.iter().map(|m| Some(m.get("model")?.as_str()?.to_string())).collect());
    let unnamed = value.get("model").is_none();
    if let (true, Some(obj), Some(members)) =
        (unnamed, value.as_object_mut(), members.filter(|m| !m.is_empty()))
    {
        obj.insert("model".into(), members.join("+").into());
    }
    if value.get("model").is_none() {
        if let (Some(obj), Some(token)) = (
            value.as_object_mut(),
            json.parent().and_then(|p| p.file_name()).and_then(|n| n.to_str()),
        ) {
            obj.insert("model".into(), model_for_token(token).into());
        }
    }
    let run: RunInfo = serde_json::from_value(value.clone())
        .map_err(|e| format!("{rel}: not a run record ({e}); its PNG is skipped"))?;
    let unread = unread_fields(&value, &run)
        .into_iter()
        .map(|field| {
            let instead = match field {
                "ensemble" => "compared as a single model's result",
                _ => "compared as a run from noise",
            };
            format!("{rel}: its `{field}` field cannot be read; {instead}")
        })
        .collect();
    Ok((run, unread))
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
    let mut file = clip_core::clip::files::open_regular(path)?;
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
    fn ensembles_and_photo_starts_are_read_leniently() {
        let text = r#"{"prompt": "p", "model": "A+B", "mode": "constrained",
            "ensemble": [{"model": "A", "weight": 1},
                         {"model": "B", "token": "b", "weight": -2, "final_similarity": "x"}],
            "init": {"photo": "t.jpg", "epsilon": null, "linf": 0.1, "l2": "far"},
            "negatives": [{"prompt": "noise", "final_similarity": 0.1}, {"final_similarity": 1}]}"#;
        let run: RunInfo = serde_json::from_str(text).expect("reads");
        let members = run.ensemble.expect("an ensemble");
        assert_eq!((members[0].weight, members[1].weight), (Some(1.0), None));
        assert_eq!(members[1].final_similarity, None);
        assert!(members[1].is("B") && members[1].is("b") && !members[1].is("A"));
        let init = run.init.expect("a photo start");
        assert_eq!((init.epsilon, init.linf, init.l2), (None, Some(0.1), None));
        assert_eq!(run.negatives.len(), 1);
        let with = |field: &str, value: &str| -> RunInfo {
            let text =
                format!(r#"{{"prompt": "p", "model": "m", "mode": "x", "{field}": {value}}}"#);
            serde_json::from_str(&text).expect("reads")
        };
        for bad in [r#""A""#, "[]", r#"[{"weight": 1}]"#, r#"[{"model": ""}]"#, "{}", "null"] {
            assert!(with("ensemble", bad).ensemble.is_none(), "{bad}");
        }
        for bad in ["5", "[1]", r#""x""#, "null"] {
            assert!(with("init", bad).init.is_none(), "{bad}");
        }
        assert!(with("negatives", "{}").negatives.is_empty());
    }

    #[test]
    fn start_images_by_name() {
        let result = |name: &str| result_of_start_image(Path::new(name));
        assert_eq!(result("d/x_a.start.png"), Some(PathBuf::from("d/x_a.png")));
        assert_eq!(result("d/X.START.PNG"), Some(PathBuf::from("d/X.png")));
        assert_eq!(result("d/.start.png"), None);
        assert_eq!(result("d/x.png"), None);
        let png = Path::new("d/x.png");
        let named = |name: Option<&str>| {
            let init =
                PhotoStart { start_image: name.map(str::to_string), ..PhotoStart::default() };
            start_image_path(png, &init)
        };
        assert_eq!(named(None), Path::new("d/x.start.png"));
        assert_eq!(named(Some("other.png")), Path::new("d/other.png"));
        // A name that leads elsewhere is not followed.
        for elsewhere in
            ["../../etc/x.png", "/abs.png", "sub/x.png", "a\\b.png", ".hidden.png", ".."]
        {
            assert_eq!(named(Some(elsewhere)), Path::new("d/x.start.png"), "{elsewhere}");
        }
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
