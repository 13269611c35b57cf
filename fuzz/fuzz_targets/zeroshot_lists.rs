//! `clip classify --labels FILE` and `--templates FILE`: a file's text through `Labels::parse` and
//! `Templates::parse`. Must hold: a list or an error, never a panic; every accepted template,
//! written back from its pieces (braces doubled, the class name as `{0}`), reads as the same pieces,
//! and filling it puts the class name in once per replacement field.
#![no_main]

use clip_core::clip::zeroshot::{template_pieces, Labels, Piece, Templates};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(labels) = Labels::parse("fuzz", text) {
        assert!(labels.names.iter().all(|n| !n.trim().is_empty() && n.trim() == n));
    }
    let Ok(templates) = Templates::parse("fuzz", text) else { return };
    for template in &templates.templates {
        let pieces = template_pieces(template).expect("an accepted template has pieces");
        let written: String = pieces
            .iter()
            .map(|p| match p {
                Piece::Text(t) => t.replace('{', "{{").replace('}', "}}"),
                Piece::Name => "{0}".to_string(),
            })
            .collect();
        assert_eq!(template_pieces(&written).as_ref(), Ok(&pieces), "{written:?} of {template:?}");
        let fields = pieces.iter().filter(|p| **p == Piece::Name).count();
        let filled = Templates::fill(template, "\u{1}");
        assert_eq!(filled.matches('\u{1}').count(), fields + template.matches('\u{1}').count());
    }
});
