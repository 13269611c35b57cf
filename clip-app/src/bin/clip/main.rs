//! `clip`: OpenAI's CLIP from the command line — embeddings, similarity scores, token ids, and the
//! cross-model comparison of the experiment's results, zero-shot classification, and the
//! optimisation step's benchmark.

mod bench;
mod classify;
mod compare;
mod embed;
mod generate;
mod score;
mod tokenize;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(
    name = "clip",
    version,
    about = "OpenAI's CLIP on libtorch: embed, score, tokenize, generate, sweep, compare, classify, bench"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print raw image and text embeddings (encode_image / encode_text) as one JSON object.
    Embed(embed::EmbedArgs),
    /// Print the cosine similarity of an image and a text (the seed's "Final Similarity").
    Score(score::ScoreArgs),
    /// Print the 77 token ids of each text, one JSON array per line (clip.tokenize).
    Tokenize(tokenize::TokenizeArgs),
    /// Score every result (and real photos) under every model; write transfer.csv, three
    /// pictures and report.md into the results directory.
    Compare(compare::CompareArgs),
    /// Optimise images for prompts with any parameterisation, augmentation pipeline and canvas,
    /// from the seed's presets; outputs as the experiment binaries'.
    Generate(Box<clip_app::generate::GenerateArgs>),
    /// Zero-shot classification (ImageNet's classes or your own): one JSON line per image with
    /// its K most probable classes.
    Classify(Box<clip_app::classify::ClassifyArgs>),
    /// Run a grid of generations from a TOML SPEC (the product of its axes): batched, resumable,
    /// sharded, on every local GPU or as a Slurm job array.
    Sweep(Box<clip_app::sweep::SweepArgs>),
    /// Time the optimisation step (random weights) per architecture, mode and number of prompts:
    /// ms per step, prompt-steps/s, peak memory, ratio to the FLOP floor.
    Bench(bench::BenchArgs),
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let done = |r: anyhow::Result<()>| r.map(|()| ExitCode::SUCCESS);
    match cli.command {
        Command::Embed(args) => done(embed::run(&args)),
        Command::Score(args) => done(score::run(&args)),
        Command::Tokenize(args) => done(tokenize::run(&args)),
        Command::Compare(args) => done(compare::run(&args)),
        Command::Generate(args) => generate::run(&args),
        Command::Classify(args) => done(classify::run(&args)),
        Command::Sweep(args) => clip_app::sweep::main(&args),
        Command::Bench(args) => done(bench::run(&args)),
    }
}

fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let mut cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    // `clip generate`'s models are an ordered list across two flags.
    if let (Command::Generate(args), Some(("generate", sub))) =
        (&mut cli.command, matches.subcommand())
    {
        args.order_models(sub);
    }
    // libtorch errors (tch panics) become `error: …` lines too.
    clip_app::interrupt::run_main(|| run(cli))
}
