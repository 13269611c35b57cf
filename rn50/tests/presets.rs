//! RN50's binaries are presets of the engine: as shipped, `cargo run -p rn50 --bin <mode>` and
//! `clip generate --preset <mode>` write byte-identical PNGs (random-weight RN50 checkpoint).

#[path = "../../clip-core/tests/common/binaries.rs"]
mod binaries;
#[path = "../../clip-core/tests/common/checkpoints.rs"]
mod checkpoints;
#[path = "../../clip-core/tests/common/presets.rs"]
#[macro_use]
mod presets;

preset_tests!(rn50::EXPERIMENT, "RN50", "RN50", "3");
