//! ViT-B/32's binaries are presets of the engine: as shipped, `cargo run -p vit-b --bin <mode>` and
//! `clip generate --preset <mode>` write byte-identical PNGs (random-weight ViT-B/32 checkpoint).

#[path = "../../clip-core/tests/common/binaries.rs"]
mod binaries;
#[path = "../../clip-core/tests/common/checkpoints.rs"]
mod checkpoints;
#[path = "../../clip-core/tests/common/presets.rs"]
#[macro_use]
mod presets;

preset_tests!(vit_b::EXPERIMENT, "ViT-B/32", "ViT-B", "3");
