//! The optimisation engine, composed of small parts that never touch the loop (as Lucent's
//! `render_vis(model, objective, param, optimizer, transforms)`):
//!
//! - `param` — parameterisations: the learnable tensor and its rendering to an image;
//! - `augment/` — augmentation pipelines, each step's random views of the image;
//! - `objective` — what is minimised: 1 − cosine per prompt, averaged over its views, plus TV;
//! - `adam` — the optimiser; `draws` — where random numbers come from (seeded, recorded, replayed);
//! - `optimize` — the loop, its settings and the seed's presets;
//! - `executor` and `cuda_graph` — eager steps, or one captured CUDA graph replayed per step.
//!
//! A library: no progress bars, signal handlers or file names; the binaries, `clip generate`,
//! sweeps and bindings drive it through `optimize::optimize_until` with callbacks.
pub mod adam;
pub mod augment;
pub mod cuda_graph;
pub mod draws;
pub mod executor;
pub mod objective;
pub mod optimize;
pub mod param;
