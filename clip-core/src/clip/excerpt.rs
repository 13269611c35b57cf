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

#[cfg(test)]
mod tests {
    use super::*;

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
