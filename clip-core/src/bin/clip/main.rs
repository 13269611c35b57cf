//! `clip`: command-line front end of clip-core (minimal: only the `tokenize` subcommand, to be merged
//! with the lead's main binary).
use clap::{Parser, Subcommand};

mod tokenize;

#[derive(Parser, Debug)]
#[command(name = "clip", about = "OpenAI's CLIP on libtorch")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print the 77 CLIP token ids of each text as one JSON array per line, like `clip.tokenize`.
    Tokenize(tokenize::TokenizeArgs),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Tokenize(args) => tokenize::run(&args),
    }
}
