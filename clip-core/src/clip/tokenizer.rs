//! CLIP's byte-level BPE tokenizer: mirrors `clip/simple_tokenizer.py` (`basic_clean`,
//! `whitespace_clean`, `SimpleTokenizer.encode`) and `clip.tokenize` of OpenAI's `clip` package,
//! on the `tokenizers` crate's BPE model with OpenAI's vocabulary `bpe_simple_vocab_16e6.txt.gz`
//! (vendored in `clip-core/assets/`, MIT, see `assets/LICENSE-clip`).
//!
//! The pipeline is the reference's, step by step: `ftfy.fix_text` (ported in [`ftfy`]),
//! `html.unescape` twice, strip, `\s+` → one space, strip, `str.lower`, the regex split, each
//! piece's UTF-8 bytes mapped by `bytes_to_unicode`, BPE with `</w>` on the last symbol, and
//! `[<|startoftext|>] + ids + [<|endoftext|>]` zero-padded to 77. The two marker strings typed
//! literally (in any case) become their special ids, as in the reference.
//!
//! Unicode data: the regex classes (`\p{L}`, `\p{N}`, `\s` under `re.IGNORECASE`), `str.lower`,
//! `str.isspace` and ftfy's tables are generated from the reference environment
//! (`scripts/make_tokenizer_tables.py` → `tokenizer/tables.rs`), so they match Python 3.11
//! (Unicode 14) and the `regex` module exactly. Known differences, all on characters outside what
//! people type in prompts:
//! - NFC comes from the `unicode-normalization` crate (a newer Unicode); characters unassigned in
//!   Unicode 14 are kept out of it, which makes it Python's NFC as long as the crate agrees with
//!   Python on Unicode 14 characters (Unicode's stability policy; checked on every codepoint when
//!   this was written: the 110 differences were all characters added later).
//! - The final-sigma rule of `str.lower` uses Rust's `Cased`/`Case_Ignorable` tables, and ftfy's
//!   ANSI-escape pattern uses Rust's `\d`; both differ from Python only for characters added after
//!   Unicode 14.
//! - `html.unescape` of a numeric entity with more than 4 300 digits raises in Python (its
//!   integer-parsing limit); here it decodes to U+FFFD.
//! - Python strings may hold lone surrogates, Rust strings cannot; ftfy's `fix_surrogates` is moot.
//!
//! Too long texts: `clip.tokenize` raises `RuntimeError` unless `truncate=True`, where it keeps the
//! first 77 ids and overwrites the last with `<|endoftext|>`.
mod ftfy;
#[rustfmt::skip]
mod tables;

use crate::clip::excerpt::excerpt;
use regex::Regex;
use std::io::Read;
use std::sync::Arc;
use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::Model;

/// Number of token ids per text, markers and padding included.
pub const CONTEXT_LENGTH: usize = 77;
/// Id of `<|startoftext|>`.
pub const START_OF_TEXT: i64 = 49406;
/// Id of `<|endoftext|>`.
pub const END_OF_TEXT: i64 = 49407;
/// Size of the vocabulary: every id is below it.
pub const VOCAB_SIZE: i64 = 49408;

const START_OF_TEXT_STR: &str = "<|startoftext|>";
const END_OF_TEXT_STR: &str = "<|endoftext|>";
/// OpenAI's merges, gzipped, as shipped in the `clip` package.
const VOCAB_GZ: &[u8] = include_bytes!("../../assets/bpe_simple_vocab_16e6.txt.gz");
/// `merges[1:49152-256-2+1]` in the reference: the first line is a version header.
const MERGES: usize = 49152 - 256 - 2;

#[derive(Debug, thiserror::Error)]
pub enum TokenizeError {
    /// `prompt` is the whole text; the message shows an excerpt of it, so that a 120 KB text
    /// does not flood a terminal or a report.
    #[error(
        "Input {} is too long for context length {context_length} (it has {tokens} tokens); \
         shorten it or tokenize with truncation",
        excerpt(prompt)
    )]
    TooLong { prompt: String, tokens: usize, context_length: usize },
    #[error("CLIP vocabulary (bpe_simple_vocab_16e6.txt.gz): {0}")]
    Vocabulary(String),
    #[error(
        "no BPE token for the piece {} of input {}: {reason}",
        excerpt(piece),
        excerpt(prompt)
    )]
    Bpe { prompt: String, piece: String, reason: String },
}

struct Inner {
    bpe: BPE,
    split: Regex,
    byte_encoder: [char; 256],
}

/// CLIP's tokenizer; cloning shares the vocabulary.
#[derive(Clone)]
pub struct Tokenizer {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer").finish_non_exhaustive()
    }
}

/// The reference's `bytes_to_unicode`: printable bytes map to themselves, the others to U+0100….
fn bytes_to_unicode() -> [char; 256] {
    let printable = |b: u8| matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
    let mut table = ['\0'; 256];
    let mut n = 0;
    for b in 0..=255u8 {
        table[usize::from(b)] = if printable(b) {
            char::from(b)
        } else {
            n += 1;
            char::from_u32(255 + n).unwrap_or('\0')
        };
    }
    table
}

/// The order of `bytes_to_unicode().values()`: printable bytes first, then the others.
fn byte_symbols(byte_encoder: &[char; 256]) -> Vec<char> {
    let (printable, other): (Vec<char>, Vec<char>) =
        byte_encoder.iter().partition(|&&c| u32::from(c) < 256);
    printable.into_iter().chain(other).collect()
}

/// A regex class of the characters equal to `letter` under `re.IGNORECASE` (`s` also matches `ſ`).
fn fold(letter: char) -> String {
    let chars = tables::FOLD.iter().find(|(c, _)| *c == letter).map_or("", |(_, s)| s);
    let body: String = chars.chars().map(|c| format!("\\x{{{:X}}}", u32::from(c))).collect();
    format!("[{body}]")
}

/// The reference's pattern, with every `re.IGNORECASE` equivalence spelled out.
fn split_pattern() -> String {
    let literal = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_lowercase() {
                    fold(c)
                } else {
                    format!("\\x{{{:X}}}", u32::from(c))
                }
            })
            .collect()
    };
    let mut alternatives = vec![literal(START_OF_TEXT_STR), literal(END_OF_TEXT_STR)];
    alternatives.extend(["'s", "'t", "'re", "'ve", "'m", "'ll", "'d"].map(literal));
    alternatives.push(format!("[{}]+", tables::TOK_LETTER));
    alternatives.push(format!("[{}]", tables::TOK_NUMBER));
    alternatives.push(format!("[{}]+", tables::TOK_OTHER));
    alternatives.join("|")
}

/// Python's `str.strip()`.
fn py_strip(text: &str) -> &str {
    let space = py_isspace();
    text.trim_matches(|c: char| space.is_match(c.encode_utf8(&mut [0; 4])))
}

fn py_isspace() -> &'static Regex {
    static SPACE: std::sync::OnceLock<Regex> = std::sync::OnceLock::new();
    SPACE.get_or_init(|| {
        Regex::new(&format!("^[{}]$", tables::PY_ISSPACE))
            .unwrap_or_else(|e| panic!("generated class does not compile: {e}"))
    })
}

/// Python's `str.lower()` (Unicode 14), final sigma included.
fn py_lower(text: &str) -> String {
    let table = tables::LOWER;
    // Σ's context rule is Rust's (same rule); walk Rust's lower-casing alongside to read it off.
    let rust = if text.contains('Σ') { text.to_lowercase() } else { String::new() };
    let mut rust_chars = rust.chars();
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c == 'Σ' {
            out.push(rust_chars.next().unwrap_or('σ'));
            continue;
        }
        for _ in c.to_lowercase() {
            rust_chars.next();
        }
        match table.binary_search_by_key(&c, |(k, _)| *k) {
            Ok(i) => out.push_str(table[i].1),
            Err(_) => out.push(c),
        }
    }
    out
}

/// `whitespace_clean(basic_clean(text)).lower()`, as `SimpleTokenizer.encode` cleans its input.
pub fn clean_text(text: &str) -> String {
    let fixed = ftfy::fix_text(text);
    let once = ftfy::html_unescape(&fixed).into_owned();
    let twice = ftfy::html_unescape(&once);
    let basic = py_strip(&twice);
    let whitespace = whitespace_regex();
    let collapsed = whitespace.replace_all(basic, " ");
    py_lower(py_strip(&collapsed))
}

fn whitespace_regex() -> &'static Regex {
    static WS: std::sync::OnceLock<Regex> = std::sync::OnceLock::new();
    WS.get_or_init(|| {
        Regex::new(&format!("[{}]+", tables::TOK_SPACE))
            .unwrap_or_else(|e| panic!("generated class does not compile: {e}"))
    })
}

impl Tokenizer {
    /// Builds the tokenizer from the vocabulary embedded in the crate (a few tens of ms).
    pub fn new() -> Result<Self, TokenizeError> {
        let vocab_err = |e: &dyn std::fmt::Display| TokenizeError::Vocabulary(e.to_string());
        let mut text = String::new();
        flate2::read::GzDecoder::new(VOCAB_GZ)
            .read_to_string(&mut text)
            .map_err(|e| vocab_err(&e))?;
        let merges: Vec<(String, String)> = text
            .split('\n')
            .skip(1)
            .take(MERGES)
            .map(|line| {
                let mut parts = line.split_whitespace();
                match (parts.next(), parts.next(), parts.next()) {
                    (Some(a), Some(b), None) => Ok((a.to_owned(), b.to_owned())),
                    _ => Err(TokenizeError::Vocabulary(format!("bad merge line {line:?}"))),
                }
            })
            .collect::<Result<_, _>>()?;
        if merges.len() != MERGES {
            return Err(TokenizeError::Vocabulary(format!(
                "{} merges, want {MERGES}",
                merges.len()
            )));
        }
        let byte_encoder = bytes_to_unicode();
        let symbols = byte_symbols(&byte_encoder);
        let mut words: Vec<String> = symbols.iter().map(|c| c.to_string()).collect();
        words.extend(symbols.iter().map(|c| format!("{c}</w>")));
        words.extend(merges.iter().map(|(a, b)| format!("{a}{b}")));
        words.extend([START_OF_TEXT_STR.to_owned(), END_OF_TEXT_STR.to_owned()]);
        let vocab: Vocab = words.into_iter().enumerate().map(|(i, w)| (w, i as u32)).collect();
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .end_of_word_suffix("</w>".to_owned())
            .build()
            .map_err(|e| vocab_err(&e))?;
        let split = Regex::new(&split_pattern()).map_err(|e| vocab_err(&e))?;
        Ok(Self { inner: Arc::new(Inner { bpe, split, byte_encoder }) })
    }

    /// `[<|startoftext|>] + SimpleTokenizer.encode(text) + [<|endoftext|>]`, unpadded.
    fn ids(&self, text: &str) -> Result<Vec<i64>, TokenizeError> {
        let inner = &*self.inner;
        let cleaned = clean_text(text);
        let mut ids = vec![START_OF_TEXT];
        for piece in inner.split.find_iter(&cleaned) {
            let piece = piece.as_str();
            match piece {
                START_OF_TEXT_STR => ids.push(START_OF_TEXT),
                END_OF_TEXT_STR => ids.push(END_OF_TEXT),
                _ => {
                    let symbols: String =
                        piece.bytes().map(|b| inner.byte_encoder[usize::from(b)]).collect();
                    let tokens = inner.bpe.tokenize(&symbols).map_err(|e| TokenizeError::Bpe {
                        prompt: text.to_owned(),
                        piece: piece.to_owned(),
                        reason: e.to_string(),
                    })?;
                    ids.extend(tokens.iter().map(|t| i64::from(t.id)));
                }
            }
        }
        ids.push(END_OF_TEXT);
        Ok(ids)
    }

    /// 77 ids: `[SOT, bpe…, EOT, 0…]`. A text of more than 77 ids (markers included) is an error
    /// unless `truncate`, which keeps the first 76 and ends with `<|endoftext|>`.
    pub fn encode(&self, text: &str, truncate: bool) -> Result<Vec<i64>, TokenizeError> {
        let mut ids = self.ids(text)?;
        if ids.len() > CONTEXT_LENGTH {
            if !truncate {
                return Err(TokenizeError::TooLong {
                    prompt: text.to_owned(),
                    tokens: ids.len(),
                    context_length: CONTEXT_LENGTH,
                });
            }
            ids.truncate(CONTEXT_LENGTH);
            ids[CONTEXT_LENGTH - 1] = END_OF_TEXT;
        }
        ids.resize(CONTEXT_LENGTH, 0);
        Ok(ids)
    }

    /// `clip.tokenize(texts, truncate=truncate)`: a `[texts.len(), 77]` Int64 tensor on the CPU
    /// (the reference returns int32 on torch >= 1.8; the values are the same).
    pub fn tokenize<S: AsRef<str>>(
        &self,
        texts: &[S],
        truncate: bool,
    ) -> Result<tch::Tensor, TokenizeError> {
        let mut flat = Vec::with_capacity(texts.len() * CONTEXT_LENGTH);
        for text in texts {
            flat.extend(self.encode(text.as_ref(), truncate)?);
        }
        Ok(tch::Tensor::from_slice(&flat).view([texts.len() as i64, CONTEXT_LENGTH as i64]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_to_unicode_matches_reference_layout() {
        let t = bytes_to_unicode();
        assert_eq!(t[usize::from(b'!')], '!');
        assert_eq!(t[0], '\u{100}');
        assert_eq!(t[usize::from(b' ')], '\u{120}');
        assert_eq!(t[0xAD], '\u{143}');
        let symbols = byte_symbols(&t);
        assert_eq!(symbols[0], '!');
        assert_eq!(symbols[188], '\u{100}');
    }

    #[test]
    fn a_photo_of_a_dog() {
        let tok = Tokenizer::new().expect("tokenizer");
        // clip.tokenize("a photo of a dog")[0, :7]
        let ids = tok.encode("a photo of a dog", false).expect("encode");
        assert_eq!(&ids[..7], &[49406, 320, 1125, 539, 320, 1929, 49407]);
        assert!(ids[7..].iter().all(|&i| i == 0));
    }
}
