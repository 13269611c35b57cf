//! `clip embed`: raw `encode_image` / `encode_text` outputs as JSON.

use anyhow::Context;
use clip_app::cli::{PrecisionArg, WeightsArgs};
use clip_app::device::DeviceChoice;
use clip_core::clip::score;
use clip_core::clip::tokenizer::Tokenizer;
use std::path::PathBuf;
use tch::{Kind, Tensor};

#[derive(clap::Args, Debug)]
pub struct EmbedArgs {
    #[command(flatten)]
    pub weights: WeightsArgs,
    /// Where the model runs: cpu, cuda or auto.
    #[arg(long, value_enum, default_value_t = DeviceChoice::Auto)]
    pub device: DeviceChoice,
    /// The model's precision (default: fp16 on CUDA, fp32 on the CPU, as clip.load).
    #[arg(long, value_enum, value_name = "fp16|fp32")]
    pub precision: Option<PrecisionArg>,
    /// An image to embed (repeatable; resized and centre-cropped like the reference's preprocess).
    #[arg(long = "image", value_name = "FILE")]
    pub images: Vec<PathBuf>,
    /// A text to embed (repeatable).
    #[arg(long = "text", value_name = "TEXT", allow_hyphen_values = true)]
    pub texts: Vec<String>,
}

#[derive(serde::Serialize)]
struct Embeddings {
    image: Vec<Vec<f32>>,
    text: Vec<Vec<f32>>,
}

fn rows(t: &Tensor) -> anyhow::Result<Vec<Vec<f32>>> {
    Ok(Vec::<Vec<f32>>::try_from(t.to_kind(Kind::Float).to_device(tch::Device::Cpu))?)
}

pub fn run(args: &EmbedArgs) -> anyhow::Result<()> {
    let tokens = if args.texts.is_empty() {
        None
    } else {
        Some(Tokenizer::new()?.tokenize(&args.texts, false)?)
    };
    let loaded = args.weights.load(args.device, args.precision)?;
    let model = &loaded.model;
    let device = loaded.vs.device();
    let pixels = args
        .images
        .iter()
        .map(|p| {
            score::file_pixels(model, p).with_context(|| format!("reading image {}", p.display()))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let image = if pixels.is_empty() {
        Vec::new()
    } else {
        rows(&score::image_features(model, &Tensor::stack(&pixels, 0), device))?
    };
    let text = match &tokens {
        Some(tokens) => rows(&score::text_features(model, tokens, device))?,
        None => Vec::new(),
    };
    // Serialised as f32 (shortest round-trip form), not widened to f64.
    println!("{}", serde_json::to_string(&Embeddings { image, text })?);
    Ok(())
}
