//! `clip classify`: zero-shot classification of images as in the CLIP paper, over the ImageNet
//! classes with OpenAI's 80 templates or the user's own lists (`clip::zeroshot`), one JSON line per
//! image with its K most probable classes.
//!
//! The order of work is chosen so that what a user can get wrong fails before the expensive part:
//! the label and template lists are read, the model loaded, and every image preprocessed and
//! encoded (an unreadable image is an error naming it) before the class weights — 80 000 texts
//! for ImageNet — are computed or read from the cache. A progress bar (on a terminal) shows the
//! texts encoded; a note on stderr says whether the class weights came from the cache or were
//! computed (and how long that took).

use super::cli::{PrecisionArg, WeightsArgs};
use super::device::DeviceChoice;
use super::interrupt::{self, Interrupted};
use anyhow::Context;
use clip_core::clip::model::{LoadedClip, Precision};
use clip_core::clip::released;
use clip_core::clip::score;
use clip_core::clip::tokenizer::Tokenizer;
use clip_core::clip::weights::download;
use clip_core::clip::zeroshot::{
    self, Cache, EncodeOptions, Labels, Templates, WeightsSource, ZeroShotError, ZeroShotOptions,
};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use tch::Tensor;

/// Images per forward pass of the vision tower.
const IMAGE_BATCH: usize = 16;

/// `clip classify`'s flags.
#[derive(clap::Args, Debug, Clone)]
pub struct ClassifyArgs {
    #[command(flatten)]
    pub weights: WeightsArgs,
    /// An image to classify (repeatable); resized and centre-cropped like the reference's
    /// preprocess. One JSON line per image, in the order given.
    #[arg(long = "image", value_name = "FILE", required = true)]
    pub images: Vec<PathBuf>,
    /// The classes: `imagenet` (OpenAI's 1 000 ImageNet class names) or a file with one class
    /// name per line (blank lines are skipped; `./imagenet` for a file of that name).
    #[arg(long, value_name = "imagenet|FILE", default_value = zeroshot::IMAGENET)]
    pub labels: String,
    /// The prompt templates: `openai` (OpenAI's 80 ImageNet templates) or a file with one
    /// template per line, `{}` where the class name goes.
    #[arg(long, value_name = "openai|FILE", default_value = zeroshot::OPENAI)]
    pub templates: String,
    /// How many of the most probable classes to print per image (at most the number of classes).
    #[arg(long, value_name = "K", default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..))]
    pub top: u64,
    /// Where the model runs: cpu, cuda or auto.
    #[arg(long, value_enum, default_value_t = DeviceChoice::Auto)]
    pub device: DeviceChoice,
    /// The model's precision (default: fp16 on CUDA, fp32 on the CPU, as clip.load). The class
    /// weights are cached per precision.
    #[arg(long, value_enum, value_name = "fp16|fp32")]
    pub precision: Option<PrecisionArg>,
    /// Benchmarks and tests: encode the class texts in full 77-token rows, as the reference does,
    /// instead of cutting each batch to its longest text (the same result, slower).
    #[arg(long, hide = true)]
    pub no_length_cut: bool,
    /// Benchmarks and tests: compute the class weights even when they are cached, and do not
    /// cache them.
    #[arg(long, hide = true)]
    pub no_cache: bool,
    /// Texts per forward pass of the text transformer when computing the class weights.
    #[arg(long, hide = true, value_name = "N", default_value_t = zeroshot::DEFAULT_BATCH_SIZE as u64,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub text_batch_size: u64,
}

/// One image's line of output.
#[derive(serde::Serialize)]
struct ImageLine<'a> {
    image: String,
    top: &'a [Prediction],
}

/// One class of the output (probabilities as f32: their shortest decimal form).
#[derive(serde::Serialize)]
struct Prediction {
    index: usize,
    label: String,
    probability: f32,
}

/// The checkpoint's SHA-256: a released model's is known (and was checked when it was fetched);
/// a file given with `--weights` is hashed.
fn weights_sha256(args: &WeightsArgs, path: &std::path::Path) -> anyhow::Result<String> {
    if let (None, Some(name)) = (&args.weights, &args.model) {
        if let Ok(model) = released::by_name(name) {
            return Ok(model.sha256.to_string());
        }
    }
    Ok(download::sha256_file_with(path, &interrupt::requested)?)
}

/// The raw image features of `images` under `loaded`, [N, embed_dim]; an image that cannot be
/// read is an error naming it.
fn image_features(loaded: &LoadedClip, images: &[PathBuf]) -> anyhow::Result<Tensor> {
    let model = &loaded.model;
    let mut features = Vec::new();
    for batch in images.chunks(IMAGE_BATCH) {
        interrupt::check("while encoding the images")?;
        let pixels = batch
            .iter()
            .map(|p| {
                score::file_pixels(model, p)
                    .with_context(|| format!("reading image {}", p.display()))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        features.push(score::image_features(model, &Tensor::stack(&pixels, 0), loaded.vs.device()));
    }
    Ok(Tensor::cat(&features, 0))
}

pub fn progress_bar(total: usize) -> ProgressBar {
    let target = if std::io::stderr().is_terminal() {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    };
    let bar = ProgressBar::with_draw_target(Some(total as u64), target);
    if let Ok(style) = ProgressStyle::with_template(
        "class weights [{bar:40}] {pos}/{len} texts ({per_sec}, {eta})",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

/// Runs `clip classify`: prints one JSON object per image on stdout, notes on stderr.
pub fn run(args: &ClassifyArgs) -> anyhow::Result<()> {
    let labels = Labels::from_spec(&args.labels).context("--labels")?;
    let templates = Templates::from_spec(&args.templates).context("--templates")?;
    let tokenizer = Tokenizer::new()?;
    let device = args.device.resolve()?;
    let path = args.weights.path()?;
    let precision = args.precision.map_or(Precision::for_device(device), Precision::from);
    let loaded = LoadedClip::load_with(&path, device, precision, &interrupt::requested)
        .with_context(|| format!("loading the CLIP model from {}", path.display()))?;
    let features = image_features(&loaded, &args.images)?;
    let sha256 = weights_sha256(&args.weights, &path)?;

    let options = ZeroShotOptions {
        encode: EncodeOptions {
            batch_size: args.text_batch_size as usize,
            length_cut: !args.no_length_cut,
        },
        cache: if args.no_cache { Cache::Off } else { Cache::Default },
    };
    let total = labels.len() * templates.len();
    let bar = progress_bar(total);
    let outcome = zeroshot::class_weights(
        &loaded.model,
        &sha256,
        &tokenizer,
        &labels,
        &templates,
        &options,
        &mut |done, _| bar.set_position(done as u64),
        &interrupt::requested,
    );
    bar.finish_and_clear();
    let outcome = outcome.map_err(|e| match e {
        ZeroShotError::Interrupted => {
            anyhow::Error::new(Interrupted { during: "while computing the class weights".into() })
        }
        e => anyhow::Error::new(e),
    })?;
    for warning in &outcome.warnings {
        eprintln!("warning: {warning}");
    }
    let shape = format!("{} classes × {} templates", labels.len(), templates.len());
    match &outcome.source {
        WeightsSource::Cached(path) => {
            eprintln!(
                "class weights ({shape}): read from the cache {} (no text encoded)",
                path.display()
            )
        }
        WeightsSource::Computed { texts, seconds, cached_at } => {
            let rows =
                if options.encode.length_cut { "cut to length" } else { "full 77-token rows" };
            let cached = cached_at
                .as_ref()
                .map_or(String::new(), |p| format!("; cached in {}", p.display()));
            eprintln!(
                "class weights ({shape}): encoded {texts} texts in {seconds:.2} s ({rows}, batches of \
                 {}){cached}",
                options.encode.batch_size
            );
        }
    }

    let top = outcome.weights.top_k(&features, args.top as usize)?;
    let mut stdout = std::io::stdout().lock();
    for (image, predictions) in args.images.iter().zip(top) {
        let top: Vec<Prediction> = predictions
            .into_iter()
            .map(|p| Prediction {
                index: p.index,
                label: p.label,
                probability: p.probability as f32,
            })
            .collect();
        let line = ImageLine { image: image.display().to_string(), top: &top };
        writeln!(stdout, "{}", serde_json::to_string(&line)?)?;
    }
    stdout.flush()?;
    Ok(())
}
