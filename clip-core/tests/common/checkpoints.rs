//! Full-size random-weight checkpoints of released architectures, for tests that must run a
//! model crate's binary (which refuses any other architecture): `LoadedClip::random` with the
//! released configuration, every variable saved in fp16 as safetensors with OpenAI's keys, which
//! the loader reads like a released file. Made once per target directory (cached under
//! `CARGO_TARGET_TMPDIR`) and shared by the tests and test binaries that ask for them.

#![allow(dead_code)]

use clip_core::clip::model::{LoadedClip, Precision};
use clip_core::clip::released;
use std::path::PathBuf;
use tch::{Device, Kind};

/// The checkpoint of released model `name` (`RN50`, `ViT-B/32`, …) with random weights.
pub fn random_checkpoint(name: &str) -> PathBuf {
    let model = released::by_name(name).expect("a released model");
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("random-checkpoints");
    std::fs::create_dir_all(&dir).expect("the checkpoint directory");
    let path = dir.join(format!("{}.safetensors", model.token));
    if path.exists() {
        return path;
    }
    // Several test binaries may ask at once: one writes, under a lock; the others wait for it.
    let lock = std::fs::File::create(dir.join(format!(".{}.lock", model.token))).expect("a lock");
    lock.lock().expect("the checkpoint lock");
    if !path.exists() {
        tch::manual_seed(20_261_130);
        let loaded = LoadedClip::random_with(&model.config, Device::Cpu, Precision::Fp32);
        let tensors: Vec<(String, tch::Tensor)> = loaded
            .vs
            .variables()
            .into_iter()
            .map(|(key, t)| {
                let t = if t.is_floating_point() { t.to_kind(Kind::Half) } else { t };
                // Layouts (channels-last) are the loader's choice, not the file's.
                (key, t.contiguous())
            })
            .collect();
        let tmp = dir.join(format!(".{}.partial", model.token));
        tch::Tensor::write_safetensors(&tensors, &tmp).expect("writing the checkpoint");
        std::fs::rename(&tmp, &path).expect("renaming the checkpoint");
    }
    path
}
