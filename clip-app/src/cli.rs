//! Command-line pieces shared by the `clip` tool and the experiment binaries: where the weights come
//! from (`--weights PATH` or `--model NAME`) and the model's precision (`--precision`).

use crate::device::DeviceChoice;
use anyhow::Context;
use clip_core::clip::model::{LoadedClip, Precision};
use std::path::PathBuf;

/// The model's weights: a local checkpoint or a released model downloaded to `~/.cache/clip/`.
#[derive(clap::Args, Debug, Clone)]
#[group(required = true, multiple = false)]
pub struct WeightsArgs {
    /// A checkpoint: OpenAI's TorchScript `.pt`, a `torch.save` state dict, or safetensors with OpenAI's keys.
    #[arg(long, value_name = "PATH")]
    pub weights: Option<PathBuf>,
    /// A released model by name (RN50, RN101, RN50x4, RN50x16, RN50x64, ViT-B/32, ViT-B/16, ViT-L/14,
    /// ViT-L/14@336px), downloaded once into ~/.cache/clip/ and verified by its SHA-256.
    #[arg(long, value_name = "NAME")]
    pub model: Option<String>,
}

impl WeightsArgs {
    /// The checkpoint's path, downloading the named model if needed.
    pub fn path(&self) -> anyhow::Result<PathBuf> {
        match (&self.weights, &self.model) {
            (Some(path), _) => Ok(path.clone()),
            (None, Some(name)) => Ok(crate::fetch::resolve_model(name, &|| false)?),
            (None, None) => anyhow::bail!("give --weights PATH or --model NAME"),
        }
    }

    /// Resolves the device and loads the model onto it, in `precision` (default: fp16 on CUDA,
    /// fp32 on the CPU).
    pub fn load(
        &self,
        device: DeviceChoice,
        precision: Option<PrecisionArg>,
    ) -> anyhow::Result<LoadedClip> {
        let device = device.resolve()?;
        let path = self.path()?;
        let precision = precision.map_or(Precision::for_device(device), Precision::from);
        LoadedClip::load_with(&path, device, precision, &|| false)
            .with_context(|| format!("loading the CLIP model from {}", path.display()))
    }
}

/// Negative prompts, as `clip generate` and the experiment binaries take them.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct NegativeArgs {
    /// A negative prompt: the loss adds --negative-weight × the image's mean similarity with the
    /// negatives, pushing it away from them; repeat for several (replaces a model crate's
    /// NEGATIVE_PROMPTS).
    #[arg(long = "negative", value_name = "TEXT", allow_hyphen_values = true)]
    pub negatives: Vec<String>,
    /// The weight of the negatives' mean similarity in the loss, >= 0 (default 0.5, or a model
    /// crate's NEGATIVE_WEIGHT).
    #[arg(long, value_name = "W", value_parser = crate::request::parse::parse_negative_weight,
          allow_hyphen_values = true)]
    pub negative_weight: Option<f64>,
}

/// A request the flags make that cannot be carried out (the same model twice, a count that does
/// not match, a file that is not what the flag needs): the binaries print it as one `error:` line
/// naming the flag and exit with status 2, as for a malformed flag, before writing anything.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Whether `err` or one of its causes is a [`UsageError`].
pub fn is_usage_error(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| cause.is::<UsageError>() || cause.is::<crate::request::RequestError>())
}

/// Exit status of a usage error (clap's).
pub const USAGE_EXIT: u8 = 2;

/// `--precision`.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrecisionArg {
    Fp16,
    Fp32,
}

impl From<PrecisionArg> for Precision {
    fn from(p: PrecisionArg) -> Self {
        match p {
            PrecisionArg::Fp16 => Precision::Fp16,
            PrecisionArg::Fp32 => Precision::Fp32,
        }
    }
}
