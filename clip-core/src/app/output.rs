//! What a run leaves behind, per prompt: the image as an 8-bit RGB PNG (with the prompt and
//! settings in tEXt chunks), a JSON record and a CSV of the logged steps, each written atomically.
//!
//! Mirrors the seed's saving (`results/<model>/<mode>_<model>_<prompt with spaces as
//! underscores>.png`) and its 8-bit conversion as torchvision's `save_image` does it
//! (`mul(255).add_(0.5).clamp_(0, 255)` then `uint8`).

use crate::engine::optimize::{Mode, StepStats};
use serde::Serialize;
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
    #[error("prompts {first:?} and {second:?} would both be saved as {name}: make them differ in letters or digits")]
    SameName { first: String, second: String, name: String },
}

/// Longest prompt part of a file name, in bytes: file names are limited to 255 bytes, and the stem
/// also holds the mode, the model and an extension.
const MAX_PROMPT_BYTES: usize = 180;

/// The prompt as a file-name part: spaces become underscores, as the seed does (an empty prompt,
/// which the reference accepts, gives an empty part: `<mode>_<model>_.png`); characters that
/// are unsafe in file names on Linux, macOS or Windows (`/ \ : * ? " < > |` and control
/// characters) become `-`; a leading `.` becomes `_` (no hidden files, no `..`); the result is cut
/// to 180 bytes at a character boundary. Other characters (letters of any script, digits,
/// punctuation) are kept.
pub fn prompt_file_part(prompt: &str) -> String {
    let mut name = String::new();
    for c in prompt.chars() {
        let mapped = match c {
            ' ' => '_',
            '/' | '\\' | ':' | '*' | '?' | '"' | '<' | '>' | '|' => '-',
            c if c.is_control() => '-',
            c => c,
        };
        if name.len() + mapped.len_utf8() > MAX_PROMPT_BYTES {
            break;
        }
        name.push(mapped);
    }
    if name.starts_with('.') {
        name.replace_range(..1, "_");
    }
    name
}

/// `<mode>_<model>_<prompt>`, the seed's file stem.
pub fn file_stem(mode: Mode, results_token: &str, prompt: &str) -> String {
    format!("{mode}_{results_token}_{}", prompt_file_part(prompt))
}

/// The stems of all prompts of a run, refusing two prompts that map to the same file.
pub fn file_stems(
    mode: Mode,
    results_token: &str,
    prompts: &[String],
) -> Result<Vec<String>, OutputError> {
    let stems: Vec<String> = prompts.iter().map(|p| file_stem(mode, results_token, p)).collect();
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

/// An image [3, H, W] with values in [0, 1] as 8-bit RGB bytes (row-major, interleaved), rounded as
/// torchvision's `save_image`.
pub fn to_rgb8(image: &Tensor) -> (Vec<u8>, u32, u32) {
    let size = image.size();
    let (h, w) = (size[1], size[2]);
    let bytes = (image.to_kind(Kind::Float) * 255.0 + 0.5)
        .clamp(0.0, 255.0)
        .to_kind(Kind::Uint8)
        .permute([1, 2, 0])
        .contiguous()
        .to_device(tch::Device::Cpu);
    (Vec::<u8>::try_from(bytes.flatten(0, -1)).unwrap_or_default(), w as u32, h as u32)
}

/// The directories a run created for its outputs. Dropped without [`keep`](Self::keep) — the run
/// failed, by an error or a panic — it removes those still empty, deepest first, so a failed run
/// leaves no empty `results/<model>/` behind (and never touches a file).
#[derive(Debug)]
#[must_use = "dropping it removes the directories it created while they are empty"]
pub struct NewDirs {
    created: Vec<std::path::PathBuf>,
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
    let created: Vec<std::path::PathBuf> = dir
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

/// Writes `bytes` to `path` through a temporary file in the same directory and a rename, so a
/// reader never sees a half-written file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), OutputError> {
    let io = |source| OutputError::Io { path: path.to_path_buf(), source };
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let mut builder = tempfile::Builder::new();
    // A temporary file is private (0600) by default; results are ordinary files, so ask for 0666
    // and let the user's umask decide, as `File::create` would.
    #[cfg(unix)]
    builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666));
    let mut file = builder.prefix(".tmp-").tempfile_in(dir).map_err(io)?;
    file.write_all(bytes).map_err(io)?;
    file.as_file().sync_all().map_err(io)?;
    file.persist(path).map_err(|e| io(e.error))?;
    Ok(())
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

/// The JSON record of one prompt's run.
#[derive(Debug, Clone, Serialize)]
pub struct RunRecord {
    pub prompt: String,
    pub model: String,
    pub mode: String,
    /// The PNG's file name (next to this record).
    pub image: String,
    pub weights: String,
    pub weights_sha256: String,
    pub steps: usize,
    /// The steps done: `steps`, or fewer when the run was interrupted.
    pub steps_done: usize,
    /// Whether Ctrl-C or SIGTERM stopped the run at `steps_done`; the image is the one reached.
    pub interrupted: bool,
    /// The step at which this prompt's loss or gradient stopped being finite (NaN/Inf); its image
    /// is the one that step started from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub frozen_at_step: Option<usize>,
    pub learning_rate: f64,
    /// Used only by the constrained mode.
    pub tv_weight: f64,
    pub seed: u64,
    pub device: String,
    pub resolution: i64,
    /// Prompts optimised together in the batch this one ran in.
    pub batch_size: usize,
    /// The initial image (float, before the first update) against the prompt.
    pub initial_similarity: f64,
    /// The saved PNG re-loaded, preprocessed as CLIP's `preprocess` and scored: the seed's
    /// "Final Similarity".
    pub final_similarity: f64,
    /// The result image before 8-bit quantisation, scored the same way.
    pub final_similarity_unquantized: f64,
    /// Constrained: the step whose augmented view had the lowest similarity loss (the saved image
    /// is the image after that step's update) and that loss.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub best_step: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub best_similarity_loss: Option<f64>,
    /// Optimisation steps per second (each step updates every prompt of the batch).
    pub steps_per_second: f64,
    pub loop_seconds: f64,
    /// How the steps ran: `CUDA graph (…)` or `eager (<why no graph>)`.
    pub execution: String,
    /// The whole run up to this record: loading, text encoding, optimisation, saving, scoring.
    pub wall_seconds: f64,
}

/// The record as pretty JSON, newline-terminated.
pub fn json_bytes(record: &RunRecord) -> Vec<u8> {
    let mut text = serde_json::to_string_pretty(record).unwrap_or_default();
    text.push('\n');
    text.into_bytes()
}

/// `step,similarity,tv` for prompt `index` of every step in `stats`: the step's view similarity and
/// the un-weighted total variation of the un-augmented image.
pub fn csv_bytes(stats: &[StepStats], index: usize) -> Vec<u8> {
    let mut text = String::from("step,similarity,tv\n");
    for s in stats {
        let (sim, tv) = (s.similarity.get(index), s.tv.get(index));
        if let (Some(sim), Some(tv)) = (sim, tv) {
            text.push_str(&format!("{},{sim},{tv}\n", s.step));
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
        assert_eq!(part("AC/DC: a \"band\"?"), "AC-DC-_a_-band--");
        assert_eq!(part("../etc"), "_.-etc");
        assert_eq!(part(" café "), "_café_");
        assert_eq!(part(""), "");
        assert_eq!(part(&"é".repeat(200)).len(), 180);
        let prompts = vec!["a/b".to_string(), "a:b".to_string()];
        assert!(matches!(
            file_stems(Mode::Constrained, "RN50", &prompts),
            Err(OutputError::SameName { .. })
        ));
    }

    #[test]
    fn rgb8_rounds_like_save_image() {
        let image = Tensor::from_slice(&[0.0f32, 0.5, 1.0, -0.1, 1.2, 0.002]).view([3, 1, 2]);
        let (bytes, w, h) = to_rgb8(&image);
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
}
