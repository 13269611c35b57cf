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
//!
//! Beyond the seed: several models (an ensemble: one image per prompt, its loss the weighted mean
//! of the models' losses, results in `<out>/ensemble-<token>+<token>…/`), negative prompts (each
//! re-scored on the saved PNG), and a photo as the start (resized and centre-cropped to the
//! canvas, optionally kept within an L∞ budget; the start saved beside the result as
//! `<stem>.start.png`, the distances measured on the saved PNG).

use super::cli::UsageError;
use super::interrupt;
use super::output::{
    self, InitRecord, MemberRecord, NegativeRecord, NewDirs, ResultLock, RunRecord,
};
use super::progress::Progress;
pub use super::request::{ModelSource, RunRequest};
use anyhow::Context;
use clip_core::clip::excerpt::excerpt;
use clip_core::clip::model::{ClipConfig, LoadedClip, Precision, VisionConfig};
use clip_core::clip::preprocess;
use clip_core::clip::released;
use clip_core::clip::tokenizer::Tokenizer;
use clip_core::clip::torch_error;
use clip_core::clip::weights::download;
use clip_core::engine::draws::{Draws, KeyedDraws, TorchDraws};
use clip_core::engine::objective::{cosine_similarity, Member};
use clip_core::engine::optimize::{
    optimize_objective_until, similarity, similarity_matrix, Keep, Outcome, StepStats,
};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;
use tch::{Device, Kind, Tensor};

/// One prompt of a sweep's batch: its own seed (its draws keyed by it), result name and run id.
#[derive(Debug, Clone, PartialEq)]
pub struct RowSpec {
    pub seed: u64,
    /// The first part of its file names and its record's `mode`.
    pub name: String,
    pub run_id: String,
}

/// How `clip sweep` runs a batch of runs that differ only in prompt and seed: each row its own
/// seed, name and run id; the batch padded to `width` rows with copies of its last (so every
/// batch of a sweep has the same shape and a run's result does not depend on how many
/// batch-mates it has).
pub struct Batch {
    /// One per prompt of the spec, in its order.
    pub rows: Vec<RowSpec>,
    /// The number of rows the optimisation runs (>= the prompts).
    pub width: usize,
}

/// What receives the statistics of the steps at every read-back.
pub type StatsHook<'a> = &'a mut dyn FnMut(&[StepStats]);

/// How a caller other than the binaries drives runs (`clip sweep`, the Python module): models
/// loaded once and shared, its own progress and stop, no bar or log lines.
pub struct Hooks<'a> {
    pub models: &'a mut ModelCache,
    /// At every read-back: the statistics of the steps since the last (the real prompts' only).
    pub on_stats: StatsHook<'a>,
    /// Asked after every step whether to stop there; the images reached are then saved, marked
    /// interrupted.
    pub stop: &'a dyn Fn() -> bool,
}

/// Models loaded once and shared by the batches of a sweep: by source, device and precision.
#[derive(Default)]
pub struct ModelCache {
    models: HashMap<String, CachedModel>,
}

#[derive(Clone)]
struct CachedModel {
    model: Arc<LoadedClip>,
    weights: PathBuf,
    weights_sha256: String,
}

/// The cache's key of a model: its source, device and precision.
fn cache_key(source: &ModelSource, device: Device, precision: Precision) -> String {
    format!("{} on {} in {precision}", source.identity(), device_name(device))
}

impl ModelCache {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a model loaded elsewhere from the file `weights` (its SHA-256 `weights_sha256`) on
    /// `device` in `precision`, for runs that name that file.
    pub fn insert(
        &mut self,
        model: Arc<LoadedClip>,
        weights: PathBuf,
        weights_sha256: String,
        device: Device,
        precision: Precision,
    ) {
        let source = ModelSource::Weights { path: weights.clone(), expect: None };
        self.models.insert(
            cache_key(&source, device, precision),
            CachedModel { model, weights, weights_sha256 },
        );
    }

    /// How many models are loaded.
    pub fn len(&self) -> usize {
        self.models.len()
    }

    pub fn is_empty(&self) -> bool {
        self.models.is_empty()
    }
}

/// What a run produced for one prompt.
#[derive(Debug)]
pub struct PromptResult {
    /// The image [3, H, W] in [0, 1] on the CPU: a view of the optimisation's result (what the PNG
    /// holds before its 8-bit rounding).
    pub image: Tensor,
    pub png: PathBuf,
    pub json: PathBuf,
    pub csv: PathBuf,
    pub record: RunRecord,
}

/// The request, checked and completed.
struct Resolved {
    prompts: Vec<String>,
    /// Per prompt: its result name (the spec's name, or its sweep row's).
    names: Vec<String>,
    /// Per prompt with keyed draws (a sweep's batch): its seed and run id.
    rows: Vec<RowSpec>,
    /// The optimisation's rows: the prompts, padded (a sweep's batch).
    width: usize,
    /// No progress bar, no log lines (a sweep's batch).
    quiet: bool,
    tokens: Tensor,
    /// The negative prompts' tokens, when there are any.
    negative_tokens: Option<Tensor>,
    /// The members' weights, normalised to sum to 1.
    weights: Vec<f64>,
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

/// One model, loaded.
struct LoadedMember {
    model: Arc<LoadedClip>,
    weights: PathBuf,
    weights_sha256: String,
    /// The released model's name, or the file's token.
    name: String,
    token: String,
    /// The prompts' text features [N, D] on the device, encoded once.
    text: Tensor,
    /// The negatives' text features [K, D], encoded once.
    negatives: Option<Tensor>,
}

/// The models, loaded.
struct Loaded {
    members: Vec<LoadedMember>,
    /// The record's `model`: the model's name, or the members' names joined by `+`.
    name: String,
    /// The results directory's token: the model's, or `ensemble-<token>+<token>…`.
    token: String,
    /// The start image [1, 3, H, W] in [0, 1], when starting from a photo.
    start: Option<Tensor>,
}

impl Loaded {
    fn ensemble(&self) -> bool {
        self.members.len() > 1
    }

    /// The resolution the views are made at: the largest of the members'.
    fn resolution(&self) -> i64 {
        self.members.iter().map(|m| m.model.model.config.image_resolution).max().unwrap_or(0)
    }
}

/// The results token of an ensemble of members with these tokens.
pub fn ensemble_token<S: AsRef<str>>(tokens: &[S]) -> String {
    let parts: Vec<&str> = tokens.iter().map(AsRef::as_ref).collect();
    format!("ensemble-{}", parts.join("+"))
}

/// The token of the run when every member's is known before loading.
fn known_token(models: &[ModelSource]) -> Option<String> {
    let tokens: Option<Vec<&str>> = models.iter().map(ModelSource::known_token).collect();
    let tokens = tokens?;
    match tokens.as_slice() {
        [one] => Some(one.to_string()),
        many => Some(ensemble_token(many)),
    }
}

/// Runs every prompt of `spec` in one batch and writes their outputs.
pub fn run(spec: &RunRequest) -> anyhow::Result<Vec<PromptResult>> {
    run_inner(spec, None, None)
}

/// Runs every prompt of `spec` in one batch, driven by `hooks` (models, progress, stop; quiet).
pub fn run_with(spec: &RunRequest, hooks: Hooks) -> anyhow::Result<Vec<PromptResult>> {
    run_inner(spec, None, Some(hooks))
}

/// Runs a sweep's batch: as [`run_with`], each prompt with its row's seed, name and run id.
pub fn run_batch(
    spec: &RunRequest,
    batch: Batch,
    hooks: Hooks,
) -> anyhow::Result<Vec<PromptResult>> {
    if batch.rows.len() != spec.prompts.len() || batch.width < spec.prompts.len() {
        anyhow::bail!(
            "a batch of {} prompt(s) needs as many rows (not {}) and a width of at least that              (not {})",
            spec.prompts.len(),
            batch.rows.len(),
            batch.width
        );
    }
    run_inner(spec, Some(batch), Some(hooks))
}

fn run_inner(
    spec: &RunRequest,
    batch: Option<Batch>,
    mut hooks: Option<Hooks>,
) -> anyhow::Result<Vec<PromptResult>> {
    let started = Instant::now();
    match batch {
        Some(_) => spec.validate_shared()?,
        None => spec.validate()?,
    }
    let resolved = resolve(spec, batch.as_ref(), hooks.is_some())?;
    // The outputs are prepared before anything slow when the models' tokens are known.
    let early = match known_token(&spec.models) {
        Some(token) => {
            spec.settings.validate(spec.known_resolution().unwrap_or(0))?;
            Some(prepare(spec, &resolved, &token)?)
        }
        None => None,
    };
    let loaded = load(spec, &resolved, hooks.as_mut().map(|h| &mut *h.models))?;
    let prepared = match early {
        Some(p) => p,
        None => prepare(spec, &resolved, &loaded.token)?,
    };
    // optimize_objective_until checks the settings against the models before any step.
    interrupt::check("before the optimisation")?;
    let (outcome, progress_history) = optimise(spec, &resolved, &loaded, hooks)?;
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
fn resolve(spec: &RunRequest, batch: Option<&Batch>, quiet: bool) -> anyhow::Result<Resolved> {
    let weights = if spec.model_weights.is_empty() {
        vec![1.0; spec.models.len()]
    } else {
        spec.model_weights.clone()
    };
    let total: f64 = weights.iter().sum();
    let weights = weights.iter().map(|w| w / total).collect();
    let names: Vec<String> = match batch {
        Some(b) => b.rows.iter().map(|r| r.name.clone()).collect(),
        None => vec![spec.name.clone(); spec.prompts.len()],
    };
    // Two prompts that would share a file are refused before any work, whatever the model.
    output::file_stems_named(&names, "model", &spec.prompts)?;
    let tokenizer = Tokenizer::new()?;
    let tokens = tokenizer.tokenize(&spec.prompts, false).context("tokenizing the prompts")?;
    let negative_tokens = if spec.negatives.is_empty() {
        None
    } else {
        Some(
            tokenizer
                .tokenize(&spec.negatives, false)
                .context("tokenizing the negative prompts (--negative)")?,
        )
    };
    let device = spec.device.resolve()?;
    Ok(Resolved {
        prompts: spec.prompts.clone(),
        names,
        rows: batch.map(|b| b.rows.clone()).unwrap_or_default(),
        width: batch.map_or(spec.prompts.len(), |b| b.width),
        quiet,
        tokens,
        negative_tokens,
        weights,
        seed: spec.seed.unwrap_or_else(|| u64::from(rand::random::<u32>())),
        device,
        precision: spec.precision.unwrap_or(Precision::for_device(device)),
    })
}

/// The result names, checked against the records already in the directory, locked, and the
/// directory created and probed for writing.
fn prepare(spec: &RunRequest, resolved: &Resolved, token: &str) -> anyhow::Result<Prepared> {
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

/// The models (each downloaded if needed, checked against the expected architecture, hashed, its
/// texts encoded), the ensemble's name and token, and the start image.
fn load(
    spec: &RunRequest,
    resolved: &Resolved,
    mut cache: Option<&mut ModelCache>,
) -> anyhow::Result<Loaded> {
    let mut members = Vec::new();
    for source in &spec.models {
        members.push(load_member(spec, resolved, source, cache.as_deref_mut())?);
    }
    for (i, m) in members.iter().enumerate() {
        if let Some(j) = members[..i].iter().position(|o| o.weights_sha256 == m.weights_sha256) {
            return Err(UsageError(format!(
                "{} and {} are the same model (the same weights, SHA-256 {}…): an ensemble's \
                 models must differ",
                members[j].weights.display(),
                m.weights.display(),
                &m.weights_sha256[..12]
            ))
            .into());
        }
    }
    // Two different checkpoints of one architecture: told apart by their file names.
    for i in 0..members.len() {
        if members.iter().filter(|o| o.token == members[i].token).count() > 1 {
            let token = output::token_for_file(&members[i].weights);
            members[i].token = token.clone();
            members[i].name = token;
        }
    }
    let tokens: Vec<&str> = members.iter().map(|m| m.token.as_str()).collect();
    if let Some((i, t)) = tokens.iter().enumerate().find(|(i, t)| tokens[..*i].contains(t)) {
        return Err(UsageError(format!(
            "two models of the ensemble would both be called {t} in the results (model {}): \
             rename one of the checkpoint files",
            i + 1
        ))
        .into());
    }
    let (name, token) = match members.as_slice() {
        [one] => (one.name.clone(), one.token.clone()),
        many => (
            many.iter().map(|m| m.name.as_str()).collect::<Vec<_>>().join("+"),
            ensemble_token(&tokens),
        ),
    };
    let start = match &spec.init {
        Some(photo) => {
            let res = members.iter().map(|m| m.model.model.config.image_resolution).max();
            let canvas = spec.settings.canvas_for(res.unwrap_or(0));
            let image =
                preprocess::start_image_path(photo, canvas.width as u32, canvas.height as u32)
                    .with_context(|| {
                        format!("reading the start photo (--init) {}", photo.display())
                    })?;
            Some(image.unsqueeze(0))
        }
        None => None,
    };
    Ok(Loaded { members, name, token, start })
}

/// One model: its weights (downloaded if needed), loaded on the device, checked against the
/// expected architecture, hashed, and the prompts and negatives encoded.
fn load_member(
    spec: &RunRequest,
    resolved: &Resolved,
    source: &ModelSource,
    cache: Option<&mut ModelCache>,
) -> anyhow::Result<LoadedMember> {
    let key = cache_key(source, resolved.device, resolved.precision);
    let cached = cache.as_ref().and_then(|c| c.models.get(&key)).cloned();
    let expect = match source {
        ModelSource::Released(m) => Some(*m),
        ModelSource::Weights { expect, .. } => *expect,
    };
    let cached = match cached {
        Some(cached) => cached,
        None => {
            let loaded = load_model(spec, resolved, source)?;
            if let Some(cache) = cache {
                cache.models.insert(key, loaded.clone());
            }
            loaded
        }
    };
    let CachedModel { model, weights: path, weights_sha256 } = cached;
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
            let token = output::token_for_file(&path);
            (token.clone(), token)
        }
    };
    let device = resolved.device;
    let (text, negatives) = tch::no_grad(|| {
        let text = model.model.encode_text(&resolved.tokens.to_device(device));
        let negatives = resolved
            .negative_tokens
            .as_ref()
            .map(|t| model.model.encode_text(&t.to_device(device)));
        (text, negatives)
    });
    Ok(LoadedMember { model, weights: path, weights_sha256, name, token, text, negatives })
}

/// One model's weights (downloaded if needed), loaded on the device and hashed.
fn load_model(
    spec: &RunRequest,
    resolved: &Resolved,
    source: &ModelSource,
) -> anyhow::Result<CachedModel> {
    let (path, expect) = match source {
        ModelSource::Released(m) => {
            let path = crate::fetch::resolve_model(m.name, &interrupt::requested)
                .with_context(|| format!("getting the released {} weights", m.name))?;
            (path, Some(*m))
        }
        ModelSource::Weights { path, expect } => (path.clone(), *expect),
    };
    if !resolved.quiet {
        println!(
            "{}",
            spec.banner(
                expect.map_or("CLIP", |m| m.name),
                resolved.seed,
                &device_name(resolved.device),
                resolved.precision,
                &path.display().to_string()
            )
        );
    }
    // Loaded first: its errors say what is wrong with a missing or broken file.
    let model =
        LoadedClip::load_with(&path, resolved.device, resolved.precision, &interrupt::requested)
            .with_context(|| format!("loading the CLIP model from {}", path.display()))?;
    let weights_sha256 = download::sha256_file_with(&path, &interrupt::requested)?;
    // An Arc (not an Rc) so that the Python module's model objects can share a loaded model with
    // the runs; libtorch's tensors are safe to read from several threads.
    #[allow(clippy::arc_with_non_send_sync)]
    let model = Arc::new(model);
    Ok(CachedModel { model, weights: path, weights_sha256 })
}

/// The optimisation, with the progress bar and log lines; Ctrl-C stops it after the current step.
fn optimise(
    spec: &RunRequest,
    resolved: &Resolved,
    loaded: &Loaded,
    hooks: Option<Hooks>,
) -> anyhow::Result<(Outcome, super::progress::History)> {
    let (mut on_stats, stop): (Option<StatsHook>, &dyn Fn() -> bool) = match hooks {
        Some(h) => (Some(h.on_stats), h.stop),
        None => (None, &interrupt::requested),
    };
    let settings = &spec.settings;
    let mut progress = if resolved.quiet {
        Progress::quiet(&resolved.prompts, settings.steps)
    } else {
        let tv = settings.tv_weight;
        Progress::new(&resolved.prompts, settings.steps, tv, tv > 0.0, spec.log_every)
    };
    let n = resolved.prompts.len();
    // A padded batch repeats its last prompt (and seed) up to the width; their results go.
    let rows: Vec<i64> = (0..resolved.width).map(|i| i.min(n - 1) as i64).collect();
    let padded = resolved.width > n;
    let pad = |t: &Tensor| {
        if padded {
            t.index_select(0, &Tensor::from_slice(&rows).to_device(t.device()))
        } else {
            t.shallow_clone()
        }
    };
    let texts: Vec<Tensor> = loaded.members.iter().map(|m| pad(&m.text)).collect();
    let members: Vec<Member> = loaded
        .members
        .iter()
        .zip(&texts)
        .zip(&resolved.weights)
        .map(|((m, text), &weight)| Member {
            model: &m.model.model,
            text,
            negatives: m.negatives.as_ref(),
            weight,
        })
        .collect();
    let mut draws = draws_for(resolved, &rows);
    let run = || {
        optimize_objective_until(
            &members,
            loaded.start.as_ref(),
            settings,
            draws.as_mut(),
            &mut |chunk| {
                let kept: Vec<StepStats>;
                let chunk = if padded {
                    kept = chunk.iter().map(|s| s.first(n)).collect();
                    &kept
                } else {
                    chunk
                };
                progress.update(chunk);
                if let Some(f) = on_stats.as_mut() {
                    f(chunk);
                }
            },
            stop,
        )
    };
    let outcome = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(run)) {
        Ok(outcome) => outcome?.first(n),
        Err(payload) => {
            let message = torch_error::payload_text(&*payload);
            match torch_error::out_of_memory(&message) {
                Some(oom) if loaded.ensemble() => {
                    let names: Vec<&str> = loaded.members.iter().map(|m| m.name.as_str()).collect();
                    anyhow::bail!(ensemble_out_of_memory(resolved.prompts.len(), &names, &oom))
                }
                _ => std::panic::resume_unwind(payload),
            }
        }
    };
    finish_progress(&mut progress, &outcome, resolved.quiet, settings.steps);
    Ok((outcome, progress.history))
}

/// The run's random draws: torch's generator seeded with the run's seed, or (a sweep's batch)
/// each of the optimisation's `rows` keyed by its prompt's seed.
fn draws_for(resolved: &Resolved, rows: &[i64]) -> Box<dyn Draws> {
    if resolved.rows.is_empty() {
        tch::manual_seed(resolved.seed as i64);
        Box::new(TorchDraws)
    } else {
        let seeds: Vec<u64> = rows.iter().map(|&i| resolved.rows[i as usize].seed).collect();
        Box::new(KeyedDraws::new(&seeds, resolved.device))
    }
}

/// The progress closed, the frozen prompts announced, and the loop's summary line.
fn finish_progress(progress: &mut Progress, outcome: &Outcome, quiet: bool, steps: usize) {
    progress.finish();
    for (i, step) in outcome.frozen_at.iter().enumerate() {
        if let Some(step) = step {
            progress.announce_frozen(i, *step);
        }
    }
    let done = outcome.steps_done;
    if quiet {
        return;
    }
    println!(
        "{done} steps in {:.1} s ({:.2} steps/s); steps: {}",
        outcome.loop_seconds,
        outcome.steps_per_second(done),
        outcome.execution
    );
    if outcome.interrupted {
        println!("interrupted at step {done} of {steps}: saving the images reached");
    }
}

/// The error for an ensemble that did not fit in the device's memory: the models, and what to do.
pub fn ensemble_out_of_memory(prompts: usize, models: &[&str], oom: &str) -> String {
    format!(
        "the device ran out of memory optimising {prompts} prompt(s) against the ensemble {} \
         ({oom}): run fewer prompts at once (fewer --prompt flags, or split them over several \
         runs), or fewer or smaller models",
        models.join(" + ")
    )
}

/// The saved PNG's image features under `model`, through CLIP's preprocessing — as the seed
/// verifies.
fn png_features(model: &LoadedClip, png: &Path, device: Device) -> anyhow::Result<Tensor> {
    let resolution = model.model.config.image_resolution;
    let pixels = preprocess::preprocess_path(png, resolution as u32)
        .with_context(|| format!("re-reading {}", png.display()))?;
    Ok(tch::no_grad(|| model.model.encode_image(&pixels.unsqueeze(0).to_device(device))))
}

/// The cosine similarity of one image's features [1, D] with each row of `texts` [K, D].
fn cosines(features: &Tensor, texts: &Tensor) -> anyhow::Result<Vec<f64>> {
    let k = texts.size()[0];
    let sims = tch::no_grad(|| {
        cosine_similarity(&features.expand([k, features.size()[1]], false), texts)
            .to_kind(Kind::Double)
    });
    Vec::<f64>::try_from(sims.to_device(Device::Cpu)).context("reading back the similarities")
}

/// The weighted mean of per-member values.
fn weighted(values: &[f64], weights: &[f64]) -> f64 {
    if values.len() == 1 {
        return values[0];
    }
    values.iter().zip(weights).map(|(v, w)| v * w).sum()
}

/// Per member: the initial and unquantised final similarity of every image with its prompt, and
/// (with negatives) of every image with every negative.
struct Scores {
    initial: Vec<Vec<f64>>,
    unquantized: Vec<Vec<f64>>,
    negatives_initial: Vec<Vec<Vec<f64>>>,
}

fn float_scores(loaded: &Loaded, outcome: &Outcome) -> anyhow::Result<Scores> {
    let mut scores =
        Scores { initial: Vec::new(), unquantized: Vec::new(), negatives_initial: Vec::new() };
    for m in &loaded.members {
        let model = &m.model.model;
        scores.initial.push(similarity(model, &outcome.initial, &m.text)?);
        scores.unquantized.push(similarity(model, &outcome.images, &m.text)?);
        if let Some(negatives) = &m.negatives {
            scores.negatives_initial.push(similarity_matrix(model, &outcome.initial, negatives)?);
        }
    }
    Ok(scores)
}

/// Per prompt: the PNG (with its record's settings), the JSON record and the CSV of the steps.
fn save(
    spec: &RunRequest,
    resolved: &Resolved,
    loaded: &Loaded,
    prepared: &Prepared,
    outcome: &Outcome,
    history: &super::progress::History,
    started: Instant,
) -> anyhow::Result<Vec<PromptResult>> {
    let scores = float_scores(loaded, outcome)?;
    // Again: the directory may have gone during the run.
    output::ensure_writable_dir(&prepared.dir)?;
    let start_photo = match &spec.init {
        Some(photo) => Some((
            photo.clone(),
            download::sha256_file_with(photo, &interrupt::requested)
                .with_context(|| format!("hashing the start photo {}", photo.display()))?,
        )),
        None => None,
    };
    let saving =
        Saving { spec, resolved, loaded, prepared, outcome, history, scores, start_photo, started };
    (0..resolved.prompts.len()).map(|i| saving.prompt(i)).collect()
}

/// What the prompts' results share while they are saved.
struct Saving<'a> {
    spec: &'a RunRequest,
    resolved: &'a Resolved,
    loaded: &'a Loaded,
    prepared: &'a Prepared,
    outcome: &'a Outcome,
    history: &'a super::progress::History,
    scores: Scores,
    /// The start photo and its SHA-256.
    start_photo: Option<(PathBuf, String)>,
    started: Instant,
}

impl Saving<'_> {
    fn ensemble(&self) -> bool {
        self.loaded.ensemble()
    }

    /// Per-member values by token, for an ensemble's record; else empty.
    fn by_model(&self, values: &[f64]) -> std::collections::BTreeMap<String, f64> {
        if !self.ensemble() {
            return Default::default();
        }
        let tokens = self.loaded.members.iter().map(|m| m.token.clone());
        tokens.zip(values.iter().copied()).collect()
    }

    fn weighted(&self, values: &[f64]) -> f64 {
        weighted(values, &self.resolved.weights)
    }

    /// Prompt `i`: its PNG (and start image), re-scored, its record and CSV.
    fn prompt(&self, i: usize) -> anyhow::Result<PromptResult> {
        let stem = &self.prepared.stems[i];
        let path = |ext: &str| self.prepared.dir.join(format!("{stem}.{ext}"));
        let (png, json, csv) = (path("png"), path("json"), path("csv"));
        let image = self.outcome.images.get(i as i64);
        let (rgb, width, height) =
            output::to_rgb8(&image).context("converting the image to 8 bits")?;
        let mut record = self.record(i, stem);
        let png_bytes = output::png_bytes(&rgb, width, height, &record.png_text(), &png)?;
        record.image_sha256 = output::sha256_hex(&png_bytes);
        self.write_start_image(&mut record, &rgb)?;
        output::write_atomic(&png, &png_bytes)?;
        self.rescore(&mut record, i, &png)?;
        record.wall_seconds = self.started.elapsed().as_secs_f64();
        output::write_atomic(&json, &output::json_bytes(&record)?)?;
        let columns: Vec<String> = match self.ensemble() {
            true => self.loaded.members.iter().map(|m| m.token.clone()).collect(),
            false => Vec::new(),
        };
        output::write_atomic(&csv, &output::csv_bytes(self.history.rows(), i, &columns))?;
        if !self.resolved.quiet {
            println!("{}  ({} -> {})", final_line(&record), excerpt(&record.prompt), png.display());
        }
        Ok(PromptResult { image, png, json, csv, record })
    }

    /// Prompt `i`'s record before its files are written: the request, the outcome and the float
    /// scores (the PNG's hash and re-scores, the start's distances and the wall time come after).
    fn record(&self, i: usize, stem: &str) -> RunRecord {
        let (spec, resolved, loaded, outcome) =
            (self.spec, self.resolved, self.loaded, self.outcome);
        let settings = &spec.settings;
        let resolution = loaded.resolution();
        let done = outcome.steps_done;
        let best = outcome.best.as_ref().and_then(|b| b.get(i).copied());
        let member_initial: Vec<f64> = self.scores.initial.iter().map(|s| s[i]).collect();
        let member_unquantized: Vec<f64> = self.scores.unquantized.iter().map(|s| s[i]).collect();
        let (weights, weights_sha256) = match loaded.members.as_slice() {
            [one] => (Some(one.weights.display().to_string()), Some(one.weights_sha256.clone())),
            _ => (None, None),
        };
        let row = resolved.rows.get(i);
        let mut record = RunRecord {
            schema: output::SCHEMA,
            prompt: resolved.prompts[i].clone(),
            model: loaded.name.clone(),
            mode: resolved.names[i].clone(),
            preset: spec.preset,
            image: format!("{stem}.png"),
            image_sha256: String::new(),
            weights,
            weights_sha256,
            ensemble: Vec::new(),
            param: settings.param,
            decay: settings.decay,
            augment: settings.augment.clone(),
            size: settings.canvas_for(resolution),
            keep: settings.keep,
            views_per_image: settings.views_per_image(),
            steps: settings.steps,
            steps_done: done,
            interrupted: outcome.interrupted,
            frozen_at_step: outcome.frozen_at.get(i).copied().flatten(),
            learning_rate: settings.learning_rate,
            tv_weight: settings.tv_weight,
            negative_weight: (!spec.negatives.is_empty()).then_some(settings.negative_weight),
            negatives: Vec::new(),
            init: None,
            seed: row.map_or(resolved.seed, |r| r.seed),
            draws: row.map(|_| "keyed".to_string()),
            run_id: row.map(|r| r.run_id.clone()),
            device: device_name(resolved.device),
            precision: resolved.precision,
            resolution,
            batch_size: resolved.width,
            initial_similarity: self.weighted(&member_initial),
            final_similarity: f64::NAN,
            final_similarity_unquantized: self.weighted(&member_unquantized),
            best_step: best.filter(|_| settings.keep == Keep::Best).map(|b| b.0),
            best_similarity_loss: best.map(|b| b.1),
            history_every: self.history.every(),
            steps_per_second: outcome.steps_per_second(done),
            loop_seconds: outcome.loop_seconds,
            execution: outcome.execution.to_string(),
            wall_seconds: 0.0,
        };
        if self.ensemble() {
            record.ensemble = self.members(&member_initial, &member_unquantized);
        }
        if let (Some((photo, photo_sha256)), Some(_)) = (&self.start_photo, &loaded.start) {
            record.init = Some(InitRecord {
                photo: photo.display().to_string(),
                photo_sha256: photo_sha256.clone(),
                start_image: format!("{stem}{}", output::START_SUFFIX),
                start_image_sha256: String::new(),
                start_similarity: record.initial_similarity,
                start_similarity_by_model: self.by_model(&member_initial),
                epsilon: settings.epsilon,
                linf: f64::NAN,
                l2: f64::NAN,
            });
        }
        record
    }

    /// An ensemble's members, each with its float scores (its PNG score comes after).
    fn members(&self, initial: &[f64], unquantized: &[f64]) -> Vec<MemberRecord> {
        let members = self.loaded.members.iter().enumerate();
        members
            .map(|(m, member)| MemberRecord {
                model: member.name.clone(),
                token: member.token.clone(),
                weights: member.weights.display().to_string(),
                weights_sha256: member.weights_sha256.clone(),
                weight: self.resolved.weights[m],
                resolution: member.model.model.config.image_resolution,
                initial_similarity: initial[m],
                final_similarity: f64::NAN,
                final_similarity_unquantized: unquantized[m],
            })
            .collect()
    }

    /// A run from a photo: `<stem>.start.png` written, its hash and the result's distances from
    /// it (the 8-bit result `rgb`) in the record.
    fn write_start_image(&self, record: &mut RunRecord, rgb: &[u8]) -> anyhow::Result<()> {
        let (Some(start), Some(init)) = (&self.loaded.start, record.init.as_mut()) else {
            return Ok(());
        };
        let start = start.get(0);
        let (start_rgb, sw, sh) =
            output::to_rgb8(&start).context("converting the start image to 8 bits")?;
        let start_png = self.prepared.dir.join(&init.start_image);
        let bytes = output::png_bytes(&start_rgb, sw, sh, &[], &start_png)?;
        init.start_image_sha256 = output::sha256_hex(&bytes);
        output::write_atomic(&start_png, &bytes)?;
        let (linf, l2) = output::distances(rgb, &start)?;
        init.linf = linf;
        init.l2 = l2;
        Ok(())
    }

    /// The saved PNG re-read through each model's preprocessing and scored against prompt `i`
    /// and the negatives: the seed's "Final Similarity".
    fn rescore(&self, record: &mut RunRecord, i: usize, png: &Path) -> anyhow::Result<()> {
        let device = self.resolved.device;
        let mut member_final = Vec::new();
        let mut negative_final: Vec<Vec<f64>> = Vec::new();
        for m in &self.loaded.members {
            let features = png_features(&m.model, png, device)?;
            member_final.push(cosines(&features, &m.text.narrow(0, i as i64, 1))?[0]);
            if let Some(negatives) = &m.negatives {
                negative_final.push(cosines(&features, negatives)?);
            }
        }
        record.final_similarity = self.weighted(&member_final);
        for (member, value) in record.ensemble.iter_mut().zip(&member_final) {
            member.final_similarity = *value;
        }
        let negatives = self.spec.negatives.iter().enumerate();
        record.negatives = negatives
            .map(|(k, text)| {
                let initial: Vec<f64> =
                    self.scores.negatives_initial.iter().map(|per| per[i][k]).collect();
                let finals: Vec<f64> = negative_final.iter().map(|per| per[k]).collect();
                NegativeRecord {
                    prompt: text.clone(),
                    initial_similarity: self.weighted(&initial),
                    final_similarity: self.weighted(&finals),
                    final_similarity_by_model: self.by_model(&finals),
                }
            })
            .collect();
        Ok(())
    }
}

/// The seed's `Final Similarity: x` line, with an ensemble's members, the negatives and a photo
/// start's distances.
fn final_line(record: &RunRecord) -> String {
    let mut line = format!("Final Similarity: {:.4}", record.final_similarity);
    if !record.ensemble.is_empty() {
        let parts: Vec<String> = record
            .ensemble
            .iter()
            .map(|m| format!("{} {:.4}", m.model, m.final_similarity))
            .collect();
        line.push_str(&format!(" [{}]", parts.join(", ")));
    }
    for n in &record.negatives {
        line.push_str(&format!(" | not {}: {:.4}", excerpt(&n.prompt), n.final_similarity));
    }
    if let Some(init) = &record.init {
        line.push_str(&format!(
            " | from {:.4}, L∞ {:.1}/255, L2 {:.3}",
            init.start_similarity,
            init.linf * 255.0,
            init.l2
        ));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ensembles_out_of_memory_names_its_models_and_suggests_fewer_prompts() {
        let panic =
            "called `Result::unwrap()` on an `Err` value: Torch(\"CUDA out of memory. Tried \
                     to allocate 2.00 GiB\\nException raised from malloc at …\")";
        let oom = torch_error::out_of_memory(panic).expect("an out-of-memory error");
        let message = ensemble_out_of_memory(6, &["RN50x64", "ViT-L/14@336px"], &oom);
        assert!(message.contains("RN50x64 + ViT-L/14@336px"), "{message}");
        assert!(message.contains("6 prompt(s)") && message.contains("fewer prompts"), "{message}");
        assert!(message.contains("Tried to allocate 2.00 GiB") && !message.contains("Exception"));
    }

    #[test]
    fn ensemble_tokens() {
        assert_eq!(ensemble_token(&["RN50", "ViT-B"]), "ensemble-RN50+ViT-B");
        let models = [
            ModelSource::Released(released::by_name("RN50").unwrap()),
            ModelSource::Released(released::by_name("ViT-B/32").unwrap()),
        ];
        assert_eq!(known_token(&models).as_deref(), Some("ensemble-RN50+ViT-B"));
        let unknown = ModelSource::Weights { path: "/x.pt".into(), expect: None };
        assert_eq!(known_token(&[models[0].clone(), unknown]), None);
    }
}
