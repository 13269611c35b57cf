//! `cargo run -p rn50 --bin constrained`: the seed's constrained run with RN50 — augmented views (RandomAffine + flip) and a TV penalty; keeps the best image.
//! Outputs go to `results/RN50/`; the binary prints and records its model, since the three
//! model crates' `constrained` binaries share one path in `target/<profile>/`.

use clip_core::engine::optimize::Preset;

const PRESET: Preset = Preset::Constrained;

fn main() -> std::process::ExitCode {
    clip_app::experiment::main(&rn50::EXPERIMENT, PRESET)
}
