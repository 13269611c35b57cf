//! OpenAI's CLIP on libtorch, and CLIP-guided image optimisation, in three layers:
//!
//! - [`clip`] — CLIP itself: the models, strict weight loading, the released models' table, the
//!   BPE tokenizer and image preprocessing. Mirrors OpenAI's `clip` package.
//! - [`engine`] — the optimisation engine: parameterisations, augmentation pipelines, objectives,
//!   Adam, the loop and its executor (CUDA graphs). A library: no progress bars, signal handlers
//!   or file names; anything that drives it (the binaries, `clip generate`, sweeps, Python) does.
//! - [`app`] — the applications: the experiment binaries and `clip` subcommands, their flags,
//!   outputs, progress, Ctrl-C handling, comparison reports and benchmarks.
pub mod app;
pub mod clip;
pub mod engine;
