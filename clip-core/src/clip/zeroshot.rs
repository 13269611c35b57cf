//! Zero-shot classification, as in the CLIP paper: a class's weight is the mean of the normalised
//! text embeddings of every template filled with the class name, normalised again; an image's
//! logits are `exp(logit_scale)` × the cosine of its embedding with each class weight, and its
//! class probabilities their softmax.
//!
//! Mirrors OpenAI's notebook "Prompt Engineering for ImageNet" (`zeroshot_classifier`: for each
//! class, `encode_text(clip.tokenize([template.format(c) for template in templates]))`, each row
//! divided by its norm, the mean, divided by its norm) and `CLIP.forward` (openai-clip 1.0.1) for
//! the logits: the checkpoint's own `logit_scale`, exponentiated, where the notebook writes 100
//! (what the released checkpoints hold). The notebook's ImageNet class names and 80 templates are
//! vendored ([`Labels::imagenet`], [`Templates::openai`]; `clip-core/assets/zeroshot/`, with their
//! MIT notices).
//!
//! Unlike the notebook, which encodes every class's texts as one batch of 77 tokens each, the
//! texts are sorted by length and encoded in batches cut to their longest row: the text
//! transformer's causal mask means the `<|endoftext|>` position, whose features are the text's
//! embedding, never sees the padding after it, so the result is the same (tested against full
//! rows) for a fraction of the work. Each text's normalised embedding is added to its class's sum
//! (fp32), so memory stays at one [classes, embed_dim] matrix whatever the order.
//!
//! The class weights are cached per (checkpoint SHA-256, SHA-256 of the label list, SHA-256 of the
//! template list, precision) as safetensors under the per-user cache (`$CLIP_RS_CACHE/zeroshot`,
//! else `${XDG_CACHE_HOME:-~/.cache}/clip-rs/zeroshot`, as `scripts/setup.sh` finds its cache),
//! written atomically ([`class_weights`]).
//!
//! A library: no progress bars and no signal handlers; callers pass a `progress` callback and a
//! `stop` callback, as the weights loader's.

use super::model::{Clip, Precision};
use super::tokenizer::{TokenizeError, Tokenizer, END_OF_TEXT};
use crate::clip::excerpt::excerpt;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;
use tch::{Device, Kind, Tensor};

/// OpenAI's 1 000 ImageNet class names, one a line, in class-index order.
pub const IMAGENET_CLASSES: &str = include_str!("../../assets/zeroshot/imagenet_classes.txt");
/// OpenAI's 80 ImageNet prompt templates, one a line, `{}` where the class name goes.
pub const OPENAI_TEMPLATES: &str = include_str!("../../assets/zeroshot/openai_templates.txt");
/// The name of the vendored label list (`--labels imagenet`).
pub const IMAGENET: &str = "imagenet";
/// The name of the vendored template list (`--templates openai`).
pub const OPENAI: &str = "openai";
/// Texts per forward pass of the text transformer, by default.
pub const DEFAULT_BATCH_SIZE: usize = 256;
/// Environment variable naming the per-user cache root (as `scripts/setup.sh` reads it).
pub const CACHE_ENV: &str = "CLIP_RS_CACHE";
/// The cache file's `format` metadata: files of another format are recomputed.
const CACHE_FORMAT: &str = "clip-rs zeroshot class weights 1";
/// The cache file's tensor.
const CACHE_TENSOR: &str = "class_weights";

#[derive(Debug, thiserror::Error)]
pub enum ZeroShotError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path} is not UTF-8 text")]
    NotText { path: PathBuf },
    #[error("{source_name}: no class names (the labels file is empty or holds only blank lines)")]
    NoLabels { source_name: String },
    #[error("{source_name}: no templates (the templates file is empty or holds only blank lines)")]
    NoTemplates { source_name: String },
    #[error(
        "{source_name}, line {line}: template {} has no `{{}}` (or `{{0}}`) where the class name \
         goes",
        excerpt(template)
    )]
    NoPlaceholder { source_name: String, line: usize, template: String },
    #[error("{source_name}, line {line}: template {}: {reason}", excerpt(template))]
    BadTemplate { source_name: String, line: usize, template: String, reason: String },
    #[error("class {} with template {}: {source}", excerpt(label), excerpt(template))]
    Tokenize { label: String, template: String, source: TokenizeError },
    #[error("the per-user cache directory is unknown: set HOME, XDG_CACHE_HOME or CLIP_RS_CACHE")]
    NoCacheDir,
    #[error(
        "image features have {got} dimensions, but the class weights {expected}: they come from \
         different models"
    )]
    Dimensions { got: i64, expected: i64 },
    #[error("interrupted while computing the class weights")]
    Interrupted,
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
}

/// Lines of a list file: blank lines (whitespace only) are left out, the others trimmed; a UTF-8
/// byte-order mark and `\r\n` endings are accepted. With each line its 1-based line number.
fn list_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    text.lines().enumerate().map(|(i, l)| (i + 1, l.trim())).filter(|(_, l)| !l.is_empty())
}

fn read_text(path: &Path) -> Result<String, ZeroShotError> {
    let bytes = super::files::read_regular(path)
        .map_err(|source| ZeroShotError::Read { path: path.to_path_buf(), source })?;
    String::from_utf8(bytes).map_err(|_| ZeroShotError::NotText { path: path.to_path_buf() })
}

/// Lower-case hex SHA-256 of a list: each entry followed by `\n`, as the list's file would be.
fn list_sha256(entries: &[String]) -> String {
    let mut hasher = Sha256::new();
    for entry in entries {
        hasher.update(entry.as_bytes());
        hasher.update(b"\n");
    }
    hasher.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// The class names, in class-index order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Labels {
    /// Where they come from: `imagenet` or the file's path.
    pub source: String,
    pub names: Vec<String>,
}

impl Labels {
    /// OpenAI's 1 000 ImageNet class names (`--labels imagenet`).
    pub fn imagenet() -> Self {
        Self::parse(IMAGENET, IMAGENET_CLASSES).expect("the vendored ImageNet classes parse")
    }

    /// One class name per line of `text`; blank lines are left out, names trimmed.
    pub fn parse(source: &str, text: &str) -> Result<Self, ZeroShotError> {
        let names: Vec<String> = list_lines(text).map(|(_, l)| l.to_string()).collect();
        if names.is_empty() {
            return Err(ZeroShotError::NoLabels { source_name: source.to_string() });
        }
        Ok(Self { source: source.to_string(), names })
    }

    /// A labels file: one class name per line.
    pub fn read(path: &Path) -> Result<Self, ZeroShotError> {
        Self::parse(&path.display().to_string(), &read_text(path)?)
    }

    /// `--labels`: `imagenet`, else a file's path (`./imagenet` for a file of that name).
    pub fn from_spec(spec: &str) -> Result<Self, ZeroShotError> {
        if spec == IMAGENET {
            Ok(Self::imagenet())
        } else {
            Self::read(Path::new(spec))
        }
    }

    /// SHA-256 of the list (each name and `\n`): the cache's key.
    pub fn sha256(&self) -> String {
        list_sha256(&self.names)
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

/// A part of a template as Python's `str.format` reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    Text(String),
    /// A replacement field of the one positional argument, the class name.
    Name,
}

/// How OpenAI's notebook fills a template, `template.format(classname)`, read the way Python's
/// `str.format` reads it with one positional argument: `{{` and `}}` are braces, `{}` or `{0}`
/// (`{00}`…) the class name. What Python refuses is refused with its reason — a second `{}`
/// (there is no argument 1), `{1}`, a keyword field (`{name}`), switching between `{}` and `{0}`,
/// a single `{` or `}` — and so are conversions, format specs and attribute or index access
/// (`{!r}`, `{:>10}`, `{0[0]}`), which no template needs.
pub fn template_pieces(template: &str) -> Result<Vec<Piece>, String> {
    let mut pieces = Vec::new();
    let mut text = String::new();
    let mut automatic: Option<bool> = None;
    let mut next_automatic = 0usize;
    let mut chars = template.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                text.push('{');
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                text.push('}');
            }
            '}' => return Err("a single `}` (write `}}` for a brace)".into()),
            '{' => {
                let mut field = String::new();
                loop {
                    match chars.next() {
                        Some('}') => break,
                        Some('{') => return Err("a `{` inside a field".into()),
                        Some(c) => field.push(c),
                        None => return Err("a single `{` (write `{{` for a brace)".into()),
                    }
                }
                let index = if field.is_empty() {
                    if automatic == Some(false) {
                        return Err("`{}` after `{0}`: Python cannot switch from numbered fields \
                                    to automatic ones"
                            .into());
                    }
                    automatic = Some(true);
                    next_automatic += 1;
                    next_automatic - 1
                } else if field.chars().all(|c| c.is_ascii_digit()) {
                    if automatic == Some(true) {
                        return Err(format!(
                            "`{{{field}}}` after `{{}}`: Python cannot switch from automatic \
                             fields to numbered ones"
                        ));
                    }
                    automatic = Some(false);
                    field.parse().unwrap_or(usize::MAX)
                } else if field.contains(['!', ':', '.', '[']) {
                    return Err(format!(
                        "`{{{}}}`: conversions, format specs and attribute or index access are \
                         not supported; write `{{}}` where the class name goes",
                        excerpt(&field)
                    ));
                } else {
                    return Err(format!(
                        "`{{{}}}` names a keyword argument, but the only argument is the class \
                         name: write `{{}}`",
                        excerpt(&field)
                    ));
                };
                if index != 0 {
                    return Err(format!(
                        "field {index} of one argument: the class name is `{{}}` once, or `{{0}}` \
                         as often as needed"
                    ));
                }
                if !text.is_empty() {
                    pieces.push(Piece::Text(std::mem::take(&mut text)));
                }
                pieces.push(Piece::Name);
            }
            c => text.push(c),
        }
    }
    if !text.is_empty() {
        pieces.push(Piece::Text(text));
    }
    Ok(pieces)
}

/// The prompt templates: each has `{}` where the class name goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Templates {
    /// Where they come from: `openai` or the file's path.
    pub source: String,
    pub templates: Vec<String>,
}

impl Templates {
    /// OpenAI's 80 ImageNet templates (`--templates openai`).
    pub fn openai() -> Self {
        Self::parse(OPENAI, OPENAI_TEMPLATES).expect("the vendored templates parse")
    }

    /// One template per line of `text`, each with at least one `{}`; blank lines are left out,
    /// templates trimmed.
    pub fn parse(source: &str, text: &str) -> Result<Self, ZeroShotError> {
        let mut templates = Vec::new();
        for (line, template) in list_lines(text) {
            let pieces =
                template_pieces(template).map_err(|reason| ZeroShotError::BadTemplate {
                    source_name: source.to_string(),
                    line,
                    template: template.to_string(),
                    reason,
                })?;
            if !pieces.contains(&Piece::Name) {
                return Err(ZeroShotError::NoPlaceholder {
                    source_name: source.to_string(),
                    line,
                    template: template.to_string(),
                });
            }
            templates.push(template.to_string());
        }
        if templates.is_empty() {
            return Err(ZeroShotError::NoTemplates { source_name: source.to_string() });
        }
        Ok(Self { source: source.to_string(), templates })
    }

    /// A templates file: one template per line.
    pub fn read(path: &Path) -> Result<Self, ZeroShotError> {
        Self::parse(&path.display().to_string(), &read_text(path)?)
    }

    /// `--templates`: `openai`, else a file's path (`./openai` for a file of that name).
    pub fn from_spec(spec: &str) -> Result<Self, ZeroShotError> {
        if spec == OPENAI {
            Ok(Self::openai())
        } else {
            Self::read(Path::new(spec))
        }
    }

    /// `template.format(name)`, as Python makes it, for a template [`parse`](Self::parse)
    /// accepted (see [`template_pieces`]); another is returned as it is.
    pub fn fill(template: &str, name: &str) -> String {
        match template_pieces(template) {
            Ok(pieces) => pieces
                .iter()
                .map(|p| match p {
                    Piece::Text(text) => text.as_str(),
                    Piece::Name => name,
                })
                .collect(),
            Err(_) => template.to_string(),
        }
    }

    /// SHA-256 of the list (each template and `\n`): the cache's key.
    pub fn sha256(&self) -> String {
        list_sha256(&self.templates)
    }

    pub fn len(&self) -> usize {
        self.templates.len()
    }

    pub fn is_empty(&self) -> bool {
        self.templates.is_empty()
    }
}

/// How [`compute_class_weights`] runs the text transformer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncodeOptions {
    /// Texts per forward pass (at least 1).
    pub batch_size: usize,
    /// Cut each batch to its longest tokenised text (the default); `false` runs full 77-token
    /// rows, as the reference does (for tests and benchmarks: the result is the same).
    pub length_cut: bool,
}

impl Default for EncodeOptions {
    fn default() -> Self {
        Self { batch_size: DEFAULT_BATCH_SIZE, length_cut: true }
    }
}

/// Every (class, template) text's token ids, up to and including `<|endoftext|>`.
struct Texts {
    ids: Vec<Vec<i64>>,
    class: Vec<i64>,
}

fn tokenize_all(
    tokenizer: &Tokenizer,
    labels: &Labels,
    templates: &Templates,
) -> Result<Texts, ZeroShotError> {
    let n = labels.len() * templates.len();
    let (mut ids, mut class) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for (c, label) in labels.names.iter().enumerate() {
        for template in &templates.templates {
            let mut row =
                tokenizer.encode(&Templates::fill(template, label), false).map_err(|source| {
                    ZeroShotError::Tokenize {
                        label: label.clone(),
                        template: template.clone(),
                        source,
                    }
                })?;
            let end = row.iter().position(|&id| id == END_OF_TEXT).map_or(row.len(), |p| p + 1);
            row.truncate(end);
            ids.push(row);
            class.push(c as i64);
        }
    }
    Ok(Texts { ids, class })
}

/// The class weights of `labels` × `templates` under `model`: [classes, embed_dim], fp32, on the
/// model's device, each row of unit norm. `progress(done, total)` is called after each batch
/// (texts encoded so far, of all); `stop` is asked before each batch whether to give up
/// ([`ZeroShotError::Interrupted`]).
pub fn compute_class_weights(
    model: &Clip,
    tokenizer: &Tokenizer,
    labels: &Labels,
    templates: &Templates,
    options: &EncodeOptions,
    progress: &mut dyn FnMut(usize, usize),
    stop: &dyn Fn() -> bool,
) -> Result<Tensor, ZeroShotError> {
    let texts = tokenize_all(tokenizer, labels, templates)?;
    let device = model.logit_scale.device();
    let context = model.config.context_length;
    let total = texts.ids.len();
    // Shortest first; the order only decides which texts share a batch (and its length).
    let mut order: Vec<usize> = (0..total).collect();
    order.sort_by_key(|&i| texts.ids[i].len());
    let batch_size = options.batch_size.max(1);
    let mut sums =
        Tensor::f_zeros([labels.len() as i64, model.config.embed_dim], (Kind::Float, device))?;
    progress(0, total);
    let mut done = 0;
    tch::no_grad(|| -> Result<(), ZeroShotError> {
        for batch in order.chunks(batch_size) {
            if stop() {
                return Err(ZeroShotError::Interrupted);
            }
            let longest = batch.iter().map(|&i| texts.ids[i].len() as i64).max().unwrap_or(1);
            let length = if options.length_cut { longest } else { context.max(longest) };
            let mut flat = vec![0i64; batch.len() * length as usize];
            for (row, &i) in flat.chunks_mut(length as usize).zip(batch) {
                row[..texts.ids[i].len()].copy_from_slice(&texts.ids[i]);
            }
            let tokens = Tensor::from_slice(&flat).view([batch.len() as i64, length]);
            let features = model.encode_text(&tokens.to_device(device)).to_kind(Kind::Float);
            let features = &features / features.norm_scalaropt_dim(2, [-1], true);
            let classes: Vec<i64> = batch.iter().map(|&i| texts.class[i]).collect();
            let classes = Tensor::from_slice(&classes).to_device(device);
            sums = sums.f_index_add(0, &classes, &features)?;
            done += batch.len();
            progress(done, total);
        }
        Ok(())
    })?;
    let mean = sums / templates.len() as f64;
    Ok(&mean / mean.norm_scalaropt_dim(2, [-1], true))
}

/// One class of an image's top K.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Prediction {
    /// The class's index in the label list.
    pub index: usize,
    pub label: String,
    pub probability: f64,
}

/// A zero-shot classifier: the class weights of a label list under one model, and the model's
/// logit scale.
#[derive(Debug)]
pub struct ClassWeights {
    /// [classes, embed_dim], fp32, rows of unit norm, on the model's device.
    pub weights: Tensor,
    /// `exp(logit_scale)` of the model (`CLIP.forward`'s `logit_scale.exp()`; 100 for the
    /// released checkpoints).
    pub scale: f64,
    /// The class names, in index order.
    pub labels: Vec<String>,
}

impl ClassWeights {
    /// Class weights (as [`compute_class_weights`] makes them) with `model`'s logit scale.
    pub fn new(weights: Tensor, model: &Clip, labels: &Labels) -> Self {
        let scale =
            tch::no_grad(|| model.logit_scale.to_kind(Kind::Double).exp().double_value(&[]));
        Self { weights, scale, labels: labels.names.clone() }
    }

    /// `CLIP.forward`'s `logits_per_image` against the class weights: `image_features`
    /// ([N, embed_dim], raw `encode_image` output, any kind) normalised, times the weights, times
    /// the scale. [N, classes], fp32.
    pub fn logits(&self, image_features: &Tensor) -> Result<Tensor, ZeroShotError> {
        let expected = self.weights.size().get(1).copied().unwrap_or(0);
        let got = image_features.size().last().copied().unwrap_or(0);
        if image_features.dim() != 2 || got != expected {
            return Err(ZeroShotError::Dimensions { got, expected });
        }
        let features = image_features.to_kind(Kind::Float).to_device(self.weights.device());
        let features = &features / features.norm_scalaropt_dim(2, [-1], true);
        Ok(features.matmul(&self.weights.tr()) * self.scale)
    }

    /// The class probabilities of each image: the softmax of [`logits`](Self::logits) over the
    /// classes. [N, classes], fp32.
    pub fn probabilities(&self, image_features: &Tensor) -> Result<Tensor, ZeroShotError> {
        Ok(self.logits(image_features)?.softmax(-1, Kind::Float))
    }

    /// Each image's `k` most probable classes, most probable first (`probs.topk(k)`); `k` is at
    /// most the number of classes.
    pub fn top_k(
        &self,
        image_features: &Tensor,
        k: usize,
    ) -> Result<Vec<Vec<Prediction>>, ZeroShotError> {
        let probabilities = self.probabilities(image_features)?.to_device(Device::Cpu);
        let k = k.clamp(1, self.labels.len().max(1)) as i64;
        let (values, indices) = probabilities.f_topk(k, -1, true, true)?;
        let values = Vec::<Vec<f64>>::try_from(values.to_kind(Kind::Double))?;
        let indices = Vec::<Vec<i64>>::try_from(indices)?;
        Ok(values
            .into_iter()
            .zip(indices)
            .map(|(values, indices)| {
                values
                    .into_iter()
                    .zip(indices)
                    .map(|(probability, index)| Prediction {
                        index: index as usize,
                        label: self.labels.get(index as usize).cloned().unwrap_or_default(),
                        probability,
                    })
                    .collect()
            })
            .collect())
    }
}

/// Where [`class_weights`] keeps its files.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Cache {
    /// The per-user cache: [`default_cache_dir`].
    #[default]
    Default,
    /// A directory of the caller's.
    Dir(PathBuf),
    /// No cache: always computed, never written.
    Off,
}

/// Options of [`class_weights`].
#[derive(Debug, Clone, Default)]
pub struct ZeroShotOptions {
    pub encode: EncodeOptions,
    pub cache: Cache,
}

/// The per-user cache of class weights: `$CLIP_RS_CACHE/zeroshot`, else
/// `$XDG_CACHE_HOME/clip-rs/zeroshot`, else `~/.cache/clip-rs/zeroshot` (the cache root
/// `scripts/setup.sh` uses for libtorch).
pub fn default_cache_dir() -> Result<PathBuf, ZeroShotError> {
    let var = |name| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(root) = var(CACHE_ENV) {
        return Ok(root.join("zeroshot"));
    }
    if let Some(xdg) = var("XDG_CACHE_HOME").filter(|p| p.is_absolute()) {
        return Ok(xdg.join("clip-rs").join("zeroshot"));
    }
    let home = var("HOME").or_else(|| var("USERPROFILE")).ok_or(ZeroShotError::NoCacheDir)?;
    Ok(home.join(".cache").join("clip-rs").join("zeroshot"))
}

/// What the cached class weights are for: a cache file is used only when all four match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheKey {
    /// Lower-case hex SHA-256 of the checkpoint file.
    pub weights_sha256: String,
    pub labels_sha256: String,
    pub templates_sha256: String,
    /// The text transformer's precision (fp16 on CUDA by default): its class weights differ in
    /// the fourth digit from fp32's.
    pub precision: Precision,
}

impl CacheKey {
    pub fn new(weights_sha256: &str, model: &Clip, labels: &Labels, templates: &Templates) -> Self {
        let precision = if model.dtype() == Kind::Half { Precision::Fp16 } else { Precision::Fp32 };
        Self {
            weights_sha256: weights_sha256.to_ascii_lowercase(),
            labels_sha256: labels.sha256(),
            templates_sha256: templates.sha256(),
            precision,
        }
    }

    /// `<weights>-<labels>-<templates>-<precision>.safetensors`, 16 hex digits of each hash (the
    /// whole hashes are in the file's metadata, and checked).
    pub fn file_name(&self) -> String {
        let short = |h: &str| h.chars().take(16).collect::<String>();
        format!(
            "{}-{}-{}-{}.safetensors",
            short(&self.weights_sha256),
            short(&self.labels_sha256),
            short(&self.templates_sha256),
            self.precision
        )
    }

    fn metadata(&self) -> HashMap<String, String> {
        HashMap::from([
            ("format".to_string(), CACHE_FORMAT.to_string()),
            ("weights_sha256".to_string(), self.weights_sha256.clone()),
            ("labels_sha256".to_string(), self.labels_sha256.clone()),
            ("templates_sha256".to_string(), self.templates_sha256.clone()),
            ("precision".to_string(), self.precision.to_string()),
        ])
    }
}

/// Where [`class_weights`] got the weights.
#[derive(Debug, Clone, PartialEq)]
pub enum WeightsSource {
    /// Read from this cache file: no text was encoded.
    Cached(PathBuf),
    /// Computed: `texts` encoded in `seconds`; written to `cached_at` (none when the cache is
    /// off or could not be written: a warning says why).
    Computed { texts: usize, seconds: f64, cached_at: Option<PathBuf> },
}

/// [`class_weights`]' result.
#[derive(Debug)]
pub struct ClassWeightsOutcome {
    pub weights: ClassWeights,
    pub source: WeightsSource,
    /// Cache problems (unreadable or stale file, cannot write): the weights were computed anyway.
    pub warnings: Vec<String>,
}

/// The class weights of `labels` × `templates` under `model` (whose checkpoint hashes to
/// `weights_sha256`): read from the cache when a file for the same checkpoint, lists and precision
/// is there, else computed ([`compute_class_weights`]) and written to the cache atomically. A cache
/// file that cannot be read or does not match is a warning and is replaced.
#[allow(clippy::too_many_arguments)]
pub fn class_weights(
    model: &Clip,
    weights_sha256: &str,
    tokenizer: &Tokenizer,
    labels: &Labels,
    templates: &Templates,
    options: &ZeroShotOptions,
    progress: &mut dyn FnMut(usize, usize),
    stop: &dyn Fn() -> bool,
) -> Result<ClassWeightsOutcome, ZeroShotError> {
    let key = CacheKey::new(weights_sha256, model, labels, templates);
    let device = model.logit_scale.device();
    let mut warnings = Vec::new();
    let dir = match &options.cache {
        Cache::Default => match default_cache_dir() {
            Ok(dir) => Some(dir),
            Err(e) => {
                warnings.push(format!("the class weights are not cached: {e}"));
                None
            }
        },
        Cache::Dir(dir) => Some(dir.clone()),
        Cache::Off => None,
    };
    let path = dir.as_ref().map(|d| d.join(key.file_name()));
    if let Some(path) = path.as_ref().filter(|p| p.exists()) {
        match read_cache(path, &key, labels.len() as i64, model.config.embed_dim) {
            Ok(weights) => {
                return Ok(ClassWeightsOutcome {
                    weights: ClassWeights::new(weights.to_device(device), model, labels),
                    source: WeightsSource::Cached(path.clone()),
                    warnings,
                })
            }
            Err(reason) => warnings.push(format!(
                "the cached class weights {} cannot be used ({reason}); computing them again",
                path.display()
            )),
        }
    }
    let start = Instant::now();
    let weights = compute_class_weights(
        model,
        tokenizer,
        labels,
        templates,
        &options.encode,
        progress,
        stop,
    )?;
    let seconds = start.elapsed().as_secs_f64();
    let mut cached_at = None;
    if let (Some(dir), Some(path)) = (&dir, path) {
        match write_cache(dir, &path, &key, &weights) {
            Ok(()) => cached_at = Some(path),
            Err(reason) => warnings.push(format!(
                "the class weights could not be cached in {}: {reason}",
                dir.display()
            )),
        }
    }
    Ok(ClassWeightsOutcome {
        weights: ClassWeights::new(weights, model, labels),
        source: WeightsSource::Computed {
            texts: labels.len() * templates.len(),
            seconds,
            cached_at,
        },
        warnings,
    })
}

/// The cached matrix at `path`, if it is one for `key` of shape [classes, dim] with finite values.
fn read_cache(path: &Path, key: &CacheKey, classes: i64, dim: i64) -> Result<Tensor, String> {
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    let (_, metadata) =
        safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| e.to_string())?;
    let expected = key.metadata();
    let found = metadata.metadata().clone().unwrap_or_default();
    for (name, value) in &expected {
        if found.get(name) != Some(value) {
            return Err(format!("its {name} is not {}", excerpt(value)));
        }
    }
    let tensors = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| e.to_string())?;
    let view = tensors.tensor(CACHE_TENSOR).map_err(|e| e.to_string())?;
    let shape: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
    if view.dtype() != safetensors::Dtype::F32 || shape != [classes, dim] {
        return Err(format!("it holds {:?} {shape:?}, not F32 [{classes}, {dim}]", view.dtype()));
    }
    let weights =
        Tensor::f_from_data_size(view.data(), &shape, Kind::Float).map_err(|e| e.to_string())?;
    if !bool::try_from(weights.isfinite().all()).unwrap_or(false) {
        return Err("it holds values that are not finite".to_string());
    }
    Ok(weights)
}

/// Writes `weights` for `key` to `path` in `dir` (created if missing) through a temporary file and
/// a rename: a reader never sees half a file.
fn write_cache(dir: &Path, path: &Path, key: &CacheKey, weights: &Tensor) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    let weights = weights.to_device(Device::Cpu).to_kind(Kind::Float).contiguous();
    let shape: Vec<usize> = weights.size().iter().map(|&d| d as usize).collect();
    let values = Vec::<f32>::try_from(weights.view([-1])).map_err(|e| e.to_string())?;
    let data: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    let view = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape, &data)
        .map_err(|e| e.to_string())?;
    let bytes = safetensors::serialize([(CACHE_TENSOR, view)], Some(key.metadata()))
        .map_err(|e| e.to_string())?;
    let file_name = path.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".tmp-{file_name}."))
        .tempfile_in(dir)
        .map_err(|e| e.to_string())?;
    tmp.write_all(&bytes).map_err(|e| e.to_string())?;
    tmp.as_file().sync_all().map_err(|e| e.to_string())?;
    tmp.persist(path).map_err(|e| e.error.to_string())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_vendored_lists_have_1000_classes_and_80_templates() {
        assert_eq!(Labels::imagenet().len(), 1000);
        assert_eq!(Templates::openai().len(), 80);
        assert_eq!(Labels::imagenet().names[0], "tench");
        assert_eq!(Templates::openai().templates[0], "a bad photo of a {}.");
    }

    #[test]
    fn lists_skip_blank_lines_and_trim() {
        let labels = Labels::parse("x", "\u{feff}cat\r\n\n  dog  \n\t\n").unwrap();
        assert_eq!(labels.names, ["cat", "dog"]);
        assert!(matches!(Labels::parse("x", " \n\n"), Err(ZeroShotError::NoLabels { .. })));
        assert!(matches!(Templates::parse("x", ""), Err(ZeroShotError::NoTemplates { .. })));
        let err = Templates::parse("t.txt", "a {}.\n\nno placeholder\n").unwrap_err();
        assert!(matches!(err, ZeroShotError::NoPlaceholder { line: 3, .. }), "{err}");
        assert!(err.to_string().contains("t.txt, line 3"), "{err}");
    }

    /// `template.format("dog")` as Python 3 makes it or refuses it
    /// (`tests/fixtures/zeroshot/templates.json`, `scripts/make_template_fixtures.py`): every
    /// template Python formats gives Python's text, or is refused as not naming the class or as
    /// using a conversion, format spec or index; every template Python refuses is refused.
    #[test]
    fn templates_read_as_pythons_str_format() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/zeroshot/templates.json");
        let text = std::fs::read_to_string(path).unwrap();
        let fixture: serde_json::Value = serde_json::from_str(&text).unwrap();
        let name = fixture["name"].as_str().unwrap();
        let refused_though_python_formats =
            ["{{}}", "no placeholder", "{0[0]}", "{!r}", "{:>10}", "{0!s}"];
        for case in fixture["cases"].as_array().unwrap() {
            let template = case["template"].as_str().unwrap();
            let parsed = Templates::parse("t", template);
            match case["formatted"].as_str() {
                Some(_) if refused_though_python_formats.contains(&template) => {
                    assert!(parsed.is_err(), "{template:?} should be refused")
                }
                Some(formatted) => {
                    assert!(parsed.is_ok(), "{template:?}: {:?}", parsed.err());
                    assert_eq!(Templates::fill(template, name), formatted, "{template:?}");
                }
                None => {
                    let err = parsed.expect_err(template).to_string();
                    assert!(err.starts_with("t, line 1: template"), "{err}");
                }
            }
        }
        // The vendored templates are each `{}` once.
        for t in &Templates::openai().templates {
            assert_eq!(Templates::fill(t, name), t.replacen("{}", name, 1));
        }
    }

    #[test]
    fn list_hashes_differ_with_the_lists() {
        let a = Labels::parse("a", "cat\ndog\n").unwrap();
        let b = Labels::parse("b", "cat\r\n\ndog").unwrap();
        let c = Labels::parse("c", "dog\ncat\n").unwrap();
        assert_eq!(a.sha256(), b.sha256());
        assert_ne!(a.sha256(), c.sha256());
        // sha256("cat\ndog\n")
        assert_eq!(a.sha256(), list_sha256(&["cat".into(), "dog".into()]));
    }
}
