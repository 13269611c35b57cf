//! OpenAI's CLIP on libtorch, and CLIP-guided image optimisation, in two layers:
//!
//! - [`clip`] — CLIP itself: the models, strict weight loading, the released models' table, the
//!   BPE tokenizer and image preprocessing. Mirrors OpenAI's `clip` package.
//! - [`engine`] — the optimisation engine: parameterisations, augmentation pipelines, objectives,
//!   Adam, the loop and its executor (CUDA graphs). A library: no progress bars, signal handlers
//!   or file names; anything that drives it (the binaries, `clip generate`, sweeps, Python) does.
//!
//! Neither prints: downloads report through a callback (`download::Watch`), the loop through its
//! statistics. The applications — the experiment binaries' driver, the `clip` tool, outputs,
//! progress, Ctrl-C, reports, sweeps — are the `clip-app` crate.
pub mod clip;
pub mod engine;
mod text_serde;
