//! RN50's binaries are presets of the engine: as shipped, `cargo run -p rn50 --bin <mode>` and
//! `clip generate --preset <mode>` write byte-identical PNGs (random-weight RN50 checkpoint).

#[path = "../../clip-core/tests/common/binaries.rs"]
mod binaries;
#[path = "../../clip-core/tests/common/checkpoints.rs"]
mod checkpoints;
#[path = "../../clip-core/tests/common/presets.rs"]
mod presets;

use clip_core::engine::optimize::Preset;

#[test]
fn the_constants_as_shipped_are_the_seeds_presets() {
    presets::constants_are_the_presets(&rn50::EXPERIMENT);
}

#[test]
fn constrained_equals_clip_generate() {
    let binary = binaries::own_binary(env!("CARGO_BIN_EXE_constrained"), "constrained", "RN50");
    let clip = presets::clip_binary(env!("CARGO_BIN_EXE_constrained"));
    let weights = checkpoints::random_checkpoint("RN50");
    presets::binary_equals_clip_generate(
        &binary,
        &clip,
        &weights,
        "RN50",
        Preset::Constrained,
        "3",
    );
}

#[test]
fn unconstrained_equals_clip_generate() {
    let binary = binaries::own_binary(env!("CARGO_BIN_EXE_unconstrained"), "unconstrained", "RN50");
    let clip = presets::clip_binary(env!("CARGO_BIN_EXE_unconstrained"));
    let weights = checkpoints::random_checkpoint("RN50");
    presets::binary_equals_clip_generate(
        &binary,
        &clip,
        &weights,
        "RN50",
        Preset::Unconstrained,
        "3",
    );
}
