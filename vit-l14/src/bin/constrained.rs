//! `cargo run -p vit-l14 --bin constrained`: the seed's constrained run with ViT-L/14 — augmented views (RandomAffine + flip) and a TV penalty; keeps the best image.
//! Outputs go to `results/ViT-L-14/`; the binary prints and records its model, since the three
//! model crates' `constrained` binaries share one path in `target/<profile>/`.

use clip_core::engine::optimize::Preset;

const PRESET: Preset = Preset::Constrained;

fn main() -> std::process::ExitCode {
    clip_app::experiment::main(&vit_l14::EXPERIMENT, PRESET)
}
