//! `clip classify`: zero-shot classification, one JSON line per image with its K most probable
//! classes. The logic is `clip_app::classify` (flags, order of work, output) over
//! `clip_core::clip::zeroshot` (lists, class weights and their cache, probabilities).

use clip_app::classify::{self, ClassifyArgs};
use clip_app::interrupt;

/// Runs the classification; Ctrl-C stops it between batches of texts or images (status 130,
/// nothing printed).
pub fn run(args: &ClassifyArgs) -> anyhow::Result<()> {
    interrupt::install();
    classify::run(args)
}
