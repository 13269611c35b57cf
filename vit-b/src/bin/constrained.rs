//! `cargo run -p vit-b --bin constrained`: the seed's constrained run with ViT-B/32 — augmented views (RandomAffine + flip) and a TV penalty; keeps the best image.
//! Outputs go to `results/ViT-B/`; the binary prints and records its model, since the three
//! model crates' `constrained` binaries share one path in `target/<profile>/`.

use clip_core::engine::optimize::Preset;

const PRESET: Preset = Preset::Constrained;

fn main() -> std::process::ExitCode {
    clip_app::experiment::main(&vit_b::EXPERIMENT, PRESET)
}
