//! The optimisation loop: Adam on a parameterised image (`param.rs`) until CLIP's embedding of its
//! augmented views (`augment/`) matches a text's (`objective.rs`).
//!
//! Mirrors the seed's loops, batched over prompts: `torch.optim.Adam([image], lr)` with default
//! betas and eps; the seed's pixels clamped to [0, 1] after each step; the loss
//! `1 − cosine(normalised image embedding, normalised text embedding)` of the CLIP-normalised view,
//! plus `tv_weight × TV(image)`; and a keep rule: `last` (the seed's unconstrained: the final image)
//! or `best` (the seed's constrained: the image after the update of the step whose view had the
//! lowest similarity loss, as it records `image` after `opt.step()` when `sim.item() < best`). The
//! seed's unconstrained loop averages four passes of the same deterministic forward per step;
//! their mean has the same gradient as one pass, so one pass is done.
//!
//! The loop only composes the parts: the parameterisation renders the image, the pipeline draws
//! and applies the augmentations, the objective scores the views; [`Preset`] names the seed's two
//! recipes. All prompts run as one batch: each has its own image, initial draw, Adam state and
//! augmentation draws, and the per-prompt losses are summed, so every image gets the gradient it
//! would get alone. Statistics and best images stay on the device and are read back every
//! `readback_every` steps: no host synchronisation per step, so on CUDA the step is captured once
//! as a CUDA graph and replayed (`executor.rs`).
//!
//! Beyond the seed (`objective.rs`): negative prompts, several models at once (each sees the views
//! at its own resolution; the views are made at the largest), and a start image instead of noise,
//! optionally kept within an L∞ budget of it by the projection after every step (projected
//! gradient descent). All of it stays inside the one captured step.
//!
//! Faults: a prompt whose loss or gradient stops being finite (fp16 overflow) is frozen from that
//! step on (a per-prompt "alive" mask on the device: no update, its image kept), and the others go
//! on; the loop can be stopped after any step (Ctrl-C), keeping the images reached so far.

use super::adam::Adam;
use super::augment::{self, Augment};
use super::draws::Draws;
use super::executor::{Execution, Executor, Plan};
use super::objective::{Member, Normalize, Objective};
use super::param::{Canvas, Param, ParamImage, DEFAULT_DECAY, MAX_CANVAS, MIN_CANVAS};
use crate::clip::model::Clip;
use crate::clip::score;
use std::time::Instant;
use tch::{Device, Kind, Tensor};

/// Which image a run keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    /// The image after the step whose view had the lowest similarity loss.
    Best,
    /// The final image.
    Last,
}

impl Keep {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Best => "best",
            Self::Last => "last",
        }
    }
}

impl std::fmt::Display for Keep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Keep {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "best" => Ok(Self::Best),
            "last" => Ok(Self::Last),
            _ => Err(format!("unknown keep rule {s:?}; valid: best, last")),
        }
    }
}

/// The seed's two recipes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preset {
    /// Pixels, no augmentation, no TV, the final image.
    Unconstrained,
    /// Pixels, RandomAffine + flip, TV 1e-4, the best image.
    Constrained,
}

impl Preset {
    pub const ALL: [Preset; 2] = [Self::Constrained, Self::Unconstrained];

    /// The name used in file names and records: `constrained` or `unconstrained`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unconstrained => "unconstrained",
            Self::Constrained => "constrained",
        }
    }

    /// The preset's settings, with the seed's steps, learning rate and read-back interval.
    pub fn settings(self) -> Settings {
        let (augment, tv_weight, keep) = match self {
            Self::Unconstrained => (Vec::new(), 0.0, Keep::Last),
            Self::Constrained => (augment::SEED_CONSTRAINED.to_vec(), SEED_TV_WEIGHT, Keep::Best),
        };
        Settings {
            steps: SEED_STEPS,
            learning_rate: SEED_LEARNING_RATE,
            param: Param::Pixels,
            decay: DEFAULT_DECAY,
            canvas: None,
            augment,
            tv_weight,
            negative_weight: DEFAULT_NEGATIVE_WEIGHT,
            epsilon: None,
            keep,
            readback_every: READBACK_EVERY,
            cuda_graph: true,
        }
    }
}

impl std::fmt::Display for Preset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Preset {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| format!("unknown preset {s:?}; valid: constrained, unconstrained"))
    }
}

/// The seed's settings.
pub const SEED_STEPS: usize = 10_000;
pub const SEED_LEARNING_RATE: f64 = 0.05;
pub const SEED_TV_WEIGHT: f64 = 1e-4;
/// Statistics are read back from the device this often (and after the last step).
pub const READBACK_EVERY: usize = 10;
/// The weight of the negative prompts' mean similarity in the loss, unless told otherwise.
pub const DEFAULT_NEGATIVE_WEIGHT: f64 = 0.5;

/// What one optimisation does. Serde gives its parts as the flags' text (`"fft"`, `"best"`,
/// `["affine:10,0.1,0.9,1.1"]`); the read-back interval is the engine's, not a setting.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Settings {
    pub steps: usize,
    pub learning_rate: f64,
    pub param: Param,
    /// The FFT parameterisations' `decay_power`.
    pub decay: f64,
    /// The image's size; `None`: the model's input resolution (the seed).
    pub canvas: Option<Canvas>,
    /// Applied in order to each step's view.
    pub augment: Vec<Augment>,
    /// Weight of the total variation in the loss (0: measured, not optimised).
    pub tv_weight: f64,
    /// Weight of the negative prompts' mean similarity in each model's loss (>= 0; used only
    /// with negatives).
    pub negative_weight: f64,
    /// With a start image: the L∞ budget around it, in [0, 1] pixel units, in (0, 1]; `None`:
    /// no budget (the image stays in [0, 1] only).
    pub epsilon: Option<f64>,
    pub keep: Keep,
    /// Statistics are read back from the device every this many steps (and after the last).
    #[serde(skip, default = "readback_every")]
    pub readback_every: usize,
    /// On CUDA, replay the step from a captured CUDA graph; `false` runs every step eagerly.
    pub cuda_graph: bool,
}

fn readback_every() -> usize {
    READBACK_EVERY
}

/// Everything that can stop an optimisation.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("invalid settings: {0}")]
    Settings(String),
    #[error("reading back {what} from the device failed: {source}")]
    ReadBack {
        what: &'static str,
        #[source]
        source: tch::TchError,
    },
}

impl Settings {
    /// The canvas for a model of input resolution `res`.
    pub fn canvas_for(&self, res: i64) -> Canvas {
        self.canvas.unwrap_or(Canvas::square(res))
    }

    /// Checks what flags cannot: ranges, and the views' size for a model of input resolution `res`.
    pub fn validate(&self, res: i64) -> Result<(), EngineError> {
        let bad = |m: String| Err(EngineError::Settings(m));
        if self.steps < 1 {
            return bad("at least 1 step is needed".into());
        }
        if !(self.learning_rate.is_finite() && self.learning_rate > 0.0) {
            return bad(format!(
                "the learning rate must be > 0 and finite, not {}",
                self.learning_rate
            ));
        }
        if !(self.tv_weight.is_finite() && self.tv_weight >= 0.0) {
            return bad(format!("the TV weight must be >= 0 and finite, not {}", self.tv_weight));
        }
        if !(self.negative_weight.is_finite() && self.negative_weight >= 0.0) {
            return bad(format!(
                "the negative weight must be >= 0 and finite, not {}",
                self.negative_weight
            ));
        }
        if let Some(e) = self.epsilon {
            if !(e > 0.0 && e <= 1.0) {
                return bad(format!("the L∞ budget must be in (0, 1], not {e}"));
            }
        }
        if !self.decay.is_finite() {
            return bad(format!("the decay must be finite, not {}", self.decay));
        }
        let canvas = self.canvas_for(res);
        for side in [canvas.width, canvas.height] {
            if !(MIN_CANVAS..=MAX_CANVAS).contains(&side) {
                return bad(format!(
                    "a canvas side of {side} is outside {MIN_CANVAS}..={MAX_CANVAS}"
                ));
            }
        }
        augment::view_size(&self.augment, (canvas.height, canvas.width), res)
            .map_err(EngineError::Settings)?;
        Ok(())
    }

    /// Views per image and step.
    pub fn views_per_image(&self) -> i64 {
        augment::views_per_image(&self.augment)
    }
}

/// The statistics of one step, one entry per prompt: the mean cosine similarity of the step's
/// views before the update, and the un-weighted total variation of the image.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StepStats {
    /// 1-based: the number of updates once this step is done.
    pub step: usize,
    /// With several models, their weighted mean.
    pub similarity: Vec<f32>,
    pub tv: Vec<f32>,
    /// With several models: each one's similarity, in the members' order; else empty.
    pub per_model: Vec<Vec<f32>>,
    /// With negatives: the views' mean similarity with the negatives (weighted mean over the
    /// models); else empty.
    pub negative: Vec<f32>,
    /// On the last step of a read-back after which the steps fell back from the CUDA graph to
    /// eager execution: why (the engine prints nothing; the application warns).
    pub eager_fallback: Option<String>,
}

impl StepStats {
    /// The statistics of the first `n` prompts only.
    pub fn first(&self, n: usize) -> Self {
        let cut = |v: &Vec<f32>| v[..n.min(v.len())].to_vec();
        Self {
            step: self.step,
            similarity: cut(&self.similarity),
            tv: cut(&self.tv),
            per_model: self.per_model.iter().map(cut).collect(),
            negative: cut(&self.negative),
            eager_fallback: self.eager_fallback.clone(),
        }
    }
}

/// The result of one optimisation of a batch of prompts.
#[derive(Debug)]
pub struct Outcome {
    /// The initial images [N, 3, H, W] on the CPU (each prompt its own draw).
    pub initial: Tensor,
    /// The kept images [N, 3, H, W] on the CPU, in [0, 1].
    pub images: Tensor,
    /// Keep best: per prompt, the step whose view had the lowest similarity loss, and that loss.
    pub best: Option<Vec<(usize, f64)>>,
    /// Optimisation loop only (no set-up, no saving), including the read-backs.
    pub loop_seconds: f64,
    /// The steps done: `settings.steps`, or fewer when stopped early.
    pub steps_done: usize,
    /// Whether `stop` ended the loop before `settings.steps`.
    pub interrupted: bool,
    /// Per prompt: the step at which its loss or gradient was not finite, after which it was
    /// frozen (its image is the one that step started from); `None` for prompts that ran on.
    pub frozen_at: Vec<Option<usize>>,
    /// Whether the steps were replayed from a CUDA graph, or why not.
    pub execution: Execution,
}

impl Outcome {
    /// The outcome of the first `n` prompts only (a padded batch's real ones).
    pub fn first(self, n: usize) -> Self {
        let rows = self.images.size()[0];
        if n as i64 >= rows {
            return self;
        }
        Self {
            initial: self.initial.narrow(0, 0, n as i64),
            images: self.images.narrow(0, 0, n as i64),
            best: self.best.map(|b| b[..n].to_vec()),
            frozen_at: self.frozen_at[..n].to_vec(),
            ..self
        }
    }

    pub fn steps_per_second(&self, steps: usize) -> f64 {
        steps as f64 / self.loop_seconds.max(f64::MIN_POSITIVE)
    }
}

/// Copies a tensor to the host as a vector, or says what could not be read.
fn read_back<T: tch::kind::Element + Copy>(
    t: &Tensor,
    what: &'static str,
) -> Result<Vec<T>, EngineError> {
    let host =
        t.f_to_device(Device::Cpu).map_err(|source| EngineError::ReadBack { what, source })?;
    Vec::<T>::try_from(host.flatten(0, -1)).map_err(|source| EngineError::ReadBack { what, source })
}

/// The cosine similarity of each image [N, 3, H, W] in [0, 1] with the matching row of
/// `text_features` [N, D], the images resampled to the model's input resolution where their size
/// differs (no augmentation, no gradient).
pub fn similarity(
    model: &Clip,
    images: &Tensor,
    text_features: &Tensor,
) -> Result<Vec<f64>, EngineError> {
    let res = model.config.image_resolution;
    let objective = Objective::new(model, text_features, 1, 0.0);
    let sim = tch::no_grad(|| {
        let views =
            augment::resample(&images.to_device(text_features.device()).to_kind(Kind::Float), res);
        objective.similarity(&views).to_kind(Kind::Double)
    });
    read_back(&sim, "similarities")
}

/// The cosine similarity of each image [N, 3, H, W] in [0, 1] with each row of `texts` [K, D]:
/// [N][K], each image resampled and encoded once (no augmentation, no gradient).
pub fn similarity_matrix(
    model: &Clip,
    images: &Tensor,
    texts: &Tensor,
) -> Result<Vec<Vec<f64>>, EngineError> {
    let res = model.config.image_resolution;
    let device = texts.device();
    let features = tch::no_grad(|| {
        let views = augment::resample(&images.to_device(device).to_kind(Kind::Float), res);
        model.encode_image(&Normalize::new(device).forward(&views))
    });
    score::matrix(&features, texts)
        .map_err(|source| EngineError::ReadBack { what: "similarities", source })
}

/// Everything one step reads and writes. The state tensors are allocated once and updated in
/// place, and nothing in [`Step::run`] reads the host, so the step can be captured in a CUDA graph
/// and replayed.
struct Step<'a> {
    augment: &'a [Augment],
    draws: &'a mut dyn Draws,
    objective: Objective<'a>,
    batch: i64,
    res: i64,
    image: ParamImage,
    adam: Adam,
    keep_best: bool,
    best_loss: Tensor,
    best_image: Tensor,
    best_step: Tensor,
    /// [readback, rows, N]: per step since the last read-back, similarity and TV, then (several
    /// models) each model's similarity, then (negatives) the negatives' similarity.
    stats: Tensor,
    /// The row of `stats` the next step writes: an Int64 [1] cycling through 0..readback in step
    /// with the host's count of pending rows.
    slot: Tensor,
    readback: i64,
    alive: Tensor,
    /// 0 while alive, else the step at which the prompt was frozen.
    frozen_step: Tensor,
}

impl<'a> Step<'a> {
    /// The state of the steps, allocated once: Adam over the image's parameters, the kept
    /// image and its loss, the statistics of `readback_every` steps (`rows` per prompt).
    fn new(
        settings: &'a Settings,
        draws: &'a mut dyn Draws,
        objective: Objective<'a>,
        image: ParamImage,
        rows: i64,
        device: Device,
    ) -> Self {
        let batch = objective.batch();
        let readback = settings.readback_every.max(1) as i64;
        Step {
            augment: &settings.augment,
            draws,
            res: objective.view_resolution(),
            objective,
            batch,
            adam: Adam::new(&image.params, settings.learning_rate),
            keep_best: settings.keep == Keep::Best,
            best_loss: Tensor::full([batch], f64::INFINITY, (Kind::Float, device)),
            best_image: tch::no_grad(|| image.render().copy()),
            best_step: Tensor::zeros([batch], (Kind::Float, device)),
            stats: Tensor::zeros([readback, rows, batch], (Kind::Float, device)),
            slot: Tensor::zeros([1], (Kind::Int64, device)),
            readback,
            alive: Tensor::ones([batch], (Kind::Bool, device)),
            frozen_step: Tensor::zeros([batch], (Kind::Float, device)),
            image,
        }
    }
}

impl Step<'_> {
    /// The images kept, on the CPU: the best ones (keep best) or the last.
    fn kept_images(&self) -> Result<Tensor, EngineError> {
        let result = if self.keep_best {
            self.best_image.shallow_clone()
        } else {
            tch::no_grad(|| self.image.render().copy())
        };
        result
            .f_to_device(Device::Cpu)
            .map_err(|source| EngineError::ReadBack { what: "the images", source })
    }

    /// Records in `frozen_at` the step at which each prompt newly froze (a non-finite loss).
    fn note_frozen(&self, frozen_at: &mut [Option<usize>]) -> Result<(), EngineError> {
        let frozen: Vec<f32> = read_back(&self.frozen_step, "the frozen prompts' steps")?;
        for (slot, &s) in frozen_at.iter_mut().zip(&frozen) {
            if slot.is_none() && s > 0.0 {
                *slot = Some(s as usize);
            }
        }
        Ok(())
    }

    /// Keep best: each prompt's best step and its similarity loss.
    fn best_steps(&self) -> Result<Option<Vec<(usize, f64)>>, EngineError> {
        if !self.keep_best {
            return Ok(None);
        }
        let steps: Vec<f32> = read_back(&self.best_step, "the best steps")?;
        let losses: Vec<f32> = read_back(&self.best_loss, "the best losses")?;
        Ok(Some(steps.iter().zip(&losses).map(|(&s, &l)| (s as usize, l as f64)).collect()))
    }

    /// `alive` shaped to broadcast over a per-prompt tensor of `dims` dimensions.
    fn per_prompt(&self, mask: &Tensor, dims: usize) -> Tensor {
        let mut shape = vec![self.batch];
        shape.resize(dims, 1);
        mask.view(shape.as_slice())
    }

    /// One step: render, augment, the loss, its gradient, Adam, the projection, the NaN freeze,
    /// best-image tracking and the step's statistics.
    fn run(&mut self) {
        let image = self.image.render();
        let views = augment::apply_pipeline(self.augment, &image, self.res, self.draws);
        let eval = self.objective.evaluate(&views, &image);
        let grad = Tensor::run_backward(&[&eval.loss], &[&self.image.params], false, false);
        let param_dims = self.image.params.dim();
        let before = tch::no_grad(|| {
            // A prompt stays alive while its loss and its gradient are finite.
            let finite = eval
                .similarity_loss
                .isfinite()
                .logical_and(&eval.tv.isfinite())
                .logical_and(&grad[0].isfinite().flatten(1, -1).all_dim(1, false));
            let newly_frozen = self.alive.logical_and(&finite.logical_not());
            // This step's number: Adam's count before its update, plus one.
            let this_step = (&self.adam.step + 1.0).to_kind(Kind::Float);
            self.frozen_step
                .copy_(&self.frozen_step.where_self(&newly_frozen.logical_not(), &this_step));
            let _ = self.alive.logical_and_(&finite);
            self.image.params.detach().copy()
        });
        let alive_params = self.per_prompt(&self.alive, param_dims);
        let grad = tch::no_grad(|| grad[0].where_scalarother(&alive_params, 0.0));
        self.adam.step(&mut self.image.params, &grad);
        self.image.project();
        tch::no_grad(|| {
            // Frozen prompts get no update (Adam's momentum would still move them).
            self.image.params.copy_(&self.image.params.where_self(&alive_params, &before));
            let mut rows = vec![eval.similarity.detach(), eval.tv.detach()];
            rows.extend(eval.per_member.iter().map(Tensor::detach));
            rows.extend(eval.negative.as_ref().map(Tensor::detach));
            let row = Tensor::stack(&rows, 0).unsqueeze(0);
            let _ = self.stats.index_copy_(0, &self.slot, &row);
            let _ = self.slot.g_add_scalar_(1).remainder_(self.readback);
            if self.keep_best {
                let loss = eval.similarity_loss.detach();
                let better = loss.lt_tensor(&self.best_loss).logical_and(&self.alive);
                self.best_loss.copy_(&loss.where_self(&better, &self.best_loss));
                let rendered = self.image.render();
                let image_better = self.per_prompt(&better, 4);
                self.best_image.copy_(&rendered.where_self(&image_better, &self.best_image));
                let step = self.adam.step.to_kind(Kind::Float);
                self.best_step.copy_(&step.where_self(&better, &self.best_step));
            }
        });
    }
}

/// [`optimize_until`] without a stop.
pub fn optimize(
    model: &Clip,
    text_features: &Tensor,
    settings: &Settings,
    draws: &mut dyn Draws,
    on_stats: &mut dyn FnMut(&[StepStats]),
) -> Result<Outcome, EngineError> {
    optimize_until(model, text_features, settings, draws, on_stats, &|| false)
}

/// Optimises one image per row of `text_features` ([N, D], raw or normalised, on the model's
/// device) for one model, from noise; see [`optimize_objective_until`].
pub fn optimize_until(
    model: &Clip,
    text_features: &Tensor,
    settings: &Settings,
    draws: &mut dyn Draws,
    on_stats: &mut dyn FnMut(&[StepStats]),
    stop: &dyn Fn() -> bool,
) -> Result<Outcome, EngineError> {
    let member = Member { model, text: text_features, negatives: None, weight: 1.0 };
    optimize_objective_until(&[member], None, settings, draws, on_stats, stop)
}

/// Checks the members and the start image against the settings.
fn check_problem(
    members: &[Member],
    start: Option<&Tensor>,
    settings: &Settings,
) -> Result<(), EngineError> {
    let bad = |m: String| Err(EngineError::Settings(m));
    let Some(first) = members.first() else {
        return bad("at least one model is needed".into());
    };
    let batch = first.text.size()[0];
    if batch < 1 {
        return bad("at least one prompt is needed".into());
    }
    for (i, m) in members.iter().enumerate() {
        if !(m.weight.is_finite() && m.weight > 0.0) {
            return bad(format!(
                "model {}'s weight must be > 0 and finite, not {}",
                i + 1,
                m.weight
            ));
        }
        if m.text.size()[0] != batch {
            return bad(format!("model {} has {} prompts, not {batch}", i + 1, m.text.size()[0]));
        }
    }
    match start {
        Some(start) => {
            if settings.param != Param::Pixels {
                return bad(format!(
                    "a start image needs the pixels parameterisation, not {}",
                    settings.param
                ));
            }
            let size = start.size();
            let res = members.iter().map(|m| m.model.config.image_resolution).max().unwrap_or(0);
            let canvas = settings.canvas_for(res);
            if size.len() != 4
                || size[1] != 3
                || size[2] != canvas.height
                || size[3] != canvas.width
                || (size[0] != 1 && size[0] != batch)
            {
                return bad(format!(
                    "the start image is {size:?}, not [1 or {batch}, 3, {}, {}]",
                    canvas.height, canvas.width
                ));
            }
        }
        None if settings.epsilon.is_some() => {
            return bad("an L∞ budget needs a start image".into());
        }
        None => {}
    }
    Ok(())
}

/// Optimises one image per prompt against the objective of `members` (one model: the seed's; more:
/// an ensemble, the views made at the largest resolution and resampled to each model's). Starts
/// from `start` ([1 or N, 3, H, W] in [0, 1], the canvas' size; the pixels parameterisation; kept
/// within `settings.epsilon` of it in L∞ when given) or from noise. `on_stats` receives every
/// step's statistics, in order, a chunk at each read-back; `stop` is asked after every step
/// whether to end the loop there (as after its last step). The loop also ends when every prompt
/// is frozen. The random draws (initial image, augmentations) come from `draws`:
/// [`TorchDraws`](super::draws::TorchDraws) after `tch::manual_seed` for a seeded run.
pub fn optimize_objective_until(
    members: &[Member],
    start: Option<&Tensor>,
    settings: &Settings,
    draws: &mut dyn Draws,
    on_stats: &mut dyn FnMut(&[StepStats]),
    stop: &dyn Fn() -> bool,
) -> Result<Outcome, EngineError> {
    check_problem(members, start, settings)?;
    let objective = Objective::ensemble(
        members,
        settings.views_per_image(),
        settings.tv_weight,
        settings.negative_weight,
    );
    let device = members[0].text.device();
    let batch = objective.batch();
    let res = objective.view_resolution();
    settings.validate(res)?;
    let canvas = settings.canvas_for(res);
    let capturable_draws = draws.capturable();

    let image = start_image(start, settings, batch, canvas, draws, device);
    let rows = stats_rows(&objective);
    // Copies: the pixels parameterisation renders the parameters themselves, updated in place.
    let initial = tch::no_grad(|| image.render().to_device(Device::Cpu).copy());
    let readback = settings.readback_every.max(1);
    let members_count = objective.members();
    let mut state = Step::new(settings, draws, objective, image, rows, device);
    // Lives to the end, with the graph and its memory pool, after the copies below have waited for
    // the last replay.
    let mut executor = Executor::new(Plan {
        device,
        cuda_graph: settings.cuda_graph,
        steps: settings.steps,
        capturable_draws,
    });

    let mut frozen_at = vec![None; batch as usize];
    let mut steps_done = 0;
    let mut interrupted = false;
    let start = Instant::now();
    let mut pending = 0usize;
    for step in 1..=settings.steps {
        executor.step(&mut || state.run());
        pending += 1;
        steps_done = step;
        // Asked after every step (a host flag: no synchronisation), so a stop never waits for the
        // next read-back; the steps since the last one are read back first.
        let stopping = step < settings.steps && stop();
        if pending == readback || step == settings.steps || stopping {
            let mut chunk = read_stats(&state.stats, pending, step, members_count)?;
            if let Some(last) = chunk.last_mut() {
                last.eager_fallback = executor.take_fallback();
            }
            on_stats(&chunk);
            pending = 0;
            state.note_frozen(&mut frozen_at)?;
            if frozen_at.iter().all(Option::is_some) {
                break;
            }
            if stopping {
                interrupted = true;
                break;
            }
        }
    }
    let images = state.kept_images()?;
    let loop_seconds = start.elapsed().as_secs_f64();
    let best = state.best_steps()?;
    Ok(Outcome {
        initial,
        images,
        best,
        loop_seconds,
        steps_done,
        interrupted,
        frozen_at,
        execution: executor.execution().clone(),
    })
}

/// The image the loop starts from: the start photo for every prompt, else the parameterisation's
/// own initial draw.
fn start_image(
    start: Option<&Tensor>,
    settings: &Settings,
    batch: i64,
    canvas: Canvas,
    draws: &mut dyn Draws,
    device: Device,
) -> ParamImage {
    match start {
        Some(start) => ParamImage::from_start(
            &start.to_device(device).expand([batch, 3, canvas.height, canvas.width], false),
            settings.epsilon,
        ),
        None => ParamImage::init(settings.param, batch, canvas, settings.decay, draws, device),
    }
}

/// The rows of the statistics buffer per step: similarity, TV, each model's similarity when
/// there are several, the negatives' similarity when there are any (`read_stats` reads them).
fn stats_rows(objective: &Objective) -> i64 {
    2 + if objective.members() > 1 { objective.members() as i64 } else { 0 }
        + i64::from(objective.has_negatives())
}

/// Copies the first `count` rows of the device buffer to the host; the last of them is `last_step`.
/// `members`: the models in the objective (their rows follow the TV's when there are several).
fn read_stats(
    buffer: &Tensor,
    count: usize,
    last_step: usize,
    members: usize,
) -> Result<Vec<StepStats>, EngineError> {
    let (rows, batch) = (buffer.size()[1] as usize, buffer.size()[2] as usize);
    let per_model = if members > 1 { members } else { 0 };
    let flat: Vec<f32> = read_back(&buffer.narrow(0, 0, count as i64), "the step statistics")?;
    Ok((0..count)
        .map(|i| {
            let block = &flat[i * rows * batch..(i + 1) * rows * batch];
            let row = |r: usize| block[r * batch..(r + 1) * batch].to_vec();
            StepStats {
                step: last_step + 1 + i - count,
                similarity: row(0),
                tv: row(1),
                per_model: (2..2 + per_model).map(row).collect(),
                negative: if rows > 2 + per_model { row(2 + per_model) } else { Vec::new() },
                eager_fallback: None,
            }
        })
        .collect())
}
