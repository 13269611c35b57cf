//! `clip tokenize`: print the ids `clip.tokenize` gives each text, one JSON array per line.
use anyhow::Context;
use clip_core::clip::tokenizer::Tokenizer;
use std::io::Write;

/// Tokenize texts as `clip.tokenize` does: 77 ids each, `<|startoftext|>` first, zero-padded.
#[derive(clap::Args, Debug)]
pub struct TokenizeArgs {
    /// Cut texts longer than 77 tokens (keeping `<|endoftext|>` last) instead of failing.
    #[arg(long)]
    pub truncate: bool,
    /// The texts; put them after `--` when one may begin with `-`.
    // Not `allow_hyphen_values`: it would also swallow a `--truncate` placed after the texts.
    // Without it, `-word` before `--` is a loud clap error with a tip to use `--`.
    pub texts: Vec<String>,
}

/// Encodes every text first, so that a too-long text prints nothing at all.
pub fn run(args: &TokenizeArgs) -> anyhow::Result<()> {
    let tokenizer = Tokenizer::new().context("loading the CLIP tokenizer")?;
    let mut lines = Vec::with_capacity(args.texts.len());
    for text in &args.texts {
        let ids = tokenizer.encode(text, args.truncate)?;
        lines.push(serde_json::to_string(&ids)?);
    }
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for line in &lines {
        writeln!(out, "{line}").context("writing to stdout")?;
    }
    out.flush().context("writing to stdout")?;
    Ok(())
}
