//! What a run leaves behind, per prompt, in `<out>/<model token>/`: the image as an 8-bit RGB PNG
//! (its settings in text chunks, derived from the record), a JSON record and a CSV of the steps,
//! each written atomically — and the rules that keep results from being lost: names that differ
//! for different prompts, a refusal to overwrite another prompt's record, a lock per result while
//! a run writes it, and the removal of temporary files that killed runs left.
//!
//! Mirrors the seed's saving (`results/<model>/<mode>_<model>_<prompt with spaces as
//! underscores>.png`) and its 8-bit conversion as torchvision's `save_image` does it
//! (`mul(255).add_(0.5).clamp_(0, 255)` then `uint8`).

use clip_core::clip::excerpt::excerpt;
use clip_core::clip::model::Precision;
use clip_core::engine::augment::Augment;
use clip_core::engine::optimize::StepStats;
use clip_core::engine::optimize::{Keep, Preset};
use clip_core::engine::param::{Canvas, Param};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};
use tch::{Kind, Tensor};

#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error("writing {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("the output directory {path} cannot be created or written to: {source}")]
    Dir { path: PathBuf, source: std::io::Error },
    #[error("encoding {path}: {source}")]
    Png { path: PathBuf, source: png::EncodingError },
    #[error(
        "prompts {} and {} would both be saved as {name}: make them differ in letters or digits",
        excerpt(first),
        excerpt(second)
    )]
    SameName { first: String, second: String, name: String },
    #[error(
        "{path} is the record of prompt {}, not of {}: a run of this prompt would replace another \
         prompt's result; use another --out (or --name)",
        excerpt(recorded),
        excerpt(prompt)
    )]
    OtherPrompt { path: PathBuf, recorded: String, prompt: String },
    #[error("{path} exists but is not a run record ({reason}); move it away or use another --out")]
    NotARecord { path: PathBuf, reason: String },
    #[error(
        "another run is writing {stem} in {dir} right now (it holds {lock}); wait for it, or use \
         another --out (or --name)"
    )]
    Busy { stem: String, dir: PathBuf, lock: PathBuf },
    #[error("{path}: sweep run {run_id} was finished meanwhile by another process")]
    Finished { path: PathBuf, run_id: String },
    #[error(
        "{path} holds {holder}, not this sweep run's ({run_id}); it is left as it is: move it away, \
         or give the sweep another `out` or `name`"
    )]
    OtherRun { path: PathBuf, holder: String, run_id: String },
    #[error(
        "{path} is the result of sweep run {run_id}; only that run replaces it. To keep both, give \
         this run another --name (or --out)"
    )]
    SweepResult { path: PathBuf, run_id: String },
    #[error(
        "{path} holds a result of other settings (they differ in {differ}); a run replaces only a \
         result of its own settings. To keep both, give this run another --name (or --out); to \
         replace it, move it (and its .png, .csv, .start.png) away first"
    )]
    OtherSettings { path: PathBuf, differ: String },
}

/// Longest prompt part of a file name, in bytes: file names are limited to 255 bytes, and the stem
/// also holds the name, the model, a hash, an extension and a temporary file's affixes.
const MAX_PROMPT_BYTES: usize = 160;

/// The seed's prompt part of a file name, and whether it stands for only this prompt. Spaces
/// become underscores, as the seed does (an empty prompt, which the reference accepts, gives an
/// empty part); characters that are unsafe in file names on Linux, macOS or Windows (`/ \ : * ? "
/// < > |` and control characters) become `-`; a leading `.` becomes `_` (no hidden files, no
/// `..`); the result is cut to 160 bytes at a character boundary. The mapping is one-to-one only
/// for prompts without `_`, unsafe or control characters, a leading `.`, or a cut: for the others
/// the second value is `false`.
fn seed_file_part(prompt: &str) -> (String, bool) {
    let mut name = String::new();
    let mut exact = true;
    for c in prompt.chars() {
        let mapped = match c {
            ' ' => '_',
            // Kept, but the name is no longer this prompt's alone (`a b` is `a_b` too).
            '_' => {
                exact = false;
                '_'
            }
            '/' | '\\' | ':' | '*' | '?' | '"' | '<' | '>' | '|' => {
                exact = false;
                '-'
            }
            c if c.is_control() => {
                exact = false;
                '-'
            }
            c => c,
        };
        if name.len() + mapped.len_utf8() > MAX_PROMPT_BYTES {
            exact = false;
            break;
        }
        name.push(mapped);
    }
    if name.starts_with('.') {
        name.replace_range(..1, "_");
        exact = false;
    }
    // `<stem>.start.png` is the start image of `<stem>`'s result: a prompt whose part ends in
    // `.start` gets its hash, so its PNG is never another prompt's start image.
    if name.to_ascii_lowercase().ends_with(".start") {
        exact = false;
    }
    (name, exact)
}

/// The prompt as a file-name part: the seed's (spaces as underscores) when that names this prompt
/// alone, else the seed's part followed by `~` and the first 8 hex digits of the prompt's SHA-256,
/// so that `a/b` and `a-b`, or `.` and `_`, never share a file.
pub fn prompt_file_part(prompt: &str) -> String {
    let (name, exact) = seed_file_part(prompt);
    if exact {
        name
    } else {
        format!("{name}~{}", &sha256_hex(prompt.as_bytes())[..8])
    }
}

/// The result token of a checkpoint that is none of the released models: its file name without
/// the extension, as [`token_for_name`] makes a token of it.
pub fn token_for_file(path: &Path) -> String {
    let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    token_for_name(&stem)
}

/// The result token of a model the user named (a sweep's `[weights]` key): the name with anything
/// but letters, digits, `-`, `+`, `.` and `_` as `-`, a leading `.` as `_`, at most 64 bytes;
/// `custom` when nothing is left.
pub fn token_for_name(name: &str) -> String {
    let mut token: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || "-+._".contains(c) { c } else { '-' })
        .take(64)
        .collect();
    if token.starts_with('.') {
        token.replace_range(..1, "_");
    }
    if token.is_empty() {
        "custom".to_string()
    } else {
        token
    }
}

/// `<name>_<token>_<prompt>`: the seed's file stem (`<mode>_<model>_<prompt>`).
pub fn file_stem(name: &str, token: &str, prompt: &str) -> String {
    format!("{name}_{token}_{}", prompt_file_part(prompt))
}

/// The stems of all prompts of a run, refusing two prompts that map to the same file (the same
/// prompt twice).
pub fn file_stems(name: &str, token: &str, prompts: &[String]) -> Result<Vec<String>, OutputError> {
    file_stems_named(&vec![name.to_string(); prompts.len()], token, prompts)
}

/// As [`file_stems`], each prompt with its own name (`names[i]` for `prompts[i]`).
pub fn file_stems_named(
    names: &[String],
    token: &str,
    prompts: &[String],
) -> Result<Vec<String>, OutputError> {
    let stems: Vec<String> =
        names.iter().zip(prompts).map(|(name, p)| file_stem(name, token, p)).collect();
    for (i, stem) in stems.iter().enumerate() {
        if let Some(j) = stems[..i].iter().position(|s| s == stem) {
            return Err(OutputError::SameName {
                first: prompts[j].clone(),
                second: prompts[i].clone(),
                name: format!("{stem}.png"),
            });
        }
    }
    Ok(stems)
}

/// Lower-case hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// An image [3, H, W] with values in [0, 1] as 8-bit RGB bytes (row-major, interleaved), rounded as
/// torchvision's `save_image`.
pub fn to_rgb8(image: &Tensor) -> Result<(Vec<u8>, u32, u32), tch::TchError> {
    let size = image.size();
    let (h, w) = (size[1], size[2]);
    let bytes = (image.to_kind(Kind::Float) * 255.0 + 0.5)
        .clamp(0.0, 255.0)
        .to_kind(Kind::Uint8)
        .permute([1, 2, 0])
        .contiguous()
        .f_to_device(tch::Device::Cpu)?;
    Ok((Vec::<u8>::try_from(bytes.flatten(0, -1))?, w as u32, h as u32))
}

/// The directories a run created for its outputs. Dropped without [`keep`](Self::keep) — the run
/// failed, by an error or a panic — it removes those still empty, deepest first, so a failed run
/// leaves no empty `results/<model>/` behind (and never touches a file).
#[derive(Debug)]
#[must_use = "dropping it removes the directories it created while they are empty"]
pub struct NewDirs {
    created: Vec<PathBuf>,
}

impl NewDirs {
    /// The run succeeded (or saved something): keep every directory.
    pub fn keep(mut self) {
        self.created.clear();
    }
}

impl Drop for NewDirs {
    fn drop(&mut self) {
        for dir in &self.created {
            // Fails, harmlessly, on a directory that is not empty.
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// [`ensure_writable_dir`], remembering which directories it created.
pub fn create_writable_dir(dir: &Path) -> Result<NewDirs, OutputError> {
    let created: Vec<PathBuf> = dir
        .ancestors()
        .take_while(|d| !d.as_os_str().is_empty() && !d.exists())
        .map(Path::to_path_buf)
        .collect();
    let new_dirs = NewDirs { created };
    ensure_writable_dir(dir)?;
    Ok(new_dirs)
}

/// Creates `dir` (and its parents) if missing and checks that a file can be created in it, so a
/// run fails before its optimisation rather than after.
pub fn ensure_writable_dir(dir: &Path) -> Result<(), OutputError> {
    let err = |source| OutputError::Dir { path: dir.to_path_buf(), source };
    std::fs::create_dir_all(dir).map_err(err)?;
    // Removed when dropped.
    tempfile::Builder::new().prefix(".clip-rs-probe").tempfile_in(dir).map_err(err)?;
    Ok(())
}

/// The prefix of [`write_atomic`]'s temporary file for `path`: `.tmp-<file name>.`, followed by
/// tempfile's random suffix.
fn temp_prefix(file_name: &str) -> String {
    format!(".tmp-{file_name}.")
}

/// Writes `bytes` to `path` through a temporary file in the same directory and a rename, so a
/// reader never sees a half-written file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), OutputError> {
    let io = |source| OutputError::Io { path: path.to_path_buf(), source };
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let file_name = path.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
    let mut builder = tempfile::Builder::new();
    // A temporary file is private (0600) by default; results are ordinary files, so ask for 0666
    // and let the user's umask decide, as `File::create` would.
    #[cfg(unix)]
    builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666));
    let prefix = temp_prefix(&file_name);
    let mut file = builder.prefix(&prefix).tempfile_in(dir).map_err(io)?;
    file.write_all(bytes).map_err(io)?;
    file.as_file().sync_all().map_err(io)?;
    file.persist(path).map_err(|e| io(e.error))?;
    Ok(())
}

/// The extensions a result's files have (`start.png`: the start image of a run from a photo).
pub const RESULT_EXTENSIONS: [&str; 4] = ["png", "json", "csv", "start.png"];

/// What a run that starts from a photo (`clip generate --init PHOTO`) saves next to its result:
/// `<stem>.start.png`, the photo resized and centre-cropped to the canvas.
pub const START_SUFFIX: &str = ".start.png";

/// A result's lock: `.<stem>.lock` in its directory, held (an advisory `flock`) while a run
/// writes that result, so that two runs never write the same result at once. The kernel releases
/// it when the process ends, even when it is killed; a run that ends removes its lock file (a lock
/// taken on a file that was removed meanwhile is noticed and taken again).
#[derive(Debug)]
pub struct ResultLock {
    path: PathBuf,
    _file: std::fs::File,
}

impl ResultLock {
    /// Takes the lock of `stem` in `dir`, then removes the temporary files that killed runs left
    /// for it (no live run can be writing them: it would hold the lock). Returns how many were
    /// removed too.
    pub fn take(dir: &Path, stem: &str) -> Result<(Self, usize), OutputError> {
        let path = dir.join(format!(".{stem}.lock"));
        let io = |source| OutputError::Io { path: path.clone(), source };
        loop {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
                .map_err(io)?;
            match file.try_lock() {
                Ok(()) => {}
                Err(std::fs::TryLockError::WouldBlock) => {
                    return Err(OutputError::Busy {
                        stem: stem.to_string(),
                        dir: dir.to_path_buf(),
                        lock: path,
                    })
                }
                Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
            }
            // The run that held it may have removed the file between our open and our lock.
            if same_file(&file, &path) {
                let removed = remove_stale_temporaries(dir, stem);
                return Ok((Self { path, _file: file }, removed));
            }
        }
    }
}

impl Drop for ResultLock {
    fn drop(&mut self) {
        // Removed while still held; the lock goes with the file handle after this.
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Whether the open `file` is the file at `path` now.
fn same_file(file: &std::fs::File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// Removes `.tmp-<stem>.<ext>.XXXXXX` files (from [`write_atomic`]) of `stem`'s results.
fn remove_stale_temporaries(dir: &Path, stem: &str) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let stale = RESULT_EXTENSIONS.iter().any(|ext| {
            name.strip_prefix(&temp_prefix(&format!("{stem}.{ext}"))).is_some_and(|suffix| {
                !suffix.is_empty() && suffix.chars().all(|c| c.is_ascii_alphanumeric())
            })
        });
        if stale && std::fs::remove_file(entry.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}

/// Refuses to write `stem`'s results in `dir` when its record there belongs to another prompt;
/// with `run_id` (a sweep run's) when it is not that run's, and without one when it is a sweep
/// run's: a sweep run's result is replaced by that run alone, and a sweep never replaces a result
/// of another run, from the sweep (a changed `name` template) or not (`clip generate`, the
/// binaries). The record is read once for all. (Other settings: `run/replace.rs`.)
/// Whether a record in `dir` is of a finished run: not interrupted, not stopped by a non-finite
/// loss, its PNG there (what `clip sweep` counts as done).
pub fn finished(dir: &Path, record: &serde_json::Value) -> bool {
    record.get("interrupted").and_then(|v| v.as_bool()) == Some(false)
        && record.get("frozen_at_step").is_none_or(|v| v.is_null())
        && record.get("image").and_then(|v| v.as_str()).is_some_and(|i| dir.join(i).is_file())
}

pub fn check_existing(
    dir: &Path,
    stem: &str,
    prompt: &str,
    run_id: Option<&str>,
) -> Result<(), OutputError> {
    let path = dir.join(format!("{stem}.json"));
    let text = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(source) => return Err(OutputError::Io { path, source }),
    };
    let value: serde_json::Value = serde_json::from_slice(&text)
        .map_err(|e| OutputError::NotARecord { path: path.clone(), reason: e.to_string() })?;
    match value.get("prompt").and_then(|p| p.as_str()) {
        Some(recorded) if recorded == prompt => {}
        Some(recorded) => {
            return Err(OutputError::OtherPrompt {
                path,
                recorded: recorded.to_string(),
                prompt: prompt.to_string(),
            })
        }
        None => {
            return Err(OutputError::NotARecord { path, reason: "it has no \"prompt\"".into() })
        }
    }
    let Some(run_id) = run_id else {
        return match value.get("run_id").and_then(|p| p.as_str()) {
            Some(recorded) => Err(OutputError::SweepResult { path, run_id: recorded.to_string() }),
            None => Ok(()),
        };
    };
    match value.get("run_id").and_then(|p| p.as_str()) {
        // Finished since this sweep looked (another sweep on the same `out`): not redone.
        Some(recorded) if recorded == run_id && finished(dir, &value) => {
            Err(OutputError::Finished { path, run_id: run_id.to_string() })
        }
        Some(recorded) if recorded == run_id => Ok(()),
        Some(recorded) => Err(OutputError::OtherRun {
            path,
            holder: format!("the result of sweep run {recorded}"),
            run_id: run_id.to_string(),
        }),
        None => Err(OutputError::OtherRun {
            path,
            holder: "a result that is not a sweep run's".to_string(),
            run_id: run_id.to_string(),
        }),
    }
}

/// Encodes 8-bit RGB pixels as a PNG with text chunks (tEXt for Latin-1 text, iTXt otherwise).
pub fn png_bytes(
    rgb: &[u8],
    width: u32,
    height: u32,
    text: &[(&str, String)],
    path: &Path,
) -> Result<Vec<u8>, OutputError> {
    let err = |source| OutputError::Png { path: path.to_path_buf(), source };
    let mut out = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut out, width, height);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        for (key, value) in text {
            if value.chars().all(|c| (c as u32) < 256) {
                encoder.add_text_chunk(key.to_string(), value.clone()).map_err(err)?;
            } else {
                encoder.add_itxt_chunk(key.to_string(), value.clone()).map_err(err)?;
            }
        }
        let mut writer = encoder.write_header().map_err(err)?;
        writer.write_image_data(rgb).map_err(err)?;
        writer.finish().map_err(err)?;
    }
    Ok(out)
}

/// The record format written now (`schema` in every JSON record): 2 added `schema` itself to
/// the fields of 1, which are unchanged.
pub const SCHEMA: u32 = 2;

fn schema_v1() -> u32 {
    1
}

/// The JSON record of one prompt's run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    /// The record's format: [`SCHEMA`] for records written now; absent (read as 1) in those of
    /// the releases before it. A field's name and meaning never change within a schema.
    #[serde(default = "schema_v1")]
    pub schema: u32,
    pub prompt: String,
    /// The released model's name (`ViT-B/32`), or for another architecture the token of its file.
    pub model: String,
    /// The first part of the file names: the preset's name, or `--name`.
    pub mode: String,
    /// The preset the settings started from, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preset: Option<Preset>,
    /// The PNG's file name (next to this record).
    pub image: String,
    /// The PNG's SHA-256: a PNG and a JSON that do not belong together are told apart.
    pub image_sha256: String,
    /// The checkpoint (absent for an ensemble: each member has its own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights_sha256: Option<String>,
    /// An ensemble's models, in order, each with its weight and its own similarities.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ensemble: Vec<MemberRecord>,
    pub param: Param,
    /// The FFT parameterisations' decay power.
    pub decay: f64,
    /// The augmentations in order, as their spec strings.
    pub augment: Vec<Augment>,
    /// The canvas, `WxH`.
    pub size: Canvas,
    pub keep: Keep,
    /// Views per image and step (cutouts).
    pub views_per_image: i64,
    pub steps: usize,
    /// The steps done: `steps`, or fewer when the run was interrupted.
    pub steps_done: usize,
    /// Whether Ctrl-C or SIGTERM stopped the run at `steps_done`; the image is the one reached.
    pub interrupted: bool,
    /// The step at which this prompt's loss or gradient stopped being finite (NaN/Inf); its image
    /// is the one that step started from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frozen_at_step: Option<usize>,
    pub learning_rate: f64,
    pub tv_weight: f64,
    /// With negative prompts: the weight of their mean similarity in the loss.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub negative_weight: Option<f64>,
    /// The negative prompts, each with the saved PNG's similarity to it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub negatives: Vec<NegativeRecord>,
    /// A run from a photo: the photo, the start's similarity, the budget and the distances.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init: Option<InitRecord>,
    pub seed: u64,
    /// Where the random draws came from: absent for torch's generator seeded with `seed` (one
    /// seed for the whole batch), `keyed` for draws keyed by this prompt's own seed
    /// (`clip sweep`: independent of the batch-mates).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub draws: Option<String>,
    /// The sweep run this result is (`clip sweep`): a hash of everything that makes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    pub device: String,
    /// fp16 or fp32: the model's weights and activations.
    pub precision: Precision,
    /// The model's input resolution (an ensemble: the largest of its models', at which the views
    /// are made).
    pub resolution: i64,
    /// Prompts optimised together in the batch this one ran in.
    pub batch_size: usize,
    /// The initial image (float, before the first update) against the prompt (an ensemble: the
    /// weighted mean of its models').
    pub initial_similarity: f64,
    /// The saved PNG re-loaded, preprocessed as CLIP's `preprocess` and scored: the seed's
    /// "Final Similarity" (an ensemble: the weighted mean of its models').
    pub final_similarity: f64,
    /// The result image before 8-bit quantisation, scored (resampled to the model's resolution
    /// where the canvas differs).
    pub final_similarity_unquantized: f64,
    /// Keep best: the step whose view had the lowest similarity loss (the saved image is the
    /// image after that step's update) and that loss.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub best_step: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub best_similarity_loss: Option<f64>,
    /// The CSV holds the steps that are multiples of this (and the last): 1 unless the run was
    /// longer than the history's bound.
    pub history_every: usize,
    /// Optimisation steps per second (each step updates every prompt of the batch).
    pub steps_per_second: f64,
    pub loop_seconds: f64,
    /// How the steps ran: `CUDA graph (…)` or `eager (<why no graph>)`.
    pub execution: String,
    /// The whole run up to this record: loading, text encoding, optimisation, saving, scoring.
    pub wall_seconds: f64,
}

/// One model of an ensemble, in a record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemberRecord {
    pub model: String,
    /// Its results token (the CSV's `similarity_<token>` column).
    pub token: String,
    pub weights: String,
    pub weights_sha256: String,
    /// Its weight in the ensemble's mean, normalised (the weights sum to 1).
    pub weight: f64,
    pub resolution: i64,
    pub initial_similarity: f64,
    /// The saved PNG through this model's preprocessing, scored by it.
    pub final_similarity: f64,
    pub final_similarity_unquantized: f64,
}

/// A negative prompt, in a record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NegativeRecord {
    pub prompt: String,
    /// The initial image against it (an ensemble: the weighted mean of its models').
    pub initial_similarity: f64,
    /// The saved PNG against it (an ensemble: the weighted mean of its models').
    pub final_similarity: f64,
    /// An ensemble: the saved PNG against it under each model, by token.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub final_similarity_by_model: std::collections::BTreeMap<String, f64>,
}

/// A run from a photo, in a record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InitRecord {
    /// The photo as given.
    pub photo: String,
    pub photo_sha256: String,
    /// The start image (the photo resized and centre-cropped to the canvas), saved beside the
    /// result.
    pub start_image: String,
    /// The start image's SHA-256 (as written).
    pub start_image_sha256: String,
    /// The start image against the prompt (an ensemble: the weighted mean of its models').
    pub start_similarity: f64,
    /// An ensemble: the start image against the prompt under each model, by token.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub start_similarity_by_model: std::collections::BTreeMap<String, f64>,
    /// The L∞ budget, in [0, 1] pixel units; `null`: none.
    pub epsilon: Option<f64>,
    /// The saved PNG's largest difference from the start in any pixel and channel, in [0, 1]
    /// units.
    pub linf: f64,
    /// The saved PNG's Euclidean distance from the start over all pixels and channels, in [0, 1]
    /// units.
    pub l2: f64,
}

/// The L∞ and L2 distances, in [0, 1] units, of 8-bit RGB pixels (row-major, interleaved) from
/// an image [3, H, W] in [0, 1].
pub fn distances(rgb: &[u8], start: &Tensor) -> Result<(f64, f64), tch::TchError> {
    let size = start.size();
    let (h, w) = (size[1], size[2]);
    let saved =
        Tensor::from_slice(rgb).view([h, w, 3]).permute([2, 0, 1]).to_kind(Kind::Double) / 255.0;
    let diff = saved - start.to_device(tch::Device::Cpu).to_kind(Kind::Double);
    let linf = diff.abs().max().f_double_value(&[])?;
    let l2 = diff.square().sum(Kind::Double).sqrt().f_double_value(&[])?;
    Ok((linf, l2))
}

impl RunRecord {
    /// The PNG's text chunks: the record's settings and outcome, without its timings or paths
    /// (the same run gives the same PNG).
    pub fn png_text(&self) -> Vec<(&'static str, String)> {
        let mut text = vec![
            ("Title", self.prompt.clone()),
            ("Software", "clip-rs".to_string()),
            ("prompt", self.prompt.clone()),
            ("model", self.model.clone()),
            ("mode", self.mode.clone()),
        ];
        if let Some(preset) = &self.preset {
            text.push(("preset", preset.to_string()));
        }
        let augment: Vec<String> = self.augment.iter().map(Augment::to_string).collect();
        text.extend([
            ("param", self.param.to_string()),
            ("decay", self.decay.to_string()),
            ("augment", augment.join(" ")),
            ("size", self.size.to_string()),
            ("keep", self.keep.to_string()),
            ("steps", self.steps.to_string()),
            ("steps_done", self.steps_done.to_string()),
            ("interrupted", self.interrupted.to_string()),
            ("learning_rate", self.learning_rate.to_string()),
            ("tv_weight", self.tv_weight.to_string()),
            ("seed", self.seed.to_string()),
        ]);
        if let Some(draws) = &self.draws {
            text.push(("draws", draws.clone()));
        }
        if let Some(id) = &self.run_id {
            text.push(("run_id", id.clone()));
        }
        text.extend([("device", self.device.clone()), ("precision", self.precision.to_string())]);
        if let Some(sha) = &self.weights_sha256 {
            text.push(("weights_sha256", sha.clone()));
        }
        if !self.ensemble.is_empty() {
            let members: Vec<String> = self
                .ensemble
                .iter()
                .map(|m| format!("{} (weight {}, sha256 {})", m.model, m.weight, m.weights_sha256))
                .collect();
            text.push(("ensemble", members.join(" + ")));
        }
        if !self.negatives.is_empty() {
            let negatives: Vec<&str> = self.negatives.iter().map(|n| n.prompt.as_str()).collect();
            text.push(("negatives", negatives.join(" | ")));
            text.push(("negative_weight", self.negative_weight.unwrap_or_default().to_string()));
        }
        if let Some(init) = &self.init {
            text.push(("init_photo_sha256", init.photo_sha256.clone()));
            if let Some(e) = init.epsilon {
                text.push(("epsilon", e.to_string()));
            }
        }
        text
    }
}

/// The record as pretty JSON, newline-terminated.
pub fn json_bytes(record: &RunRecord) -> Result<Vec<u8>, serde_json::Error> {
    let mut text = serde_json::to_string_pretty(record)?;
    text.push('\n');
    Ok(text.into_bytes())
}

/// `step,similarity,tv` for prompt `index` of every step in `stats`: the step's mean view
/// similarity and the un-weighted total variation of the image; then, for an ensemble, one
/// `similarity_<token>` column per model (`models`: their tokens; `similarity` is their weighted
/// mean), and with negatives `negative_similarity` (the views' mean similarity with them).
pub fn csv_bytes<'a>(
    stats: impl IntoIterator<Item = &'a StepStats>,
    index: usize,
    models: &[String],
) -> Vec<u8> {
    let mut stats = stats.into_iter().peekable();
    let negatives = stats.peek().is_some_and(|s| !s.negative.is_empty());
    let mut text = String::from("step,similarity,tv");
    for token in models {
        text.push_str(&format!(",similarity_{token}"));
    }
    if negatives {
        text.push_str(",negative_similarity");
    }
    text.push('\n');
    for s in stats {
        let (sim, tv) = (s.similarity.get(index), s.tv.get(index));
        if let (Some(sim), Some(tv)) = (sim, tv) {
            text.push_str(&format!("{},{sim},{tv}", s.step));
            for m in 0..models.len() {
                match s.per_model.get(m).and_then(|row| row.get(index)) {
                    Some(v) => text.push_str(&format!(",{v}")),
                    None => text.push(','),
                }
            }
            if negatives {
                match s.negative.get(index) {
                    Some(v) => text.push_str(&format!(",{v}")),
                    None => text.push(','),
                }
            }
            text.push('\n');
        }
    }
    text.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompt_names() {
        let part = prompt_file_part;
        assert_eq!(part("A cute golden retriever"), "A_cute_golden_retriever");
        assert_eq!(part("A snow-covered mountain peak"), "A_snow-covered_mountain_peak");
        assert_eq!(part(" café "), "_café_");
        assert_eq!(part(""), "");
        // Lossy mappings carry the prompt's hash: different prompts, different names.
        assert!(part("AC/DC: a \"band\"?").starts_with("AC-DC-_a_-band--~"));
        assert!(part("../etc").starts_with("_.-etc~"));
        // Never another result's start image (`<stem>.start.png`).
        assert!(part("a.start").starts_with("a.start~"));
        assert!(part("a.START").starts_with("a.START~"));
        assert_eq!(part("a.started"), "a.started");
        for (a, b) in [("a/b", "a-b"), (".", "_"), ("a b", "a_b"), ("a:b", "a?b"), ("x\ny", "x-y")]
        {
            assert_ne!(part(a), part(b), "{a:?} and {b:?}");
        }
        let long = "é".repeat(200);
        assert!(part(&long).len() <= MAX_PROMPT_BYTES + 9);
        assert_ne!(part(&long), part(&"é".repeat(201)));
        let prompts = vec!["a b".to_string(), "a b".to_string()];
        assert!(matches!(
            file_stems("constrained", "RN50", &prompts),
            Err(OutputError::SameName { .. })
        ));
    }

    #[test]
    fn tokens_of_unreleased_checkpoints() {
        assert_eq!(token_for_file(Path::new("/w/tiny-rn.pt")), "tiny-rn");
        assert_eq!(token_for_file(Path::new("my fine/ü b.v2.safetensors")), "--b.v2");
        assert_eq!(token_for_file(Path::new(".hidden.pt")), "_hidden");
        assert_eq!(token_for_file(Path::new("/")), "custom");
        assert_eq!(token_for_file(Path::new(&"x".repeat(300))).len(), 64);
    }

    #[test]
    fn rgb8_rounds_like_save_image() {
        let image = Tensor::from_slice(&[0.0f32, 0.5, 1.0, -0.1, 1.2, 0.002]).view([3, 1, 2]);
        let (bytes, w, h) = to_rgb8(&image).unwrap();
        assert_eq!((w, h), (2, 1));
        // floor(x * 255 + 0.5), clamped: pixel 0 = (0, 255, 255), pixel 1 = (128, 0, 1).
        assert_eq!(bytes, vec![0, 255, 255, 128, 0, 1]);
    }

    #[test]
    fn png_text_chunks_and_atomic_write() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.png");
        let text = [("prompt", "un café ☕".to_string()), ("mode", "constrained".to_string())];
        let bytes = png_bytes(&[1, 2, 3, 4, 5, 6], 2, 1, &text, &path).unwrap();
        write_atomic(&path, &bytes).unwrap();
        // Only the PNG is left: the temporary file was renamed.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        let reader =
            png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&path).unwrap()))
                .read_info()
                .unwrap();
        let info = reader.info();
        assert_eq!((info.width, info.height), (2, 1));
        // Latin-1 text in tEXt, anything else in iTXt (UTF-8).
        assert_eq!(info.uncompressed_latin1_text[0].text, "constrained");
        assert_eq!(info.utf8_text[0].get_text().unwrap(), "un café ☕");
    }

    #[test]
    fn a_lock_is_exclusive_and_clears_stale_temporaries() {
        let dir = tempfile::tempdir().unwrap();
        let stale = dir.path().join(".tmp-s.png.Ab12Cd");
        let other = dir.path().join(".tmp-s.png.png.Xy34Zw");
        std::fs::write(&stale, b"half").unwrap();
        std::fs::write(&other, b"another stem's").unwrap();
        let (lock, removed) = ResultLock::take(dir.path(), "s").unwrap();
        assert_eq!(removed, 1);
        assert!(!stale.exists() && other.exists());
        assert!(matches!(ResultLock::take(dir.path(), "s"), Err(OutputError::Busy { .. })));
        drop(lock);
        assert!(!dir.path().join(".s.lock").exists(), "the lock file goes with the run");
        assert!(ResultLock::take(dir.path(), "s").is_ok());
    }

    #[test]
    fn another_prompts_record_is_not_replaced() {
        let dir = tempfile::tempdir().unwrap();
        assert!(check_existing(dir.path(), "s", "a", None).is_ok());
        std::fs::write(dir.path().join("s.json"), br#"{"prompt": "a"}"#).unwrap();
        assert!(check_existing(dir.path(), "s", "a", None).is_ok());
        let err = check_existing(dir.path(), "s", "b", None).unwrap_err();
        assert!(matches!(err, OutputError::OtherPrompt { .. }), "{err}");
        std::fs::write(dir.path().join("s.json"), b"{").unwrap();
        assert!(matches!(
            check_existing(dir.path(), "s", "a", None),
            Err(OutputError::NotARecord { .. })
        ));
    }
}
