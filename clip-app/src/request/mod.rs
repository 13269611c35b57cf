//! The run request: everything one run of the engine is asked to do — prompts and negatives, the
//! models and their weights, the engine's settings (param, augment pipeline, canvas, keep, steps,
//! learning rate, TV, negative weight, L∞ budget), the start photo, seed, device, precision and
//! where the results go — as one serde value, checked in one place ([`RunRequest::validate`]).
//!
//! Every front end only builds it: the experiment binaries from their crate's constants and flags
//! (`experiment.rs`), `clip generate` from its flags (`generate.rs`), a sweep from a SPEC's row
//! (`sweep/local.rs`), Python from keyword arguments (`clip-py`). `run/` carries it out; the
//! record it leaves (`output.rs`) names the same settings by the same keys.
//!
//! ```text
//! flags / SPEC row / kwargs ──▶ RunRequest ──validate()──▶ run::run ──▶ engine ──▶ RunRecord
//! ```

pub mod bounds;
pub mod parse;
mod settings;
mod validate;

pub use settings::RunSettings;
pub use validate::{RequestError, Setting};

use crate::device::DeviceChoice;
use clip_core::clip::model::Precision;
use clip_core::clip::released::{self, ReleasedModel};
use clip_core::engine::optimize::{Preset, Settings};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Where a model comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum ModelSource {
    /// A released model, from `~/.cache/clip` (downloaded if missing).
    Released(#[serde(with = "released_name")] &'static ReleasedModel),
    /// A checkpoint file. With `expect`, its architecture must be that model's (a model crate's
    /// binary refuses another architecture's weights rather than mislabel its results).
    Weights {
        path: PathBuf,
        #[serde(default, with = "released_name_opt")]
        expect: Option<&'static ReleasedModel>,
        /// What its results are called (their folder, file names and the record's model), for
        /// a checkpoint the user named (a sweep's `[weights]` key); else its architecture's
        /// released name, or its file's name.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
    },
}

impl ModelSource {
    /// A checkpoint file, of any architecture, its results named as [`Self::Weights`] says.
    pub fn file(path: impl Into<PathBuf>) -> Self {
        Self::Weights { path: path.into(), expect: None, name: None }
    }

    /// The result token, when it is known before loading.
    pub fn known_token(&self) -> Option<String> {
        match self {
            Self::Weights { name: Some(name), .. } => Some(crate::output::token_for_name(name)),
            _ => self.known_model().map(|m| m.token.to_string()),
        }
    }

    /// The released model, when it is known before loading.
    pub fn known_model(&self) -> Option<&'static ReleasedModel> {
        match self {
            Self::Released(m) | Self::Weights { expect: Some(m), .. } => Some(m),
            Self::Weights { expect: None, .. } => None,
        }
    }

    /// How the user named it, for messages.
    pub fn describe(&self) -> String {
        match self {
            Self::Released(m) => format!("--model {}", m.name),
            Self::Weights { path, .. } => format!("--weights {}", path.display()),
        }
    }

    /// What makes two sources the same model: the released name, or the file's canonical path.
    pub fn identity(&self) -> String {
        match self {
            Self::Released(r) => format!("released {}", r.name),
            Self::Weights { path, .. } => {
                format!("file {}", std::fs::canonicalize(path).unwrap_or(path.clone()).display())
            }
        }
    }
}

/// Everything a run needs to know.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunRequest {
    /// The models: one (the seed's), or several for an ensemble, whose loss is the weighted mean
    /// of theirs.
    pub models: Vec<ModelSource>,
    /// The models' weights in the ensemble, in their order; empty: all equal.
    #[serde(default)]
    pub model_weights: Vec<f64>,
    pub prompts: Vec<String>,
    /// Negative prompts: every image's loss adds `settings.negative_weight` × its mean
    /// similarity with them.
    #[serde(default)]
    pub negatives: Vec<String>,
    /// A photo to start from instead of noise (resized and centre-cropped to the canvas; kept
    /// within `settings.epsilon` of that start when given).
    #[serde(default)]
    pub init: Option<PathBuf>,
    /// The first part of the file names (`<name>_<model>_<prompt>.png`) and the record's `mode`.
    pub name: String,
    /// The preset the settings started from (recorded).
    #[serde(default)]
    pub preset: Option<Preset>,
    /// The engine's settings.
    pub settings: Settings,
    /// `None`: fp16 on CUDA, fp32 on the CPU.
    #[serde(default)]
    pub precision: Option<Precision>,
    #[serde(default)]
    pub device: DeviceChoice,
    /// `None`: a random seed, printed and recorded.
    #[serde(default)]
    pub seed: Option<u64>,
    /// Outputs go to `out/<model token>/`.
    pub out: PathBuf,
    /// A log line every this many steps (and after the last).
    pub log_every: usize,
}

impl RunRequest {
    /// `preset`'s run of `prompts` with `models`: its settings, results named after it in
    /// `results/`, device and seed chosen at run time.
    pub fn preset(preset: Preset, models: Vec<ModelSource>, prompts: Vec<String>) -> Self {
        Self {
            name: preset.to_string(),
            preset: Some(preset),
            ..Self::single_with(models, prompts, preset.settings())
        }
    }

    /// A run of one model from noise, without negatives (the seed's kind of run).
    pub fn single(model: ModelSource, prompts: Vec<String>, settings: Settings) -> Self {
        Self::single_with(vec![model], prompts, settings)
    }

    fn single_with(models: Vec<ModelSource>, prompts: Vec<String>, settings: Settings) -> Self {
        Self {
            models,
            model_weights: Vec::new(),
            prompts,
            negatives: Vec::new(),
            init: None,
            name: "run".to_string(),
            preset: None,
            settings,
            precision: None,
            device: DeviceChoice::Auto,
            seed: None,
            out: PathBuf::from("results"),
            log_every: 100,
        }
    }

    /// The model's input resolution, when every model is known before loading (the largest).
    pub fn known_resolution(&self) -> Option<i64> {
        let models: Option<Vec<&ReleasedModel>> =
            self.models.iter().map(ModelSource::known_model).collect();
        models?.iter().map(|m| m.input_resolution()).max()
    }

    /// The run's one-line description, printed before it starts.
    /// `model` is the loading model's name, `weights` its file.
    pub fn banner(
        &self,
        model: &str,
        seed: u64,
        device: &str,
        precision: Precision,
        weights: &str,
    ) -> String {
        let s = &self.settings;
        format!(
            "{model} {}: {} prompt(s), {} steps, lr {}, param {}, augment [{}], tv weight {}, keep \
             {}, seed {seed}, device {device}, precision {precision}, weights {weights}",
            self.name,
            self.prompts.len(),
            s.steps,
            s.learning_rate,
            s.param,
            s.augment.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(" "),
            s.tv_weight,
            s.keep,
        )
    }
}

/// A released model as its name (`"RN50"`, `"ViT-B/32"`).
mod released_name {
    use super::*;

    pub fn serialize<S: serde::Serializer>(m: &&ReleasedModel, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(m.name)
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(
        d: D,
    ) -> Result<&'static ReleasedModel, D::Error> {
        let name = String::deserialize(d)?;
        released::by_name(&name).map_err(serde::de::Error::custom)
    }
}

/// An optional released model as its name.
mod released_name_opt {
    use super::*;

    pub fn serialize<S: serde::Serializer>(
        m: &Option<&ReleasedModel>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match m {
            Some(m) => s.serialize_some(m.name),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(
        d: D,
    ) -> Result<Option<&'static ReleasedModel>, D::Error> {
        match Option::<String>::deserialize(d)? {
            Some(name) => released::by_name(&name).map(Some).map_err(serde::de::Error::custom),
            None => Ok(None),
        }
    }
}
