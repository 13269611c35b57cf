//! `Tokenizer::encode` on arbitrary UTF-8 text, with and without truncation: ids or a
//! `TooLong` error, never a panic; truncated output is always 77 ids ending a text with EOT.
#![no_main]

use clip_core::clip::tokenizer::Tokenizer;
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

static TOKENIZER: OnceLock<Tokenizer> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let tokenizer = TOKENIZER.get_or_init(|| Tokenizer::new().expect("the built-in tokenizer"));
    let _ = tokenizer.encode(text, false);
    let ids = tokenizer.encode(text, true).expect("truncation never fails");
    assert_eq!(ids.len(), 77);
    assert_eq!(ids[0], 49406, "starts with <|startoftext|>");
    assert!(ids.contains(&49407), "holds <|endoftext|>");
});
