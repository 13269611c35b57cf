//! `clip score`: the cosine similarity of one image and one text, as the seed's final check computes
//! it (the image preprocessed, both embeddings normalised).

use anyhow::Context;
use clip_app::cli::{PrecisionArg, WeightsArgs};
use clip_app::device::DeviceChoice;
use clip_core::clip::excerpt::excerpt;
use clip_core::clip::score;
use clip_core::clip::tokenizer::Tokenizer;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct ScoreArgs {
    #[command(flatten)]
    pub weights: WeightsArgs,
    /// Where the model runs: cpu, cuda or auto.
    #[arg(long, value_enum, default_value_t = DeviceChoice::Auto)]
    pub device: DeviceChoice,
    /// The model's precision (default: fp16 on CUDA, fp32 on the CPU, as clip.load).
    #[arg(long, value_enum, value_name = "fp16|fp32")]
    pub precision: Option<PrecisionArg>,
    /// The image to score.
    #[arg(long, value_name = "FILE")]
    pub image: PathBuf,
    /// The text to score it against.
    #[arg(long, value_name = "TEXT", allow_hyphen_values = true)]
    pub text: String,
}

pub fn run(args: &ScoreArgs) -> anyhow::Result<()> {
    let tokens = Tokenizer::new()?.tokenize(&[&args.text], false)?;
    let loaded = args.weights.load(args.device, args.precision)?;
    let model = &loaded.model;
    let texts = score::text_features(model, &tokens, loaded.vs.device());
    let similarity = score::score_file(model, &args.image, &texts)
        .with_context(|| format!("reading image {}", args.image.display()))?[0];
    eprintln!("image: {}  text: {}", args.image.display(), excerpt(&args.text));
    println!("{similarity}");
    Ok(())
}
