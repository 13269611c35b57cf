//! A tiny random ViT CLIP (32 px), shared by the tests of the optimisation loop and of `clip bench`:
//! their mechanics need no real model.

#![allow(dead_code)]

use clip_core::clip::model::{ClipConfig, LoadedClip, Precision, VisionConfig};
use tch::Device;

pub fn tiny_model() -> LoadedClip {
    tiny_model_on(Device::Cpu)
}

/// The same model on `device` (fp16 on CUDA, as `clip.load`).
pub fn tiny_model_on(device: Device) -> LoadedClip {
    tiny_model_with(device, Precision::for_device(device))
}

/// The same model on `device` in `precision`.
pub fn tiny_model_with(device: Device, precision: Precision) -> LoadedClip {
    tch::manual_seed(0);
    let config = ClipConfig {
        embed_dim: 32,
        image_resolution: 32,
        vision: VisionConfig::ViT { patch_size: 8, width: 64, layers: 2 },
        context_length: 77,
        vocab_size: 49408,
        transformer_width: 64,
        transformer_layers: 1,
    };
    LoadedClip::random_with(&config, device, precision)
}
