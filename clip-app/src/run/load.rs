//! Model loading and the cache a sweep or the Python module shares: each model's weights
//! (downloaded if needed) loaded on the device, checked against the model a binary is for,
//! hashed, its prompts and negatives encoded once; the ensemble's name and token; the start photo.

use super::*;
use crate::cli::UsageError;
use crate::interrupt;
use crate::output::{self};
use anyhow::Context;
use clip_core::clip::model::{ClipConfig, LoadedClip, Precision, VisionConfig};
use clip_core::clip::preprocess;
use clip_core::clip::released;
use clip_core::clip::score;
use clip_core::clip::weights::download;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use tch::{Device, Tensor};

/// Models loaded once and shared by the batches of a sweep: by source, device and precision.
#[derive(Default)]
pub struct ModelCache {
    pub(super) models: HashMap<String, CachedModel>,
}

#[derive(Clone)]
pub(super) struct CachedModel {
    pub(super) model: Arc<LoadedClip>,
    pub(super) weights: PathBuf,
    pub(super) weights_sha256: String,
}

/// The cache's key of a model: its source, device and precision.
pub(super) fn cache_key(source: &ModelSource, device: Device, precision: Precision) -> String {
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
        let source = ModelSource::file(weights.clone());
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

/// One model, loaded.
pub(super) struct LoadedMember {
    pub(super) model: Arc<LoadedClip>,
    pub(super) weights: PathBuf,
    pub(super) weights_sha256: String,
    /// The released model's name, or the file's token.
    pub(super) name: String,
    pub(super) token: String,
    /// The prompts' text features [N, D] on the device, encoded once.
    pub(super) text: Tensor,
    /// The negatives' text features [K, D], encoded once.
    pub(super) negatives: Option<Tensor>,
}

/// The models, loaded.
pub(super) struct Loaded {
    pub(super) members: Vec<LoadedMember>,
    /// The record's `model`: the model's name, or the members' names joined by `+`.
    pub(super) name: String,
    /// The results directory's token: the model's, or `ensemble-<token>+<token>…`.
    pub(super) token: String,
    /// The start image [1, 3, H, W] in [0, 1], when starting from a photo.
    pub(super) start: Option<Tensor>,
}

impl Loaded {
    pub(super) fn ensemble(&self) -> bool {
        self.members.len() > 1
    }

    /// The resolution the views are made at: the largest of the members'.
    pub(super) fn resolution(&self) -> i64 {
        self.members.iter().map(|m| m.model.model.config.image_resolution).max().unwrap_or(0)
    }
}

/// A short description of an architecture, for errors.
pub(super) fn describe(config: &ClipConfig) -> String {
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
pub(super) fn load(
    spec: &RunRequest,
    resolved: &Resolved,
    mut cache: Option<&mut ModelCache>,
    reporter: &mut dyn Reporter,
) -> anyhow::Result<Loaded> {
    let mut members = Vec::new();
    for source in &spec.models {
        members.push(load_member(spec, resolved, source, cache.as_deref_mut(), reporter)?);
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
pub(super) fn load_member(
    spec: &RunRequest,
    resolved: &Resolved,
    source: &ModelSource,
    cache: Option<&mut ModelCache>,
    reporter: &mut dyn Reporter,
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
            let loaded = load_model(spec, resolved, source, reporter)?;
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
    let (name, token) = match (source, matched) {
        (ModelSource::Weights { name: Some(name), .. }, _) => {
            (name.clone(), output::token_for_name(name))
        }
        (_, Some(m)) => (m.name.to_string(), m.token.to_string()),
        (_, None) => {
            let token = output::token_for_file(&path);
            (token.clone(), token)
        }
    };
    let device = resolved.device;
    let text = score::text_features(&model.model, &resolved.tokens, device);
    let negatives =
        resolved.negative_tokens.as_ref().map(|t| score::text_features(&model.model, t, device));
    Ok(LoadedMember { model, weights: path, weights_sha256, name, token, text, negatives })
}

/// One model's weights (downloaded if needed), loaded on the device and hashed.
pub(super) fn load_model(
    spec: &RunRequest,
    resolved: &Resolved,
    source: &ModelSource,
    reporter: &mut dyn Reporter,
) -> anyhow::Result<CachedModel> {
    let (path, expect) = match source {
        ModelSource::Released(m) => {
            let path = crate::fetch::resolve_model(m.name, &interrupt::requested)
                .with_context(|| format!("getting the released {} weights", m.name))?;
            (path, Some(*m))
        }
        ModelSource::Weights { path, expect, .. } => (path.clone(), *expect),
    };
    reporter.banner(&spec.banner(
        expect.map_or("CLIP", |m| m.name),
        resolved.seed,
        &device_name(resolved.device),
        resolved.precision,
        &path.display().to_string(),
    ));
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
