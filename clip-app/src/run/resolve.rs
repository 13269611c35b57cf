//! Request resolution: the prompts tokenized (a too-long one named), the models' weights
//! normalised, the seed drawn, the device and precision resolved.

use super::*;
use crate::output::{self};
use anyhow::Context;
use clip_core::clip::model::Precision;
use clip_core::clip::tokenizer::Tokenizer;
use tch::{Device, Tensor};

/// The request, checked and completed.
pub(super) struct Resolved {
    pub(super) prompts: Vec<String>,
    /// Per prompt: its result name (the spec's name, or its sweep row's).
    pub(super) names: Vec<String>,
    /// Per prompt with keyed draws (a sweep's batch): its seed and run id.
    pub(super) rows: Vec<RowSpec>,
    /// The optimisation's rows: the prompts, padded (a sweep's batch).
    pub(super) width: usize,
    pub(super) tokens: Tensor,
    /// The negative prompts' tokens, when there are any.
    pub(super) negative_tokens: Option<Tensor>,
    /// The members' weights, normalised to sum to 1.
    pub(super) weights: Vec<f64>,
    pub(super) seed: u64,
    pub(super) device: Device,
    pub(super) precision: Precision,
}

/// Prompts tokenized (a too-long one is named), the seed drawn, the device resolved.
pub(super) fn resolve(spec: &RunRequest, batch: Option<&Batch>) -> anyhow::Result<Resolved> {
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
        tokens,
        negative_tokens,
        weights,
        seed: spec.seed.unwrap_or_else(|| u64::from(rand::random::<u32>())),
        device,
        precision: spec.precision.unwrap_or(Precision::for_device(device)),
    })
}
