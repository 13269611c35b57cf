//! `cargo run -p vit-b --bin unconstrained`: the seed's unconstrained run with ViT-B/32 — no augmentation, no penalty; keeps the final image.
//! Outputs go to `results/ViT-B/`; the binary prints and records its model, since the three
//! model crates' `unconstrained` binaries share one path in `target/<profile>/`.

use clip_core::engine::optimize::Preset;

const PRESET: Preset = Preset::Unconstrained;

fn main() -> std::process::ExitCode {
    clip_app::experiment::main(&vit_b::EXPERIMENT, PRESET)
}
