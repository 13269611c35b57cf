//! ViT-L/14's binaries are presets of the engine: as shipped, `cargo run -p vit-l14 --bin <mode>` and
//! `clip generate --preset <mode>` write byte-identical PNGs (random-weight ViT-L/14 checkpoint).

#[path = "../../clip-core/tests/common/binaries.rs"]
mod binaries;
#[path = "../../clip-core/tests/common/checkpoints.rs"]
mod checkpoints;
#[path = "../../clip-core/tests/common/presets.rs"]
#[macro_use]
mod presets;

preset_tests!(vit_l14::EXPERIMENT, "ViT-L/14", "ViT-L-14", "1");
