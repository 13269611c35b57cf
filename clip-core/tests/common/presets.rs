//! The six experiment binaries are presets of the engine: with the constants as shipped, a model
//! crate's `constrained` / `unconstrained` binary and `clip generate --preset constrained |
//! unconstrained` on the same weights, seed, steps and prompt write byte-identical PNGs (and
//! records that agree on every setting). Shared by the three crates' `tests/presets.rs`.

#![allow(dead_code)]

use clip_app::experiment::Experiment;
use clip_core::engine::optimize::Preset;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

/// `clip`, next to the model crates' binaries in `target/<profile>/` (`cargo test --workspace`
/// builds it for clip-core's tests).
pub fn clip_binary(cargo_bin_exe: &str) -> PathBuf {
    let path = Path::new(cargo_bin_exe).parent().expect("target/<profile>").join("clip");
    assert!(
        path.is_file(),
        "{} is missing: build it (cargo test --workspace does)",
        path.display()
    );
    path
}

fn run(program: &Path, args: &[&str], home: &Path) {
    let output = Command::new(program)
        .args(args)
        .env("HOME", home)
        .env("CLIP_DOWNLOAD_BASE_URL", "http://127.0.0.1:9/none")
        .output()
        .expect("the binary runs");
    assert!(
        output.status.success(),
        "{} {args:?}: {}",
        program.display(),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The crate's constants as shipped are the presets.
pub fn constants_are_the_presets(experiment: &Experiment) {
    for preset in [Preset::Constrained, Preset::Unconstrained] {
        assert_eq!(experiment.settings(preset), preset.settings(), "{preset}");
    }
}

/// Runs `binary` (`constrained` or `unconstrained` of `model`'s crate) and `clip generate` with the
/// same weights and flags, and compares the PNGs byte for byte and the records' settings.
pub fn binary_equals_clip_generate(
    binary: &Path,
    clip: &Path,
    weights: &Path,
    token: &str,
    preset: Preset,
    steps: &str,
) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (a, b) = (dir.path().join("binary"), dir.path().join("generate"));
    let weights = weights.to_str().expect("UTF-8");
    let common = [
        "--weights",
        weights,
        "--seed",
        "5",
        "--steps",
        steps,
        "--prompt",
        "a red tomato",
        "--device",
        "cpu",
    ];
    let mut args = common.to_vec();
    args.extend(["--out", a.to_str().unwrap()]);
    run(binary, &args, dir.path());
    let mut args = vec!["generate", "--preset", preset.as_str()];
    args.extend(common);
    args.extend(["--out", b.to_str().unwrap()]);
    run(clip, &args, dir.path());

    let stem = format!("{preset}_{token}_a_red_tomato");
    let read = |root: &Path, ext: &str| {
        std::fs::read(root.join(token).join(format!("{stem}.{ext}")))
            .unwrap_or_else(|e| panic!("{stem}.{ext} under {}: {e}", root.display()))
    };
    let (png_a, png_b) = (read(&a, "png"), read(&b, "png"));
    assert!(png_a == png_b, "{preset}: the binary's PNG and clip generate's differ");
    let json =
        |root: &Path| -> Value { serde_json::from_slice(&read(root, "json")).expect("JSON") };
    let (ra, rb) = (json(&a), json(&b));
    for key in [
        "prompt",
        "model",
        "mode",
        "preset",
        "image",
        "image_sha256",
        "weights_sha256",
        "param",
        "decay",
        "augment",
        "size",
        "keep",
        "views_per_image",
        "steps",
        "steps_done",
        "learning_rate",
        "tv_weight",
        "seed",
        "precision",
        "initial_similarity",
        "final_similarity",
        "best_step",
    ] {
        assert_eq!(ra[key], rb[key], "{preset}: {key} differs");
    }
}

/// The three tests of a model crate's `tests/presets.rs`: its constants are the presets, and each
/// binary equals `clip generate` (`$steps` steps; fewer for the big models).
#[macro_export]
macro_rules! preset_tests {
    ($experiment:expr, $model:literal, $token:literal, $steps:literal) => {
        #[test]
        fn the_constants_as_shipped_are_the_seeds_presets() {
            presets::constants_are_the_presets(&$experiment);
        }

        fn equals_clip_generate(preset: clip_core::engine::optimize::Preset) {
            let name = preset.as_str();
            let exe = match preset {
                clip_core::engine::optimize::Preset::Constrained => {
                    env!("CARGO_BIN_EXE_constrained")
                }
                clip_core::engine::optimize::Preset::Unconstrained => {
                    env!("CARGO_BIN_EXE_unconstrained")
                }
            };
            let binary = binaries::own_binary(exe, name, $model);
            let clip = presets::clip_binary(exe);
            let weights = checkpoints::random_checkpoint($model);
            presets::binary_equals_clip_generate(&binary, &clip, &weights, $token, preset, $steps);
        }

        #[test]
        fn constrained_equals_clip_generate() {
            equals_clip_generate(clip_core::engine::optimize::Preset::Constrained);
        }

        #[test]
        fn unconstrained_equals_clip_generate() {
            equals_clip_generate(clip_core::engine::optimize::Preset::Unconstrained);
        }
    };
}
