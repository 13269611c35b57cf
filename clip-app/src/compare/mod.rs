//! `clip compare`: scores every result of the experiment (and real photos) against its prompt under
//! every CLIP model, and writes the transfer table, three pictures and a Markdown report.
//!
//! The score is the seed's `compare.py` check — the PNG through CLIP's `preprocess`, normalised
//! embeddings, cosine — taken further: each image is scored by every model, not only by the model
//! that made it (does noise that fools RN50 fool ViT-L/14?). Each model is loaded once and scores
//! all images in batches. Discovery (`results.rs`), pictures (`plots.rs`) and the Markdown
//! (`report.rs`) live in their own files.
//!
//! Two kinds of result are more than an image and its prompt. An ensemble run (`model` =
//! `RN50+ViT-B/32`, its members in `ensemble`) is a row of its own in the transfer table; the
//! scoring models that are its members are marked, the others are held out (the transfer
//! question). A run that began from a photo (`init`) has its start image (`<stem>.start.png`)
//! scored too, shown beside the edit, with the edit's distance from it.
//!
//! Robustness (`probes.rs`, `robustness.rs`): each image (results and real photos, not the start
//! images) is also scored after each perturbation of [`CompareOptions::probes`] (JPEG, blur,
//! down/up-scaling, rotation, noise), in the same batched pass as its plain score, under every
//! model; `robustness.csv` and `robustness.png` give the similarities and the fraction of the
//! plain similarity each probe keeps.

pub mod args;
pub mod findings;
mod history;
mod plots;
mod probes;
mod report;
mod results;
mod robustness;
pub mod zeroshot;

pub use history::{Cut, History};
pub use probes::{
    add_noise, blur_kernel_size, down_up, gaussian_blur, jpeg_round_trip, noise_seed,
    rotate_bilinear, Probe, ProbeError, ProbeList, ProbeParseError, DEFAULT_PROBES, MAX_BLUR_SIGMA,
};
pub use results::{
    find_results, find_results_with, Discovery, EnsembleMember, NegativePrompt, PhotoStart,
    RealPhoto, ResultEntry, RunInfo, REAL_PHOTO, START_SUFFIX,
};
pub use robustness::{robustness_csv, Kept, KEPT_MIN_BASELINE, ROBUSTNESS_CSV_HEADER};

use crate::interrupt::Interrupted;
use crate::output::{self, OutputError};
use clip_core::clip::model::{LoadedClip, Precision};
use clip_core::clip::preprocess;
use clip_core::clip::released::ReleasedModel;
use clip_core::clip::score;
use clip_core::clip::tokenizer::Tokenizer;
use clip_core::clip::weights::download;
use clip_core::clip::zeroshot::{self as zs, ClassWeights, Labels, Prediction, Templates};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use tch::{Device, Tensor};
pub use zeroshot::{zeroshot_csv, ZeroShotChoice, ZEROSHOT_CSV_HEADER};

/// The files `clip compare` writes into the results directory (and skips when it reads it).
pub const OUTPUT_FILES: [&str; 8] = [
    "transfer.csv",
    "zeroshot.csv",
    "transfer.png",
    "contact_sheet.png",
    "curves.png",
    "robustness.csv",
    "robustness.png",
    "report.md",
];

/// The seed's models, scored when neither `--models` nor `--weights` names any.
pub const DEFAULT_MODELS: [ReleasedModel; 3] = clip_core::clip::released::SEED_MODELS;

#[derive(Debug, thiserror::Error)]
pub enum CompareError {
    #[error("{path} is not a directory")]
    NotADirectory { path: PathBuf },
    #[error("reading {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("nothing to score in {dir}: no result (PNG with its JSON) and no --real photo{notes}")]
    NothingToScore { dir: PathBuf, notes: String },
    #[error("no scoring model could be loaded:{reasons}")]
    NoModels { reasons: String },
    #[error("drawing {path}: {message}")]
    Plot { path: PathBuf, message: String },
    #[error("the embedded font could not be read by ab_glyph")]
    Font,
    #[error(transparent)]
    Output(#[from] OutputError),
    #[error(transparent)]
    Tokenize(#[from] clip_core::clip::tokenizer::TokenizeError),
    #[error("--zero-shot: {0}")]
    ZeroShot(#[from] zs::ZeroShotError),
    /// [`CompareOptions::stop`] asked to stop; nothing was written (the outputs are written only
    /// once all are drawn). The binary turns it into [`Interrupted`], exit status 130.
    #[error(transparent)]
    Interrupted(#[from] Interrupted),
}

/// The stop of a run that `stop` interrupted.
fn interrupted(during: &str) -> CompareError {
    CompareError::Interrupted(Interrupted { during: during.to_string() })
}

/// What to compare and how.
#[derive(Debug, Clone)]
pub struct CompareOptions {
    pub results_dir: PathBuf,
    /// Scoring models by name, in column order.
    pub models: Vec<String>,
    /// Checkpoints by model name; a name not here is resolved as a released model (cache or
    /// download).
    pub weights: BTreeMap<String, PathBuf>,
    pub real: Vec<RealPhoto>,
    pub device: Device,
    /// Images per forward pass; also the images preprocessed and held at a time.
    pub batch_size: usize,
    /// Side of an image in the contact sheet, in pixels.
    pub cell_size: u32,
    /// The robustness probes, in column order (empty: none; `robustness.csv` is then only its
    /// header). Default: [`DEFAULT_PROBES`].
    pub probes: Vec<Probe>,
    /// Zero-shot verdicts (`zeroshot.csv`): by default ImageNet for the models whose class
    /// weights are cached, or on CUDA ([`ZeroShotChoice`]).
    pub zero_shot: ZeroShotChoice,
    /// Asked between files, images, batches and pictures whether to give up
    /// ([`CompareError::Interrupted`]); the binary passes `interrupt::requested` (Ctrl-C).
    pub stop: fn() -> bool,
}

impl Default for CompareOptions {
    /// The results in `results`, the seed's models, batches of 16, cells of 160 pixels, the
    /// default probes, on the CPU, never stopping.
    fn default() -> Self {
        Self {
            results_dir: PathBuf::from("results"),
            models: DEFAULT_MODELS.iter().map(|m| m.name.to_string()).collect(),
            weights: BTreeMap::new(),
            real: Vec::new(),
            device: Device::Cpu,
            batch_size: 16,
            cell_size: 160,
            probes: ProbeList::default().0,
            zero_shot: ZeroShotChoice::Auto,
            stop: || false,
        }
    }
}

/// One scoring model: loaded, or why not.
#[derive(Debug, Clone)]
pub struct ScoringModel {
    pub name: String,
    pub weights: Option<PathBuf>,
    /// Why the model could not score (no weights, failed to load); `None` when it scored.
    pub unavailable: Option<String>,
}

/// Where a scored image came from: a run (the model that made it, as its record names it, and
/// its mode: `constrained`, `unconstrained`, a `--name`) or a real photo given with `--real`. The
/// rows of the transfer table and the columns of the contact sheet are keyed by it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Origin {
    Run { model: String, mode: String },
    RealPhoto,
}

impl Origin {
    /// The CSVs' `generated_by`: the run's model, or [`REAL_PHOTO`].
    pub fn model(&self) -> &str {
        match self {
            Origin::Run { model, .. } => model,
            Origin::RealPhoto => REAL_PHOTO,
        }
    }

    /// The CSVs' `mode`: the run's, or `real`.
    pub fn mode(&self) -> &str {
        match self {
            Origin::Run { mode, .. } => mode,
            Origin::RealPhoto => "real",
        }
    }

    pub fn is_real(&self) -> bool {
        matches!(self, Origin::RealPhoto)
    }
}

/// A row's label in the report and the plots: `model · mode`, or `real photo`.
impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::Run { model, mode } => write!(f, "{model} · {mode}"),
            Origin::RealPhoto => f.write_str(REAL_PHOTO),
        }
    }
}

/// An image that was scored: a result of the experiment or a real photo.
#[derive(Debug, Clone)]
pub struct Scored {
    pub image: PathBuf,
    pub prompt: String,
    /// Where it came from: a run (its model and mode, as recorded) or a real photo.
    pub origin: Origin,
    /// The run's record (`None` for real photos).
    pub run: Option<RunInfo>,
    /// The step history CSV next to the result, if any.
    pub history: Option<PathBuf>,
    /// That history as `curves.png` draws it (read once the scores are in; `None` without a CSV
    /// or when it cannot be read).
    pub curve: Option<History>,
    /// Similarity per scoring model (only models that scored, only finite values).
    pub scores: BTreeMap<String, f64>,
    /// The start image of a run that began from a photo, when it is there (see [`START_SUFFIX`]).
    pub start: Option<PathBuf>,
    /// The start image's similarity to the prompt per scoring model, as `scores`.
    pub start_scores: BTreeMap<String, f64>,
    /// The similarity after each probe, by (scoring model, probe as named, e.g. `blur:1`): only
    /// finite values, only probes that could be applied (`rotate`: the mean of its two). See
    /// [`Scored::kept`] for the fraction of `scores` it keeps.
    pub probes: BTreeMap<(String, String), f64>,
    /// The top-5 zero-shot classes per scoring model that gave verdicts, most probable first.
    pub zeroshot: BTreeMap<String, Vec<Prediction>>,
}

impl Scored {
    /// A result of the experiment, not scored yet.
    fn result(r: ResultEntry) -> Self {
        Scored {
            image: r.png,
            prompt: r.run.prompt.clone(),
            origin: Origin::Run { model: r.run.model.clone(), mode: r.run.mode.clone() },
            history: r.csv,
            curve: None,
            run: Some(r.run),
            scores: BTreeMap::new(),
            start: r.start,
            start_scores: BTreeMap::new(),
            probes: BTreeMap::new(),
            zeroshot: BTreeMap::new(),
        }
    }

    /// A real photo given with `--real`, not scored yet.
    fn real(photo: &RealPhoto) -> Self {
        Scored {
            image: photo.path.clone(),
            prompt: photo.prompt.clone(),
            origin: Origin::RealPhoto,
            run: None,
            history: None,
            curve: None,
            scores: BTreeMap::new(),
            start: None,
            start_scores: BTreeMap::new(),
            probes: BTreeMap::new(),
            zeroshot: BTreeMap::new(),
        }
    }

    /// The model whose run made the image (the JSON's `model`), or [`REAL_PHOTO`].
    pub fn generated_by(&self) -> &str {
        self.origin.model()
    }

    /// `constrained`, `unconstrained` (or the run's name), or `real`.
    pub fn mode(&self) -> &str {
        self.origin.mode()
    }

    /// The score under the model(s) that made the image, and whether it was measured here.
    ///
    /// A single model's result: its score under that model, or the run's recorded
    /// `final_similarity` (the same measure) when that model did not score here. An ensemble's:
    /// the weighted mean of its members' scores (with the record's weights; equal weights when
    /// any is missing or they sum to 0) when every member scored here — what the run maximised —
    /// else the recorded `final_similarity`, which is that mean as the run measured it.
    pub fn own_score(&self) -> Option<(f64, bool)> {
        let recorded = || self.run.as_ref().and_then(|r| r.final_similarity).map(|s| (s, false));
        let Some(members) = self.members() else {
            if let Some(s) = self.scores.get(self.generated_by()) {
                return Some((*s, true));
            }
            return recorded();
        };
        let scores: Option<Vec<f64>> = members
            .iter()
            .map(|m| self.scores.iter().find(|(name, _)| m.is(name)).map(|(_, s)| *s))
            .collect();
        let Some(scores) = scores else { return recorded() };
        let weights = ensemble_weights(members);
        let total: f64 = weights.iter().sum();
        Some((scores.iter().zip(&weights).map(|(s, w)| s * w).sum::<f64>() / total, true))
    }

    /// The members of the ensemble that made the image; `None` for a single model's result or a
    /// real photo.
    pub fn members(&self) -> Option<&[EnsembleMember]> {
        self.run.as_ref().and_then(|r| r.ensemble.as_deref())
    }

    /// Whether the image was optimised against the scoring model `name`: a member of its
    /// ensemble, or the single model that made it. The other scoring models are held out.
    pub fn optimised_against(&self, name: &str) -> bool {
        match self.members() {
            Some(members) => members.iter().any(|m| m.is(name)),
            None => self.run.is_some() && self.generated_by() == name,
        }
    }

    /// The record's `init`: the photo the run started from.
    pub fn photo_start(&self) -> Option<&PhotoStart> {
        self.run.as_ref().and_then(|r| r.init.as_ref())
    }
}

/// The members' weights as the ensemble's mean uses them: the record's, or all 1 when any is
/// missing or they sum to 0.
pub fn ensemble_weights(members: &[EnsembleMember]) -> Vec<f64> {
    let given: Option<Vec<f64>> = members.iter().map(|m| m.weight).collect();
    match given {
        Some(w) if w.iter().sum::<f64>() > 0.0 && w.iter().sum::<f64>().is_finite() => w,
        _ => vec![1.0; members.len()],
    }
}

/// Everything `clip compare` found and computed.
#[derive(Debug, Clone)]
pub struct Comparison {
    pub results_dir: PathBuf,
    pub models: Vec<ScoringModel>,
    pub images: Vec<Scored>,
    /// The probes each image was scored after (`robustness.csv`'s probes, in column order).
    pub probes: Vec<Probe>,
    /// The zero-shot classes, when any model gave verdicts.
    pub zero_shot_labels: Option<Labels>,
    /// Per scoring model without zero-shot verdicts (when they were asked for or would be by
    /// default): why not.
    pub zero_shot_skipped: Vec<(String, String)>,
    /// Everything the user should know about: skipped files, models left out.
    pub warnings: Vec<String>,
    /// Files ignored without harm (shown in the report, not as warnings).
    pub notes: Vec<String>,
    pub written: Vec<PathBuf>,
}

impl Comparison {
    /// The models that scored, in column order.
    pub fn scoring_models(&self) -> impl Iterator<Item = &ScoringModel> {
        self.models.iter().filter(|m| m.unavailable.is_none())
    }

    /// Rows of the transfer table: (generating model, mode) in first-seen order, real photos last.
    pub fn groups(&self) -> Vec<Origin> {
        let mut seen = HashSet::new();
        let mut groups: Vec<Origin> = Vec::new();
        for s in self.images.iter().filter(|s| !s.origin.is_real()) {
            if seen.insert(&s.origin) {
                groups.push(s.origin.clone());
            }
        }
        let ensembles: HashSet<&str> = self
            .images
            .iter()
            .filter(|s| s.members().is_some())
            .map(|s| s.generated_by())
            .collect();
        let rank = |name: &str| model_rank(name, ensembles.contains(name));
        groups.sort_by_key(|g| (rank(g.model()), g.clone()));
        if self.images.iter().any(|s| s.origin.is_real()) {
            groups.push(Origin::RealPhoto);
        }
        groups
    }

    /// Whether a row of the transfer table is an ensemble's (its model's name is that of an
    /// ensemble, as recorded).
    pub fn is_ensemble(&self, group: &Origin) -> bool {
        self.group_images(group).any(|s| s.members().is_some())
    }

    /// Whether the images of a row were optimised against the scoring model `model` (a member of
    /// the row's ensemble, or its single model).
    pub fn optimised_against(&self, group: &Origin, model: &str) -> bool {
        self.group_images(group).any(|s| s.optimised_against(model))
    }

    fn group_images<'a>(&'a self, group: &'a Origin) -> impl Iterator<Item = &'a Scored> {
        self.images.iter().filter(move |s| s.origin == *group)
    }

    /// The mean similarity of a group's images under `model`, and how many images it averages.
    pub fn mean(&self, group: &Origin, model: &str) -> Option<(f64, usize)> {
        let values: Vec<f64> = self
            .images
            .iter()
            .filter(|s| s.origin == *group)
            .filter_map(|s| s.scores.get(model).copied())
            .collect();
        (!values.is_empty())
            .then(|| (values.iter().sum::<f64>() / values.len() as f64, values.len()))
    }

    /// Distinct prompts, in first-seen order (results first, then real photos).
    pub fn prompts(&self) -> Vec<String> {
        distinct_prompts(&self.images)
    }
}

fn distinct_prompts(images: &[Scored]) -> Vec<String> {
    let mut seen = HashSet::new();
    images.iter().filter(|s| seen.insert(s.prompt.as_str())).map(|s| s.prompt.clone()).collect()
}

/// The seed's models first, in their order, then anything else alphabetically, ensembles last.
fn model_rank(name: &str, ensemble: bool) -> usize {
    match DEFAULT_MODELS.iter().position(|m| m.name == name) {
        Some(rank) if !ensemble => rank,
        _ => DEFAULT_MODELS.len() + ensemble as usize,
    }
}

/// Prints a warning to stderr and keeps it for the report.
fn warn(warnings: &mut Vec<String>, message: String) {
    eprintln!("warning: {message}");
    warnings.push(message);
}

/// Finds the results, scores them under every model (as they are and after each probe), and
/// writes the seven output files. Warnings
/// (skipped files, unavailable models, unreadable images) are printed, kept in the report, and do
/// not stop it; it fails only when nothing at all could be scored, an output cannot be written,
/// or `options.stop` asks it to (then nothing is written).
pub fn run(options: &CompareOptions) -> Result<Comparison, CompareError> {
    let dir = &options.results_dir;
    if !dir.is_dir() {
        return Err(CompareError::NotADirectory { path: dir.clone() });
    }
    // Before any model is loaded: a directory the report cannot be written to is known at once.
    output::ensure_writable_dir(dir)?;
    let stop = options.stop;
    let Discovery { results, mut warnings, notes } = find_results_with(dir, &stop)?;
    let mut images: Vec<Scored> = results.into_iter().map(Scored::result).collect();
    for photo in &options.real {
        if photo.path.is_file() {
            images.push(Scored::real(photo));
        } else {
            warn(&mut warnings, format!("--real {}: no such file; left out", photo.path.display()));
        }
    }
    if images.is_empty() {
        let notes: String = warnings.iter().map(|w| format!("\n  {w}")).collect();
        return Err(CompareError::NothingToScore { dir: dir.clone(), notes });
    }

    if let Some(note) = blur_note(options, &images) {
        eprintln!("note: {note}");
    }
    let prompts = distinct_prompts(&images);
    let tokenizer = Tokenizer::new()?;
    // A prompt too long for CLIP is scored truncated, with a warning, rather than dropped.
    let tokens = match tokenizer.tokenize(&prompts, false) {
        Ok(t) => t,
        Err(err) => {
            warn(&mut warnings, format!("{err}; such prompts are scored truncated to 77 tokens"));
            tokenizer.tokenize(&prompts, true)?
        }
    };

    let mut zero = ZeroShotState::new(&options.zero_shot)?;
    let input = ModelsInput { options, tokens: &tokens, prompts: &prompts, tokenizer: &tokenizer };
    let models = score_models(&input, &mut zero, &mut images, &mut warnings)?;
    // Images no model could read (warned about in `score_with`) are left out of everything.
    images.retain(|s| !s.scores.is_empty());
    if images.is_empty() {
        let notes: String = warnings.iter().map(|w| format!("\n  {w}")).collect();
        return Err(CompareError::NothingToScore { dir: dir.clone(), notes });
    }
    for s in &mut images {
        if stop() {
            return Err(interrupted("while reading the step histories"));
        }
        s.curve = s.history.as_deref().and_then(history::read);
    }

    let mut comparison = Comparison {
        results_dir: dir.clone(),
        models,
        images,
        probes: options.probes.clone(),
        zero_shot_labels: zero.labels.filter(|_| !zero.given_by.is_empty()),
        zero_shot_skipped: zero.skipped,
        warnings,
        notes,
        written: Vec::new(),
    };
    write_outputs(&mut comparison, options.cell_size, stop)?;
    Ok(comparison)
}

/// A note when the blur probes will be slow on these images ([`probes::blur_cost_note`]): their
/// sizes read from the files' headers, this CPU's rate measured on a small image.
fn blur_note(options: &CompareOptions, images: &[Scored]) -> Option<String> {
    if !options.probes.iter().any(|p| matches!(p, Probe::Blur { .. })) {
        return None;
    }
    let pixels: Vec<u64> = images
        .iter()
        .filter_map(|s| image::image_dimensions(&s.image).ok())
        .map(|(w, h)| w as u64 * h as u64)
        .collect();
    let rate = probes::blur_rate().ok()?;
    probes::blur_cost_note(&options.probes, &pixels, options.models.len(), rate)
}

/// What every scoring model scores with, besides its weights.
struct ModelsInput<'a> {
    options: &'a CompareOptions,
    tokens: &'a Tensor,
    prompts: &'a [String],
    tokenizer: &'a Tokenizer,
}

/// The weights of the scoring model `name`: as given with `--weights`, or a released model's
/// (downloaded if needed). `Err`: why the model cannot score.
fn scoring_weights(name: &str, options: &CompareOptions) -> Result<PathBuf, String> {
    match options.weights.get(name) {
        Some(path) => Ok(path.clone()),
        None if clip_core::clip::released::MODEL_NAMES.contains(&name) => {
            crate::fetch::resolve_model(name, &options.stop).map_err(|e| {
                format!("no --weights {name}=PATH and the released weights are not available: {e}")
            })
        }
        None => Err(format!(
            "no --weights {name}=PATH given, and {name} is not a released model ({})",
            clip_core::clip::released::MODEL_NAMES.join(", ")
        )),
    }
}

/// Scores every image under each scoring model in turn; a model that cannot score is warned
/// about and left out. `Err`: a stop, or no model could score.
fn score_models(
    input: &ModelsInput,
    zero: &mut ZeroShotState,
    images: &mut [Scored],
    warnings: &mut Vec<String>,
) -> Result<Vec<ScoringModel>, CompareError> {
    let ModelsInput { options, tokens, prompts, tokenizer } = *input;
    let stop = options.stop;
    let mut unreadable = HashSet::new();
    let mut models = Vec::new();
    for name in &options.models {
        if stop() {
            return Err(interrupted("while scoring"));
        }
        let weights = scoring_weights(name, options);
        let mut model =
            ScoringModel { name: name.clone(), weights: weights.clone().ok(), unavailable: None };
        let outcome = weights.and_then(|path| {
            let starts = images.iter().filter(|s| s.start.is_some()).count();
            let starts = match starts {
                0 => String::new(),
                n => format!(" and {n} start image(s)"),
            };
            let probes = match options.probes.len() {
                0 => String::new(),
                n => format!(", each also after {n} probe(s),"),
            };
            eprintln!(
                "scoring {} image(s){starts}{probes} with {name} ({})",
                images.len(),
                path.display()
            );
            let with = ScoringInput { options, tokens, prompts, name, tokenizer };
            score_with(&path, &with, zero, images, warnings, &mut unreadable)
        });
        // A download or load that Ctrl-C cut short is a stop, not a model left out.
        if stop() {
            return Err(interrupted("while scoring"));
        }
        if let Err(reason) = outcome {
            warn(warnings, format!("model {name} left out of the comparison: {reason}"));
            model.unavailable = Some(reason);
        }
        models.push(model);
    }
    if models.iter().all(|m| m.unavailable.is_some()) {
        let reasons = models
            .iter()
            .map(|m| format!("\n  {}: {}", m.name, m.unavailable.as_deref().unwrap_or("")))
            .collect();
        return Err(CompareError::NoModels { reasons });
    }
    Ok(models)
}

/// What one model scores with, besides its weights.
struct ScoringInput<'a> {
    options: &'a CompareOptions,
    tokens: &'a Tensor,
    prompts: &'a [String],
    name: &'a str,
    tokenizer: &'a Tokenizer,
}

/// The zero-shot side of a comparison: the labels (when asked for or by default), which models
/// gave verdicts and which did not (and why).
struct ZeroShotState {
    labels: Option<Labels>,
    /// `true`: compute class weights that are not cached (an explicit `--zero-shot`).
    forced: bool,
    given_by: Vec<String>,
    skipped: Vec<(String, String)>,
}

impl ZeroShotState {
    /// `--zero-shot`'s labels (a file read now), before any model gives verdicts.
    fn new(choice: &ZeroShotChoice) -> Result<Self, CompareError> {
        let (labels, forced) = match choice {
            ZeroShotChoice::Off => (None, false),
            ZeroShotChoice::Auto => (Some(Labels::imagenet()), false),
            ZeroShotChoice::Labels(spec) => (Some(Labels::from_spec(spec)?), true),
        };
        Ok(Self { labels, forced, given_by: Vec::new(), skipped: Vec::new() })
    }
}

/// What one row of a forward pass scores.
#[derive(Debug, Clone, Copy)]
enum Target {
    /// Image `.0` as it is (`.1`: its start image instead).
    Plain(usize, bool),
    /// A view of probe `probe` (an index into [`CompareOptions::probes`]) on image `image`.
    Probe { image: usize, probe: usize },
}

/// The preprocessed images waiting for a forward pass, with what each one scores.
#[derive(Default)]
struct Pending {
    targets: Vec<Target>,
    pixels: Vec<Tensor>,
}

impl Pending {
    fn push(&mut self, target: Target, pixels: Tensor) {
        self.targets.push(target);
        self.pixels.push(pixels);
    }
}

/// Loads one model and scores every image with it — as it is and after each probe — in forward
/// passes of at most `batch_size` images: each image is read, perturbed and preprocessed in turn
/// and queued, and a pass runs whenever `batch_size` are queued, so only about one batch (plus
/// one image's probe views) is held at a time. An image that cannot be read (or scores NaN) is
/// warned about once and left without this model's score; a probe that cannot be applied to an
/// image is warned about once and left out for that image. `Err`: the model cannot score at all
/// (or `stop`).
fn score_with(
    weights: &Path,
    input: &ScoringInput,
    zero: &mut ZeroShotState,
    images: &mut [Scored],
    warnings: &mut Vec<String>,
    unreadable: &mut HashSet<String>,
) -> Result<(), String> {
    let ScoringInput { options, tokens, prompts, name, .. } = *input;
    let (device, stop) = (options.device, options.stop);
    let loaded = LoadedClip::load_with(weights, device, Precision::for_device(device), &stop)
        .map_err(|e| format!("loading {}: {e}", weights.display()))?;
    let model = &loaded.model;
    let classes = model_classes(&loaded, weights, input, zero, warnings)?;
    let text = score::text_features(model, tokens, device);
    let row_of: HashMap<&str, i64> =
        prompts.iter().enumerate().map(|(i, p)| (p.as_str(), i as i64)).collect();
    // Each image, then the start images of the photo starts: (index, is the start image).
    let all: Vec<(usize, bool)> = (0..images.len())
        .map(|i| (i, false))
        .chain((0..images.len()).filter(|&i| images[i].start.is_some()).map(|i| (i, true)))
        .collect();
    let batch_size = options.batch_size.max(1);
    let scorer =
        Scorer { model, text: &text, row_of: &row_of, device, name, classes: classes.as_ref() };
    let mut pending = Pending::default();
    // The similarities of each (image, probe)'s views, averaged once all are in.
    let mut views: BTreeMap<(usize, usize), Vec<f64>> = BTreeMap::new();
    for job in all {
        if stop() {
            return Err("interrupted".to_string());
        }
        let mut noted = |message: String| {
            if unreadable.insert(message.clone()) {
                warn(warnings, message);
            }
        };
        queue_image(model, options, images, job, &mut pending, &mut noted)?;
        while pending.targets.len() >= batch_size {
            let rest = Pending {
                targets: pending.targets.split_off(batch_size),
                pixels: pending.pixels.split_off(batch_size),
            };
            let batch = std::mem::replace(&mut pending, rest);
            scorer.score(batch, images, &mut views, warnings)?;
        }
    }
    if !pending.targets.is_empty() {
        scorer.score(pending, images, &mut views, warnings)?;
    }
    keep_probe_means(views, &options.probes, name, images, warnings);
    Ok(())
}

/// The zero-shot classifier of a loaded scoring model, when verdicts are asked for and it can
/// give them (else why not is noted, and it gives none). `Err`: a stop.
fn model_classes(
    loaded: &LoadedClip,
    weights: &Path,
    input: &ScoringInput,
    zero: &mut ZeroShotState,
    warnings: &mut Vec<String>,
) -> Result<Option<ClassWeights>, String> {
    let ScoringInput { options, name, tokenizer, .. } = *input;
    let Some(labels) = &zero.labels else { return Ok(None) };
    match zero_shot_classes(loaded, weights, labels, zero.forced, tokenizer, options) {
        Ok((classes, notes)) => {
            for note in notes {
                warn(warnings, note);
            }
            zero.given_by.push(name.to_string());
            Ok(Some(classes))
        }
        Err(reason) => {
            if (options.stop)() {
                return Err("interrupted".to_string());
            }
            eprintln!("note: no zero-shot verdicts from {name}: {reason}");
            zero.skipped.push((name.to_string(), reason));
            Ok(None)
        }
    }
}

/// Image `job` (`.1`: its start image) read, preprocessed and queued — with, for a result or a
/// real photo, a view per probe. An image that cannot be read is `noted` and skipped; a probe
/// that cannot be applied is `noted` and left out for that image. `Err`: a stop.
fn queue_image(
    model: &clip_core::clip::model::Clip,
    options: &CompareOptions,
    images: &[Scored],
    job: (usize, bool),
    pending: &mut Pending,
    noted: &mut dyn FnMut(String),
) -> Result<(), String> {
    let (i, start) = job;
    let path = match (start, &images[i].start) {
        (true, Some(path)) => path.clone(),
        _ => images[i].image.clone(),
    };
    match score::file_pixels(model, &path) {
        Ok(p) => pending.push(Target::Plain(i, start), p),
        Err(e) if start => {
            let image = images[i].image.file_name().unwrap_or_default().to_string_lossy();
            noted(format!(
                "{e}; the start image of {image} is not scored, and shown as a placeholder"
            ));
            return Ok(());
        }
        Err(e) => {
            noted(format!("{e}; not scored"));
            return Ok(());
        }
    }
    if start || options.probes.is_empty() {
        return Ok(());
    }
    let img = match preprocess::load_rgb(&path) {
        Ok(img) => img,
        Err(e) => {
            noted(format!("{e}; the probes are not applied to it"));
            return Ok(());
        }
    };
    let resolution = model.config.image_resolution as u32;
    for (k, probe) in options.probes.iter().enumerate() {
        if (options.stop)() {
            return Err("interrupted".to_string());
        }
        for view in 0..probe.views() {
            match probe.apply(&img, view) {
                Ok(perturbed) => {
                    let p = preprocess::preprocess_image(&perturbed, resolution);
                    pending.push(Target::Probe { image: i, probe: k }, p);
                }
                Err(e) => {
                    noted(format!(
                        "{}: probe {probe} not applied: {e}; left out of robustness.csv for \
                         this image",
                        path.display()
                    ));
                    break;
                }
            }
        }
    }
    Ok(())
}

/// Each (image, probe)'s views averaged into the image's probe scores under `name`: only probes
/// whose every view scored, only finite means (a non-finite one is warned about).
fn keep_probe_means(
    views: BTreeMap<(usize, usize), Vec<f64>>,
    probes: &[Probe],
    name: &str,
    images: &mut [Scored],
    warnings: &mut Vec<String>,
) {
    for ((i, k), sims) in views {
        let probe = probes[k];
        if sims.len() != probe.views() {
            continue;
        }
        let mean = sims.iter().sum::<f64>() / sims.len() as f64;
        if mean.is_finite() {
            images[i].probes.insert((name.to_string(), probe.to_string()), mean);
        } else {
            warn(
                warnings,
                format!(
                    "{} scored {mean} under {name} after probe {probe} (not a finite number); \
                     left out of robustness.csv",
                    images[i].image.display()
                ),
            );
        }
    }
}

/// The zero-shot class weights of `labels` under a loaded model, with any cache warnings: from the
/// cache, or — when `forced` (an explicit `--zero-shot`) or on CUDA — computed (with a progress
/// bar) and cached. `Err`: why this model gives no verdicts.
fn zero_shot_classes(
    loaded: &LoadedClip,
    weights: &Path,
    labels: &Labels,
    forced: bool,
    tokenizer: &Tokenizer,
    options: &CompareOptions,
) -> Result<(ClassWeights, Vec<String>), String> {
    let stop = options.stop;
    let model = &loaded.model;
    let templates = Templates::openai();
    let only_if_cached = !forced && !options.device.is_cuda();
    let not_cached = || {
        Err(format!(
            "its {} class weights are not cached and the device is not CUDA: `--zero-shot {}` \
             computes them ({} texts; minutes on a CPU) and caches them",
            labels.source,
            labels.source,
            labels.len() * templates.len()
        ))
    };
    let cache = zs::default_cache_dir();
    // The checkpoint's hash is the costly part of the key (seconds for a large file): taken only
    // when a cache file for these labels, templates and precision is there at all.
    let suffix = zs::CacheKey::new("", model, labels, &templates).file_name();
    let any_cached =
        cache.as_ref().ok().and_then(|d| std::fs::read_dir(d).ok()).is_some_and(|entries| {
            entries.flatten().any(|e| e.file_name().to_string_lossy().ends_with(&suffix))
        });
    if only_if_cached && !any_cached {
        return not_cached();
    }
    let sha256 = download::sha256_file_with(weights, &stop)
        .map_err(|e| format!("hashing {}: {e}", weights.display()))?;
    if only_if_cached {
        let key = zs::CacheKey::new(&sha256, model, labels, &templates);
        if !cache.as_ref().is_ok_and(|d| d.join(key.file_name()).is_file()) {
            return not_cached();
        }
    }
    let bar = crate::classify::progress_bar(labels.len() * templates.len());
    let outcome = zs::class_weights(
        model,
        &sha256,
        tokenizer,
        labels,
        &templates,
        &zs::ZeroShotOptions::default(),
        &mut |done, _| bar.set_position(done as u64),
        &stop,
    );
    bar.finish_and_clear();
    let outcome = outcome.map_err(|e| e.to_string())?;
    Ok((outcome.weights, outcome.warnings))
}

/// One loaded model's forward passes.
struct Scorer<'a> {
    model: &'a clip_core::clip::model::Clip,
    /// The prompts' text features.
    text: &'a Tensor,
    row_of: &'a HashMap<&'a str, i64>,
    device: Device,
    name: &'a str,
    /// The zero-shot classifier, when this model gives verdicts.
    classes: Option<&'a ClassWeights>,
}

impl Scorer<'_> {
    /// One forward pass over `batch`: plain similarities go to the images' `scores` (or
    /// `start_scores`), probe views' into `views`.
    fn score(
        &self,
        batch: Pending,
        images: &mut [Scored],
        views: &mut BTreeMap<(usize, usize), Vec<f64>>,
        warnings: &mut Vec<String>,
    ) -> Result<(), String> {
        let Pending { targets, pixels } = batch;
        let (device, name) = (self.device, self.name);
        let pixels = Tensor::stack(&pixels, 0);
        let prompt_rows: Vec<i64> = targets
            .iter()
            .map(|t| match *t {
                Target::Plain(i, _) | Target::Probe { image: i, .. } => i,
            })
            .map(|i| self.row_of.get(images[i].prompt.as_str()).copied().unwrap_or(0))
            .collect();
        let features = score::image_features(self.model, &pixels, device);
        let rows = Tensor::from_slice(&prompt_rows).to_device(device);
        let sims = score::paired(&features, &self.text.index_select(0, &rows))
            .map_err(|e| format!("reading scores back: {e}"))?;
        if let Some(classes) = self.classes {
            // The results and real photos as they are (not their probes or start images).
            let plain: Vec<(usize, usize)> = targets
                .iter()
                .enumerate()
                .filter_map(|(row, t)| match *t {
                    Target::Plain(i, false) => Some((row, i)),
                    _ => None,
                })
                .collect();
            if !plain.is_empty() {
                let rows: Vec<i64> = plain.iter().map(|(row, _)| *row as i64).collect();
                let rows = Tensor::from_slice(&rows).to_device(device);
                let top = tch::no_grad(|| {
                    classes.top_k(&features.index_select(0, &rows), zeroshot::TOP_K)
                })
                .map_err(|e| format!("zero-shot classification: {e}"))?;
                for ((_, i), top) in plain.iter().zip(top) {
                    if top.iter().all(|p| p.probability.is_finite()) {
                        images[*i].zeroshot.insert(name.to_string(), top);
                    }
                }
            }
        }
        for (target, sim) in targets.into_iter().zip(sims) {
            let (i, start) = match target {
                Target::Probe { image, probe } => {
                    // Non-finite values are caught once the views are averaged.
                    views.entry((image, probe)).or_default().push(sim);
                    continue;
                }
                Target::Plain(i, start) => (i, start),
            };
            let scores = if start { &mut images[i].start_scores } else { &mut images[i].scores };
            if sim.is_finite() {
                scores.insert(name.to_string(), sim);
            } else {
                // fp16 overflow or broken weights: a NaN must not reach a mean or a picture.
                let path = match (start, &images[i].start) {
                    (true, Some(path)) => path.clone(),
                    _ => images[i].image.clone(),
                };
                warn(
                    warnings,
                    format!(
                        "{} scored {sim} under {name} (not a finite number); left out of {name}'s column",
                        path.display()
                    ),
                );
            }
        }
        Ok(())
    }
}

/// `transfer.csv`, `robustness.csv`, the four pictures and `report.md`. All seven are made in
/// memory first (asking `stop` between them), then each is written atomically: an interrupted run
/// writes nothing, and a failed drawing leaves the earlier report whole.
fn write_outputs(
    comparison: &mut Comparison,
    cell_size: u32,
    stop: fn() -> bool,
) -> Result<(), CompareError> {
    let dir = comparison.results_dir.clone();
    let mut outputs: Vec<(PathBuf, Vec<u8>)> = Vec::new();
    outputs.push((dir.join("transfer.csv"), transfer_csv(comparison).into_bytes()));
    outputs.push((dir.join("robustness.csv"), robustness_csv(comparison).into_bytes()));
    outputs.push((dir.join("zeroshot.csv"), zeroshot_csv(comparison).into_bytes()));
    plots::install_font()?;
    type Draw = fn(&Comparison, &Path, u32) -> Result<Vec<u8>, CompareError>;
    let pictures: [(&str, Draw); 4] = [
        ("transfer.png", plots::transfer_png),
        ("contact_sheet.png", plots::contact_sheet_png),
        ("curves.png", plots::curves_png),
        ("robustness.png", plots::robustness_png),
    ];
    for (name, draw) in pictures {
        if stop() {
            return Err(interrupted("while drawing the report"));
        }
        let path = dir.join(name);
        let bytes = draw(comparison, &path, cell_size)?;
        outputs.push((path, bytes));
    }
    outputs.push((dir.join("report.md"), report::markdown(comparison).into_bytes()));
    if stop() {
        return Err(interrupted("while drawing the report"));
    }
    for (path, bytes) in outputs {
        output::write_atomic(&path, &bytes)?;
        comparison.written.push(path);
    }
    Ok(())
}

/// The header of `transfer.csv`: the first six columns as ever, the others added at the end.
pub const TRANSFER_CSV_HEADER: &str =
    "image,prompt,generated_by,mode,scored_by,similarity,optimised_against,start_similarity,epsilon,linf,l2";

/// One row per image × scoring model ([`TRANSFER_CSV_HEADER`]), the image path relative to the
/// results directory where it lies inside it. `optimised_against`: `true` when the scoring model
/// is the one that made the image or a member of its ensemble, `false` when it is held out (and
/// for real photos). `start_similarity`: the start image's similarity under the scoring model,
/// for a run that began from a photo; `epsilon` (the budget), `linf` and `l2` (the result's
/// distance from its start) are the record's, in [0, 1] pixel units. Empty when there is none.
pub fn transfer_csv(comparison: &Comparison) -> String {
    let mut text = format!("{TRANSFER_CSV_HEADER}\n");
    let number = |v: Option<f64>| v.map_or(String::new(), |v| v.to_string());
    for s in &comparison.images {
        let init = s.photo_start();
        let distances = [init.and_then(|i| i.epsilon), init.and_then(|i| i.linf)];
        let distances = [distances[0], distances[1], init.and_then(|i| i.l2)].map(number);
        for m in comparison.scoring_models() {
            if let Some(sim) = s.scores.get(&m.name) {
                let image = relative(&comparison.results_dir, &s.image);
                let fields = [image.as_str(), &s.prompt, s.generated_by(), s.mode(), &m.name];
                let fields: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
                let start = number(s.start_scores.get(&m.name).copied());
                text.push_str(&format!(
                    "{},{sim},{},{start},{}\n",
                    fields.join(","),
                    s.optimised_against(&m.name),
                    distances.join(",")
                ));
            }
        }
    }
    text
}

/// A text cell of a CSV that `compare` writes. RFC 4180 quoting: fields with commas, quotes or
/// line breaks are quoted, quotes doubled. And CSV injection: a spreadsheet opening the file runs
/// a cell that begins with `=`, `+`, `-` or `@` (or a tab or carriage return before one) as a
/// formula, and prompts, file names and model names are user text; as OWASP advises, such a cell
/// is prefixed with a single quote `'` (shown as text, not run) and quoted. Only text cells go
/// through here: a negative similarity stays a number.
pub(crate) fn csv_field(field: &str) -> String {
    let field = clip_core::clip::excerpt::visible(field, true);
    let formula = field.starts_with(['=', '+', '-', '@', '\t', '\r']);
    if formula {
        format!("\"'{}\"", field.replace('"', "\"\""))
    } else if field.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", field.replace('"', "\"\""))
    } else {
        field.to_string()
    }
}

/// A distance in [0, 1] pixel units as 8-bit steps, to a tenth: `4.0/255`.
fn in_steps(v: f64) -> String {
    format!("{:.1}/255", v * 255.0)
}

/// A budget in [0, 1] pixel units as 8-bit steps: `4/255` when a whole number of steps, as ε is
/// usually given, else to a tenth.
fn budget_in_steps(v: f64) -> String {
    let k = v * 255.0;
    if (k - k.round()).abs() < 1e-4 {
        format!("{}/255", k.round())
    } else {
        format!("{k:.1}/255")
    }
}

/// A photo start's distance from its start as the contact sheet and the report show it: `L∞
/// 4.0/255 (ε 4/255)` and `L2 1.83` (the parts the record has), and whether L∞ is beyond ε.
fn distance_lines(init: &PhotoStart) -> (Vec<String>, bool) {
    let mut first = Vec::new();
    if let Some(linf) = init.linf {
        first.push(format!("L∞ {}", in_steps(linf)));
    }
    match init.epsilon {
        Some(eps) => first.push(format!("(ε {})", budget_in_steps(eps))),
        None if init.linf.is_some() => first.push("(no ε)".to_string()),
        None => {}
    }
    let mut lines: Vec<String> =
        Some(first.join(" ")).filter(|l| !l.is_empty()).into_iter().collect();
    lines.extend(init.l2.map(|l2| format!("L2 {l2:.2}")));
    (lines, beyond_budget(init))
}

/// Whether the saved image is farther from its start than the run's budget allowed: the float
/// image stays within ε, and its 8-bit rounding may add up to half a step (0.5/255) when ε is not
/// a whole number of steps; beyond that (and a float rounding error) it broke the budget.
fn beyond_budget(init: &PhotoStart) -> bool {
    matches!((init.linf, init.epsilon), (Some(linf), Some(eps)) if linf > eps + 0.5 / 255.0 + 1e-6)
}

/// `path` relative to `dir` when inside it (with `/` separators), else as given.
pub fn relative(dir: &Path, path: &Path) -> String {
    match path.strip_prefix(dir) {
        Ok(rel) => {
            rel.components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/")
        }
        Err(_) => path.display().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_when_needed() {
        assert_eq!(csv_field("A cute dog"), "A cute dog");
        assert_eq!(csv_field("a, \"b\""), "\"a, \"\"b\"\"\"");
        // Control characters (a record's NUL, a terminal's ESC) are shown, not passed through.
        assert_eq!(csv_field("a\0b\x1b[2Jc"), "a\u{2400}b\u{241b}[2Jc");
    }

    #[test]
    fn csv_cells_that_a_spreadsheet_would_run_are_escaped() {
        assert_eq!(csv_field("=1+2"), "\"'=1+2\"");
        assert_eq!(csv_field("+1"), "\"'+1\"");
        assert_eq!(csv_field("-1"), "\"'-1\"");
        assert_eq!(csv_field("@SUM(A1)"), "\"'@SUM(A1)\"");
        assert_eq!(csv_field("\t=1"), "\"'\t=1\"");
        assert_eq!(csv_field("\r=1"), "\"'\r=1\"");
        assert_eq!(csv_field("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(csv_field("a = b"), "a = b");
    }

    #[test]
    fn distances_in_8_bit_steps() {
        let init = PhotoStart {
            epsilon: Some(4.0 / 255.0),
            linf: Some(4.0 / 255.0),
            l2: Some(1.834),
            ..PhotoStart::default()
        };
        assert_eq!(
            distance_lines(&init),
            (vec!["L∞ 4.0/255 (ε 4/255)".into(), "L2 1.83".into()], false)
        );
        let (epsilon, linf) = (Some(2.5 / 255.0), Some(5.0 / 255.0));
        let init = PhotoStart { epsilon, linf, ..PhotoStart::default() };
        assert_eq!(distance_lines(&init), (vec!["L∞ 5.0/255 (ε 2.5/255)".into()], true));
        let init = PhotoStart { linf: Some(0.5), ..PhotoStart::default() };
        assert_eq!(distance_lines(&init).0, vec!["L∞ 127.5/255 (no ε)".to_string()]);
        assert_eq!(distance_lines(&PhotoStart::default()), (vec![], false));
    }

    #[test]
    fn paths_relative_to_the_results() {
        let dir = Path::new("/r");
        assert_eq!(relative(dir, Path::new("/r/RN50/a.png")), "RN50/a.png");
        assert_eq!(relative(dir, Path::new("/elsewhere/a.png")), "/elsewhere/a.png");
    }
}
