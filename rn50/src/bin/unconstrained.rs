//! `cargo run -p rn50 --bin unconstrained`: the seed's unconstrained run with RN50 — no augmentation, no penalty; keeps the final image.
//! Outputs go to `results/RN50/`; the binary prints and records its model, since the three
//! model crates' `unconstrained` binaries share one path in `target/<profile>/`.

use clip_core::engine::optimize::Preset;

const PRESET: Preset = Preset::Unconstrained;

fn main() -> std::process::ExitCode {
    clip_app::experiment::main(&rn50::EXPERIMENT, PRESET)
}
