//! An augmentation pipeline as `--augment` flags (and the SPEC's `augment` lists) give it: the text
//! split on whitespace, each part through `Augment::parse`. Must hold: a pipeline or an error,
//! never a panic; every augmentation accepted prints as text that reads back as itself; its view
//! size on any canvas is a size or an error.
#![no_main]

use clip_core::engine::augment::{parse_pipeline, view_size, views_per_image, Augment};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let specs: Vec<&str> = text.split_whitespace().collect();
    let Ok(pipeline) = parse_pipeline(&specs) else { return };
    for augment in &pipeline {
        let shown = augment.to_string();
        let again: Augment = shown.parse().expect("an augmentation's text reads back");
        assert_eq!(&again, augment, "{shown} reads back as itself");
    }
    let _ = views_per_image(&pipeline);
    for canvas in [(1, 1), (224, 224), (37, 1000), (8192, 8192)] {
        let _ = view_size(&pipeline, canvas, 224);
    }
});
