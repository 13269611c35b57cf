//! User text (prompts, labels, file contents) as it appears in errors, warnings and pictures: cut
//! to a readable length, so that a 120 KB prompt does not flood a terminal or a report.

/// Characters of a text shown in a message before it is cut.
pub const EXCERPT_CHARS: usize = 80;

/// `text` as Rust's `{:?}` quotes it when it has at most [`EXCERPT_CHARS`] characters; else its
/// first ones, quoted, followed by `… (N characters)`.
pub fn excerpt(text: &str) -> String {
    excerpt_to(text, EXCERPT_CHARS)
}

/// [`excerpt`] with another limit.
pub fn excerpt_to(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        None => format!("{text:?}"),
        Some((cut, _)) => {
            format!("{:?}… ({} characters)", &text[..cut], text.chars().count())
        }
    }
}

/// A number as messages show it: in full when short, else in scientific notation (`1e308`, not
/// 309 digits).
pub fn number(v: f64) -> String {
    let a = v.abs();
    if a != 0.0 && a.is_finite() && !(1e-6..1e16).contains(&a) {
        format!("{v:e}")
    } else {
        format!("{v}")
    }
}

/// `text` with its control characters made visible, so that writing it to a terminal, a CSV or
/// a Markdown table cannot ring, move the cursor or end the file early: NUL…US and DEL as their
/// Unicode control pictures (`␀`, `␛`, `␡`), C1 controls as `\u{85}`. Tab, line feed and carriage
/// return are kept when `keep_lines` (a CSV quotes them), else also shown as pictures.
pub fn visible(text: &str, keep_lines: bool) -> std::borrow::Cow<'_, str> {
    let shown = |c: char| c.is_control() && !(keep_lines && matches!(c, '\t' | '\n' | '\r'));
    if !text.chars().any(shown) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            c if !shown(c) => out.push(c),
            '\u{7f}' => out.push('\u{2421}'),
            c if (c as u32) < 0x20 => out.push(char::from_u32(0x2400 + c as u32).unwrap_or('?')),
            c => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
        }
    }
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_made_visible() {
        assert_eq!(visible("a dog", false), "a dog");
        assert_eq!(visible("a\0b\x1b[31mc\x7f", true), "a\u{2400}b\u{241b}[31mc\u{2421}");
        assert_eq!(visible("x\u{85}y", true), "x\\u{85}y");
        assert_eq!(visible("a\tb\nc\r", true), "a\tb\nc\r");
        assert_eq!(visible("a\tb\n", false), "a\u{2409}b\u{240a}");
    }

    #[test]
    fn short_texts_are_quoted_whole_and_long_ones_cut() {
        assert_eq!(excerpt("a dog"), "\"a dog\"");
        let long = "é".repeat(120_000);
        let shown = excerpt(&long);
        assert!(shown.starts_with(&format!("\"{}\"…", "é".repeat(80))), "{shown}");
        assert!(shown.ends_with("(120000 characters)"), "{shown}");
        assert_eq!(excerpt_to("abcd", 4), "\"abcd\"");
        assert_eq!(excerpt_to("abcde", 4), "\"abcd\"… (5 characters)");
    }
}
