//! One generation run, as the experiment binaries and `clip generate` do it: resolve the request,
//! prepare the outputs, load the model, optimise, save.
//!
//! Each step is its own function: [`resolve`] (prompts, seed, device, settings), [`prepare`] (the
//! result names, the refusal to replace another prompt's record, the results' locks, the output
//! directory — before the weights are fetched and the optimisation starts), [`load`] (the weights,
//! downloaded if needed, checked against the model a binary is for), [`optimise`] (the engine,
//! with progress and Ctrl-C) and [`save`] (PNG, JSON and CSV per prompt, the PNG re-scored as the
//! seed's "Final Similarity"). Ctrl-C stops at the next safe point: while loading nothing is saved
//! and the directories the run created are removed while empty; during the optimisation the images
//! reached are saved, marked interrupted.

use super::device::DeviceChoice;
use super::interrupt;
use super::output::{self, NewDirs, ResultLock, RunRecord};
use super::progress::Progress;
use crate::clip::excerpt::excerpt;
use crate::clip::model::{ClipConfig, LoadedClip, Precision, VisionConfig};
use crate::clip::preprocess;
use crate::clip::released::{self, ReleasedModel};
use crate::clip::tokenizer::Tokenizer;
use crate::clip::weights::download;
use crate::engine::draws::TorchDraws;
use crate::engine::objective::cosine_similarity;
use crate::engine::optimize::{optimize_until, similarity, Keep, Outcome, Preset, Settings};
use anyhow::Context;
use std::path::{Path, PathBuf};
use std::time::Instant;
use tch::{Device, Kind, Tensor};

/// Where the model comes from.
#[derive(Debug, Clone)]
pub enum ModelSource {
    /// A released model, from `~/.cache/clip` (downloaded if missing).
    Released(&'static ReleasedModel),
    /// A checkpoint file. With `expect`, its architecture must be that model's (a model crate's
    /// binary refuses another architecture's weights rather than mislabel its results).
    Weights { path: PathBuf, expect: Option<&'static ReleasedModel> },
}

/// Everything a run needs to know.
#[derive(Debug, Clone)]
pub struct RunSpec {
    pub model: ModelSource,
    pub prompts: Vec<String>,
    /// The first part of the file names (`<name>_<model>_<prompt>.png`) and the record's `mode`.
    pub name: String,
    /// The preset the settings started from (recorded).
    pub preset: Option<Preset>,
    pub settings: Settings,
    /// `None`: fp16 on CUDA, fp32 on the CPU.
    pub precision: Option<Precision>,
    pub device: DeviceChoice,
    /// `None`: a random seed, printed and recorded.
    pub seed: Option<u64>,
    /// Outputs go to `out/<model token>/`.
    pub out: PathBuf,
    /// A log line every this many steps (and after the last).
    pub log_every: usize,
}

/// What a run produced for one prompt.
#[derive(Debug, Clone)]
pub struct PromptResult {
    pub png: PathBuf,
    pub json: PathBuf,
    pub csv: PathBuf,
    pub record: RunRecord,
}

/// The request, checked and completed.
struct Resolved {
    prompts: Vec<String>,
    tokens: Tensor,
    seed: u64,
    device: Device,
    precision: Precision,
}

/// The outputs, ready to be written: names, locks, the directory.
struct Prepared {
    dir: PathBuf,
    stems: Vec<String>,
    /// Dropped before `new_dirs`: their files go first, so a new directory can be empty again.
    _locks: Vec<ResultLock>,
    new_dirs: NewDirs,
}

/// The model, loaded.
struct Loaded {
    model: LoadedClip,
    weights: PathBuf,
    weights_sha256: String,
    /// The record's `model`.
    name: String,
    token: String,
    /// The prompts' text features [N, D] on the device, encoded once.
    text: Tensor,
}

/// Runs every prompt of `spec` in one batch and writes their outputs.
pub fn run(spec: &RunSpec) -> anyhow::Result<Vec<PromptResult>> {
    let started = Instant::now();
    let resolved = resolve(spec)?;
    // The outputs are prepared before anything slow when the model's token is known.
    let early = match &spec.model {
        ModelSource::Released(m) | ModelSource::Weights { expect: Some(m), .. } => {
            spec.settings.validate(m.input_resolution())?;
            Some(prepare(spec, &resolved, m.token)?)
        }
        ModelSource::Weights { expect: None, .. } => None,
    };
    let loaded = load(spec, &resolved)?;
    let prepared = match early {
        Some(p) => p,
        None => prepare(spec, &resolved, &loaded.token)?,
    };
    // optimize_until checks the settings against the model before any step.
    interrupt::check("before the optimisation")?;
    let (outcome, progress_history) = optimise(spec, &resolved, &loaded)?;
    let results = save(spec, &resolved, &loaded, &prepared, &outcome, &progress_history, started)?;
    prepared.new_dirs.keep();
    Ok(results)
}

fn device_name(device: Device) -> String {
    match device {
        Device::Cpu => "cpu".to_string(),
        Device::Cuda(i) => format!("cuda:{i}"),
        other => format!("{other:?}").to_lowercase(),
    }
}

/// Prompts tokenized (a too-long one is named), the seed drawn, the device resolved.
fn resolve(spec: &RunSpec) -> anyhow::Result<Resolved> {
    // Two prompts that would share a file are refused before any work, whatever the model.
    output::file_stems(&spec.name, "model", &spec.prompts)?;
    let tokens =
        Tokenizer::new()?.tokenize(&spec.prompts, false).context("tokenizing the prompts")?;
    let device = spec.device.resolve()?;
    Ok(Resolved {
        prompts: spec.prompts.clone(),
        tokens,
        seed: spec.seed.unwrap_or_else(|| u64::from(rand::random::<u32>())),
        device,
        precision: spec.precision.unwrap_or(Precision::for_device(device)),
    })
}

/// The result names, checked against the records already in the directory, locked, and the
/// directory created and probed for writing.
fn prepare(spec: &RunSpec, resolved: &Resolved, token: &str) -> anyhow::Result<Prepared> {
    let stems = output::file_stems(&spec.name, token, &resolved.prompts)?;
    let dir = spec.out.join(token);
    let new_dirs = output::create_writable_dir(&dir)?;
    let mut locks = Vec::new();
    let mut stale = 0;
    for (stem, prompt) in stems.iter().zip(&resolved.prompts) {
        let (lock, removed) = ResultLock::take(&dir, stem)?;
        locks.push(lock);
        stale += removed;
        output::check_not_another_prompts(&dir, stem, prompt)?;
    }
    if stale > 0 {
        eprintln!(
            "note: removed {stale} temporary file(s) that an earlier, killed run left in {}",
            dir.display()
        );
    }
    Ok(Prepared { dir, stems, _locks: locks, new_dirs })
}

/// A short description of an architecture, for errors.
fn describe(config: &ClipConfig) -> String {
    match released::by_config(config) {
        Some(m) => format!("a {} network", m.name),
        None => {
            let vision = match config.vision {
                VisionConfig::ResNet { layers, width } => {
                    format!("ResNet layers {layers:?}, width {width}")
                }
                VisionConfig::ViT { patch_size, width, layers } => {
                    format!("ViT patch {patch_size}, width {width}, {layers} layers")
                }
            };
            format!(
                "a CLIP network that is none of the released models ({vision}, {} px input)",
                config.image_resolution
            )
        }
    }
}

/// The weights (downloaded if needed), the model on the device, checked against the expected
/// architecture, and the weights' SHA-256.
fn load(spec: &RunSpec, resolved: &Resolved) -> anyhow::Result<Loaded> {
    let (path, expect) = match &spec.model {
        ModelSource::Released(m) => {
            let path = download::resolve_model_with(m.name, None, &interrupt::requested)
                .with_context(|| format!("getting the released {} weights", m.name))?;
            (path, Some(*m))
        }
        ModelSource::Weights { path, expect } => (path.clone(), *expect),
    };
    println!(
        "{} {}: {} prompt(s), {} steps, lr {}, param {}, augment [{}], tv weight {}, keep {}, \
         seed {}, device {}, precision {}, weights {}",
        expect.map_or("CLIP", |m| m.name),
        spec.name,
        resolved.prompts.len(),
        spec.settings.steps,
        spec.settings.learning_rate,
        spec.settings.param,
        spec.settings.augment.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(" "),
        spec.settings.tv_weight,
        spec.settings.keep,
        resolved.seed,
        device_name(resolved.device),
        resolved.precision,
        path.display()
    );
    // Loaded first: its errors say what is wrong with a missing or broken file.
    let model =
        LoadedClip::load_with(&path, resolved.device, resolved.precision, &interrupt::requested)
            .with_context(|| format!("loading the CLIP model from {}", path.display()))?;
    let config = model.model.config;
    let matched = released::by_config(&config);
    if let Some(expected) = expect {
        if matched != Some(expected) {
            anyhow::bail!(
                "{} holds {}, but this run is for {}: use the weights of {} (or `clip generate \
                 --weights` for any architecture)",
                path.display(),
                describe(&config),
                expected.name,
                expected.name
            );
        }
    }
    let (name, token) = match matched {
        Some(m) => (m.name.to_string(), m.token.to_string()),
        None => {
            let stem =
                path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
            let token = output::prompt_file_part(&stem).replace('~', "-");
            let token = if token.is_empty() { "custom".to_string() } else { token };
            (token.clone(), token)
        }
    };
    let weights_sha256 = download::sha256_file_with(&path, &interrupt::requested)?;
    let text =
        tch::no_grad(|| model.model.encode_text(&resolved.tokens.to_device(resolved.device)));
    Ok(Loaded { model, weights: path, weights_sha256, name, token, text })
}

/// The optimisation, with the progress bar and log lines; Ctrl-C stops it after the current step.
fn optimise(
    spec: &RunSpec,
    resolved: &Resolved,
    loaded: &Loaded,
) -> anyhow::Result<(Outcome, super::progress::History)> {
    let model = &loaded.model.model;
    let text = &loaded.text;
    let settings = &spec.settings;
    let show_tv = settings.tv_weight > 0.0;
    let mut progress = Progress::new(
        &resolved.prompts,
        settings.steps,
        settings.tv_weight,
        show_tv,
        spec.log_every,
    );
    tch::manual_seed(resolved.seed as i64);
    let outcome = optimize_until(
        model,
        text,
        settings,
        &mut TorchDraws,
        &mut |chunk| progress.update(chunk),
        &interrupt::requested,
    )?;
    progress.finish();
    for (i, step) in outcome.frozen_at.iter().enumerate() {
        if let Some(step) = step {
            progress.announce_frozen(i, *step);
        }
    }
    let done = outcome.steps_done;
    println!(
        "{done} steps in {:.1} s ({:.2} steps/s); steps: {}",
        outcome.loop_seconds,
        outcome.steps_per_second(done),
        outcome.execution
    );
    if outcome.interrupted {
        println!("interrupted at step {done} of {}: saving the images reached", settings.steps);
    }
    Ok((outcome, progress.history))
}

/// The saved PNG, through CLIP's preprocessing, against text `index` — as the seed verifies.
fn rescore(
    model: &LoadedClip,
    png: &Path,
    text: &Tensor,
    index: i64,
    device: Device,
) -> anyhow::Result<f64> {
    let resolution = model.model.config.image_resolution;
    let pixels = preprocess::preprocess_path(png, resolution as u32)
        .with_context(|| format!("re-reading {}", png.display()))?;
    let features =
        tch::no_grad(|| model.model.encode_image(&pixels.unsqueeze(0).to_device(device)));
    let sim = cosine_similarity(&features, &text.narrow(0, index, 1)).to_kind(Kind::Double);
    sim.f_double_value(&[0]).context("reading back the final similarity")
}

/// Per prompt: the PNG (with its record's settings), the JSON record and the CSV of the steps.
fn save(
    spec: &RunSpec,
    resolved: &Resolved,
    loaded: &Loaded,
    prepared: &Prepared,
    outcome: &Outcome,
    history: &super::progress::History,
    started: Instant,
) -> anyhow::Result<Vec<PromptResult>> {
    let model = &loaded.model.model;
    let device = resolved.device;
    let text = &loaded.text;
    let initial_similarity = similarity(model, &outcome.initial, text)?;
    let unquantized = similarity(model, &outcome.images, text)?;
    // Again: the directory may have gone during the run.
    output::ensure_writable_dir(&prepared.dir)?;
    let settings = &spec.settings;
    let canvas = settings.canvas_for(model.config.image_resolution);
    let done = outcome.steps_done;

    let mut results = Vec::new();
    for (i, (prompt, stem)) in resolved.prompts.iter().zip(&prepared.stems).enumerate() {
        let best = outcome.best.as_ref().and_then(|b| b.get(i).copied());
        let png = prepared.dir.join(format!("{stem}.png"));
        let json = prepared.dir.join(format!("{stem}.json"));
        let csv = prepared.dir.join(format!("{stem}.csv"));
        let (rgb, width, height) = output::to_rgb8(&outcome.images.get(i as i64))
            .context("converting the image to 8 bits")?;
        let mut record = RunRecord {
            prompt: prompt.clone(),
            model: loaded.name.clone(),
            mode: spec.name.clone(),
            preset: spec.preset.map(|p| p.to_string()),
            image: format!("{stem}.png"),
            image_sha256: String::new(),
            weights: loaded.weights.display().to_string(),
            weights_sha256: loaded.weights_sha256.clone(),
            param: settings.param.to_string(),
            decay: settings.decay,
            augment: settings.augment.iter().map(|a| a.to_string()).collect(),
            size: canvas.to_string(),
            keep: settings.keep.to_string(),
            views_per_image: settings.views_per_image(),
            steps: settings.steps,
            steps_done: done,
            interrupted: outcome.interrupted,
            frozen_at_step: outcome.frozen_at.get(i).copied().flatten(),
            learning_rate: settings.learning_rate,
            tv_weight: settings.tv_weight,
            seed: resolved.seed,
            device: device_name(device),
            precision: resolved.precision.to_string(),
            resolution: model.config.image_resolution,
            batch_size: resolved.prompts.len(),
            initial_similarity: initial_similarity[i],
            final_similarity: f64::NAN,
            final_similarity_unquantized: unquantized[i],
            best_step: best.filter(|_| settings.keep == Keep::Best).map(|b| b.0),
            best_similarity_loss: best.map(|b| b.1),
            history_every: history.every(),
            steps_per_second: outcome.steps_per_second(done),
            loop_seconds: outcome.loop_seconds,
            execution: outcome.execution.to_string(),
            wall_seconds: 0.0,
        };
        let png_bytes = output::png_bytes(&rgb, width, height, &record.png_text(), &png)?;
        record.image_sha256 = output::sha256_hex(&png_bytes);
        output::write_atomic(&png, &png_bytes)?;
        record.final_similarity = rescore(&loaded.model, &png, text, i as i64, device)?;
        record.wall_seconds = started.elapsed().as_secs_f64();
        output::write_atomic(&json, &output::json_bytes(&record)?)?;
        output::write_atomic(&csv, &output::csv_bytes(history.rows(), i))?;
        println!(
            "Final Similarity: {:.4}  ({} -> {})",
            record.final_similarity,
            excerpt(prompt),
            png.display()
        );
        results.push(PromptResult { png, json, csv, record });
    }
    Ok(results)
}
