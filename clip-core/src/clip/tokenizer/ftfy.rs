//! ftfy 6.3.1's `fix_text` with its default `TextFixerConfig`, as CLIP's `basic_clean` calls it
//! (mirrors `ftfy/__init__.py`, `ftfy/fixes.py`, `ftfy/chardata.py`, `ftfy/badness.py` and
//! `ftfy/bad_codecs/*.py`), plus Python's `html.unescape` (`Lib/html/__init__.py`).
//!
//! This is a port, not a re-implementation: the same steps in the same order, the same heuristic
//! (`BADNESS_RE`, translated mechanically from the parsed Python pattern), the same codec tables.
//! All character data comes from the reference environment through the generated [`tables`]
//! module, so Unicode versions agree with Python 3.11 except where noted in `tokenizer.rs`.
//! Skipped, because a Rust `&str` cannot hold what they act on: `fix_surrogates` (no lone
//! surrogates in valid UTF-8).
use super::tables;
use regex::bytes::Regex as BytesRegex;
use regex::Regex;
use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;
use unicode_normalization::UnicodeNormalization;

/// `fix_text` cuts its input into segments this many characters long at most.
const MAX_DECODE_LENGTH: usize = 1_000_000;

/// A single-byte codec of `CHARMAP_ENCODINGS` (or windows-1252 itself).
struct Codec {
    name: &'static str,
    decode: [Option<char>; 256],
    /// The characters `possible_encoding` accepts, with their byte.
    encode: HashMap<char, u8>,
}

struct Data {
    badness: Regex,
    detector: Regex,
    strict_continuation: Regex,
    codecs: Vec<Codec>,
    windows_1252: [Option<char>; 256],
    altered_utf8: BytesRegex,
    lossy_utf8: BytesRegex,
    ftfy_entity: Regex,
    ftfy_entities: HashMap<&'static str, &'static str>,
    charref: Regex,
    html5: HashMap<&'static str, &'static str>,
    invalid_charrefs: HashMap<u32, char>,
    invalid_codepoints: HashSet<u32>,
    ansi: Regex,
    width: HashMap<char, &'static str>,
    ligatures: HashMap<char, &'static str>,
    control: HashSet<char>,
}

fn regex(pattern: &str) -> Regex {
    // The patterns are constants of this crate: a failure is a bug caught by every test.
    Regex::new(pattern).unwrap_or_else(|e| panic!("ftfy pattern does not compile: {e}"))
}

fn bytes_regex(pattern: &str) -> BytesRegex {
    BytesRegex::new(pattern).unwrap_or_else(|e| panic!("ftfy pattern does not compile: {e}"))
}

fn data() -> &'static Data {
    static DATA: OnceLock<Data> = OnceLock::new();
    DATA.get_or_init(|| {
        let codecs = tables::CODECS
            .iter()
            .filter(|(name, _)| *name != "windows-1252")
            .map(|&(name, decode)| {
                let mut encode: HashMap<char, u8> =
                    (0u8..0x80).filter(|&b| b != 0x1A).map(|b| (char::from(b), b)).collect();
                for b in (0x80..=0xFF).chain([0x1A]) {
                    if let Some(c) = decode[b] {
                        encode.entry(c).or_insert(b as u8);
                    }
                }
                Codec { name, decode, encode }
            })
            .collect();
        let windows_1252 = tables::CODECS
            .iter()
            .find(|(name, _)| *name == "windows-1252")
            .map(|(_, t)| *t)
            .unwrap_or([None; 256]);
        Data {
            badness: regex(tables::BADNESS),
            detector: regex(tables::UTF8_DETECTOR),
            strict_continuation: regex(tables::UTF8_CONTINUATION_STRICT),
            codecs,
            windows_1252,
            altered_utf8: bytes_regex(
                r"(?-u)[\xc2\xc3\xc5\xce\xd0\xd9][ ]|[\xe2\xe3][ ][\x80-\x84\x86-\x9f\xa1-\xbf]|[\xe0-\xe3][\x80-\x84\x86-\x9f\xa1-\xbf][ ]|[\xf0][ ][\x80-\xbf][\x80-\xbf]|[\xf0][\x80-\xbf][ ][\x80-\xbf]|[\xf0][\x80-\xbf][\x80-\xbf][ ]",
            ),
            lossy_utf8: bytes_regex(
                r"(?-u)[\xc2-\xdf][\x1a]|[\xc2-\xc3][?]|\xed[\xa0-\xaf][\x1a?]\xed[\xb0-\xbf][\x1a?\x80-\xbf]|\xed[\xa0-\xaf][\x1a?\x80-\xbf]\xed[\xb0-\xbf][\x1a?]|[\xe0-\xef][\x1a?][\x1a\x80-\xbf]|[\xe0-\xef][\x1a\x80-\xbf][\x1a?]|[\xf0-\xf4][\x1a?][\x1a\x80-\xbf][\x1a\x80-\xbf]|[\xf0-\xf4][\x1a\x80-\xbf][\x1a?][\x1a\x80-\xbf]|[\xf0-\xf4][\x1a\x80-\xbf][\x1a\x80-\xbf][\x1a?]|\x1a",
            ),
            ftfy_entity: regex(r"&#?[0-9A-Za-z]{1,24};"),
            ftfy_entities: tables::FTFY_ENTITIES.iter().copied().collect(),
            charref: regex(r"&(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\x0C <&#;]{1,32};?)"),
            html5: tables::HTML5.iter().copied().collect(),
            invalid_charrefs: tables::INVALID_CHARREFS.iter().copied().collect(),
            invalid_codepoints: tables::INVALID_CODEPOINTS.iter().copied().collect(),
            ansi: regex(r"\x1b\[((?:\d|;)*)([a-zA-Z])"),
            width: tables::WIDTH.iter().copied().collect(),
            ligatures: tables::LIGATURES.iter().copied().collect(),
            control: tables::CONTROL.iter().filter_map(|&c| char::from_u32(c)).collect(),
        }
    })
}

/// `ftfy.fix_text(text)` with the default configuration.
pub fn fix_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut unescape_html = true; // "auto", turned off for good by the first segment with '<'
    for line in text.split_inclusive('\n') {
        let mut rest = line;
        while !rest.is_empty() {
            let cut = rest.char_indices().nth(MAX_DECODE_LENGTH).map_or(rest.len(), |(i, _)| i);
            let (segment, tail) = rest.split_at(cut);
            if segment.contains('<') {
                unescape_html = false;
            }
            out.push_str(&fix_segment(segment, unescape_html));
            rest = tail;
        }
    }
    out
}

/// `fix_and_explain`: apply every fixer until the text stops changing.
fn fix_segment(text: &str, unescape_html: bool) -> String {
    let d = data();
    let mut text = text.to_owned();
    loop {
        let orig = text.clone();
        if unescape_html {
            text = ftfy_unescape_html(&text);
        }
        text = fix_encoding(&text);
        text = fix_c1_controls(&text);
        text = translate(&text, &d.ligatures);
        text = translate(&text, &d.width);
        text = uncurl_quotes(&text);
        text = fix_line_breaks(&text);
        text = d.ansi.replace_all(&text, "").into_owned();
        text.retain(|c| !d.control.contains(&c));
        text = nfc(&text);
        if text == orig {
            return text;
        }
    }
}

/// `unicodedata.normalize("NFC", text)` as of Python's Unicode: characters unassigned there are
/// inert starters, so NFC runs only between them (the crate knows a newer Unicode).
fn nfc(text: &str) -> String {
    let unassigned = |c: char| {
        let cp = u32::from(c);
        tables::UNASSIGNED
            .binary_search_by(|&(lo, hi)| {
                if hi < cp {
                    std::cmp::Ordering::Less
                } else if lo > cp {
                    std::cmp::Ordering::Greater
                } else {
                    std::cmp::Ordering::Equal
                }
            })
            .is_ok()
    };
    let mut out = String::with_capacity(text.len());
    let mut start = 0;
    for (i, c) in text.char_indices() {
        if unassigned(c) {
            out.extend(text[start..i].nfc());
            out.push(c);
            start = i + c.len_utf8();
        }
    }
    out.extend(text[start..].nfc());
    out
}

fn translate(text: &str, map: &HashMap<char, &str>) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match map.get(&c) {
            Some(s) => out.push_str(s),
            None => out.push(c),
        }
    }
    out
}

fn uncurl_quotes(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '\u{201c}'..='\u{201f}' => '"',
            '\u{02bc}' | '\u{2018}'..='\u{201b}' => '\'',
            c => c,
        })
        .collect()
}

fn fix_line_breaks(text: &str) -> String {
    text.replace("\r\n", "\n").replace(['\r', '\u{2028}', '\u{2029}', '\u{85}'], "\n")
}

/// ftfy's `unescape_html`: entities with a `;` only, plus some upper-cased names.
fn ftfy_unescape_html(text: &str) -> String {
    let d = data();
    d.ftfy_entity
        .replace_all(text, |caps: &regex::Captures| {
            let m = &caps[0];
            if let Some(v) = d.ftfy_entities.get(m) {
                (*v).to_owned()
            } else if m.starts_with("&#") {
                let unescaped = html_unescape(m);
                if unescaped.contains(';') {
                    m.to_owned()
                } else {
                    unescaped.into_owned()
                }
            } else {
                m.to_owned()
            }
        })
        .into_owned()
}

/// Python's `html.unescape`.
pub fn html_unescape(text: &str) -> Cow<'_, str> {
    if !text.contains('&') {
        return Cow::Borrowed(text);
    }
    let d = data();
    d.charref.replace_all(text, |caps: &regex::Captures| {
        let s = &caps[1];
        if let Some(num) = s.strip_prefix('#') {
            let (digits, radix) = match num.strip_prefix(['x', 'X']) {
                Some(hex) => (hex, 16),
                None => (num, 10),
            };
            // Python's int() is unbounded; anything past U+10FFFF ends the same way.
            let num = digits.trim_end_matches(';').chars().fold(0u32, |acc, c| {
                let v = c.to_digit(radix).unwrap_or(0);
                acc.saturating_mul(radix).saturating_add(v).min(0x11_0000)
            });
            if let Some(c) = d.invalid_charrefs.get(&num) {
                return c.to_string();
            }
            if (0xD800..=0xDFFF).contains(&num) || num > 0x10_FFFF {
                return '\u{FFFD}'.to_string();
            }
            if d.invalid_codepoints.contains(&num) {
                return String::new();
            }
            return char::from_u32(num).map(String::from).unwrap_or_default();
        }
        if let Some(v) = d.html5.get(s) {
            return (*v).to_owned();
        }
        // the longest entity name that is a prefix (of at least 2 characters)
        let bounds: Vec<usize> = s.char_indices().map(|(i, _)| i).collect();
        for &end in bounds.iter().skip(2).rev() {
            if let Some(v) = d.html5.get(&s[..end]) {
                return format!("{v}{}", &s[end..]);
            }
        }
        format!("&{s}")
    })
}

fn is_bad(text: &str) -> bool {
    data().badness.is_match(text)
}

/// `ftfy.fix_encoding`: undo mojibake one layer at a time.
fn fix_encoding(text: &str) -> String {
    let mut text = text.to_owned();
    loop {
        let fixed = fix_encoding_one_step(&text);
        if fixed == text {
            return text;
        }
        text = fixed;
    }
}

fn fix_encoding_one_step(text: &str) -> String {
    let d = data();
    if text.is_ascii() || !is_bad(text) {
        return text.to_owned();
    }
    let mut possible_latin_1 = false;
    for codec in &d.codecs {
        let Some(mut bytes) = encode(text, codec) else { continue };
        possible_latin_1 |= codec.name == "latin-1";
        if codec.name != "macroman" && d.altered_utf8.is_match(&bytes) {
            bytes = restore_byte_a0(&bytes);
        }
        if codec.name.starts_with("sloppy") {
            bytes = d.lossy_utf8.replace_all(&bytes, "\u{FFFD}".as_bytes()).into_owned();
        }
        let decoded = if bytes.contains(&0xED) || bytes.contains(&0xC0) {
            decode_utf8_variants(&bytes)
        } else {
            String::from_utf8(bytes).ok()
        };
        if let Some(fixed) = decoded {
            return fixed;
        }
    }
    if find_utf8_mojibake(text, 0).is_some() {
        let fixed = decode_inconsistent_utf8(text);
        if fixed != text {
            return fixed;
        }
    }
    // ftfy also checks for "windows-1252" among the possible encodings, which never holds: only
    // the sloppy variant is in its list.
    if possible_latin_1 {
        let strict: Option<String> =
            text.chars().map(|c| d.windows_1252[c as u32 as usize]).collect();
        if let Some(fixed) = strict {
            if fixed != text {
                return fixed;
            }
        }
    }
    if text.chars().any(is_c1) {
        return fix_c1_controls(text);
    }
    text.to_owned()
}

fn encode(text: &str, codec: &Codec) -> Option<Vec<u8>> {
    text.chars().map(|c| codec.encode.get(&c).copied()).collect()
}

fn is_c1(c: char) -> bool {
    ('\u{80}'..='\u{9f}').contains(&c)
}

fn fix_c1_controls(text: &str) -> String {
    let sloppy_1252 = data().codecs.iter().find(|c| c.name == "sloppy-windows-1252");
    text.chars()
        .map(|c| match sloppy_1252 {
            Some(codec) if is_c1(c) => codec.decode[c as u32 as usize].unwrap_or(c),
            _ => c,
        })
        .collect()
}

/// `restore_byte_a0`: a 0xA0 byte that became a space inside a UTF-8 sequence.
fn restore_byte_a0(bytes: &[u8]) -> Vec<u8> {
    // A_GRAVE_WORD_RE = b"\xc3 (?! |quele|quela|quilo|s )" -> b"\xc3\xa0 "
    let mut out = Vec::with_capacity(bytes.len() + 4);
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == 0xC3 && bytes.get(i + 1) == Some(&b' ') {
            let after = &bytes[i + 2..];
            let excluded = [&b" "[..], b"quele", b"quela", b"quilo", b"s "]
                .iter()
                .any(|p| after.starts_with(p));
            if !excluded {
                out.extend_from_slice(b"\xc3\xa0 ");
                i += 2;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    data()
        .altered_utf8
        .replace_all(&out, |caps: &regex::bytes::Captures| {
            caps[0].iter().map(|&b| if b == b' ' { 0xA0 } else { b }).collect::<Vec<u8>>()
        })
        .into_owned()
}

/// The `utf-8-variants` codec: UTF-8 plus CESU-8 surrogate pairs and Java's `C0 80` for NUL.
fn decode_utf8_variants(bytes: &[u8]) -> Option<String> {
    let n = bytes.len();
    // `$` in a Python bytes pattern also matches before a final b"\n".
    let at_end = |i: usize| i == n || (i + 1 == n && bytes[i] == b'\n');
    let special = |i: usize| match bytes[i] {
        0xC0 => at_end(i + 1) || bytes[i + 1] == 0x80,
        0xED => at_end(i + 1) || (0xA0..=0xBF).contains(&bytes[i + 1]),
        _ => false,
    };
    let mut out = String::with_capacity(n);
    let mut p = 0;
    while p < n {
        let Some(q) = (p..n).find(|&i| special(i)) else {
            out.push_str(std::str::from_utf8(&bytes[p..]).ok()?);
            break;
        };
        if q > p {
            out.push_str(std::str::from_utf8(&bytes[p..q]).ok()?);
            p = q;
            continue;
        }
        let rest = &bytes[p..];
        if rest[0] == 0xC0 {
            if rest.len() > 1 {
                out.push('\0');
                p += 2;
            } else {
                return None;
            }
        } else if rest.len() < 6 {
            out.push_str(std::str::from_utf8(rest).ok()?);
            p = n;
        } else if (0xA0..=0xAF).contains(&rest[1])
            && (0x80..=0xBF).contains(&rest[2])
            && rest[3] == 0xED
            && (0xB0..=0xBF).contains(&rest[4])
            && ((0x80..=0xBF).contains(&rest[5]) || at_end(p + 5))
        {
            let cp = ((u32::from(rest[1]) & 0x0F) << 16)
                + ((u32::from(rest[2]) & 0x3F) << 10)
                + ((u32::from(rest[4]) & 0x0F) << 6)
                + (u32::from(rest[5]) & 0x3F)
                + 0x10000;
            out.push(char::from_u32(cp)?);
            p += 6;
        } else {
            return None;
        }
    }
    Some(out)
}

/// `UTF8_DETECTOR_RE.search(text, pos)`, with its lookbehind: no strict continuation character
/// just before the match.
fn find_utf8_mojibake(text: &str, mut pos: usize) -> Option<regex::Match<'_>> {
    let d = data();
    while pos <= text.len() {
        let m = d.detector.find_at(text, pos)?;
        let before = text[..m.start()].chars().next_back();
        match before {
            Some(c) if d.strict_continuation.is_match(c.encode_utf8(&mut [0; 4])) => {
                pos = m.start() + text[m.start()..].chars().next().map_or(1, char::len_utf8);
            }
            _ => return Some(m),
        }
    }
    None
}

/// `decode_inconsistent_utf8`: fix the mojibake pieces of a text that is not all mojibake.
fn decode_inconsistent_utf8(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    let mut pos = 0;
    while let Some(m) = find_utf8_mojibake(text, pos) {
        out.push_str(&text[last..m.start()]);
        let piece = m.as_str();
        if piece.len() < text.len() && is_bad(piece) {
            out.push_str(&fix_encoding(piece));
        } else {
            out.push_str(piece);
        }
        last = m.end();
        pos = m.end();
    }
    out.push_str(&text[last..]);
    out
}
