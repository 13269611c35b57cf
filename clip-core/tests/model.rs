//! The Rust CLIP against the reference implementation (openai-clip 1.0.1), number for number.
//!
//! Fixtures: `scripts/make_model_fixtures.py` wrote random-weight checkpoints in OpenAI's TorchScript
//! fp16 format (`tiny-rn.pt`, `tiny-vit.pt`), the reference's embeddings of test images and texts
//! (`reference.json`), and the state-dict shapes and parameter counts of the nine released
//! configurations (`configs.json`).

use clip_core::clip::model::{
    converted_to_fp16, ClipConfig, Layout, LoadedClip, PatchEmbedding, Precision, VisionConfig,
};
use clip_core::clip::released::{self, MODEL_NAMES};
use clip_core::clip::{preprocess, score, tokenizer::Tokenizer};
use clip_core::engine::objective::cosine_similarity;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::PathBuf;
use tch::{Device, Kind, Tensor};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/models")
}

fn read_json(name: &str) -> Value {
    let text = std::fs::read_to_string(fixtures().join(name)).expect("fixture present");
    serde_json::from_str(&text).expect("fixture is JSON")
}

fn matrix(value: &Value) -> Tensor {
    let rows: Vec<Vec<f32>> = serde_json::from_value(value.clone()).expect("a matrix of numbers");
    let n = rows.len() as i64;
    let flat: Vec<f32> = rows.into_iter().flatten().collect();
    Tensor::from_slice(&flat).view([n, -1])
}

/// Minimum row-wise cosine similarity and maximum relative error of `ours` against `reference`.
fn agreement(ours: &Tensor, reference: &Tensor) -> (f64, f64) {
    assert_eq!(ours.size(), reference.size());
    let cos = cosine_similarity(ours, reference).min().double_value(&[]);
    let rel = ((ours - reference).abs().max() / reference.abs().max()).double_value(&[]);
    (cos, rel)
}

/// Every layout choice (`Layout`): the reference's and the other one of each switch.
const LAYOUTS: [Layout; 2] =
    [Layout::REFERENCE, Layout { patch_embedding: PatchEmbedding::MatMul, channels_last: true }];

fn check_fixture(name: &str) {
    for layout in LAYOUTS {
        check_fixture_with(name, layout);
    }
}

fn check_fixture_with(name: &str, layout: Layout) {
    let reference = read_json("reference.json");
    let model_ref = &reference["models"][name];
    let mut loaded = LoadedClip::load(&fixtures().join(format!("{name}.pt")), Device::Cpu)
        .expect("fixture loads");
    loaded.model.set_layout(layout);
    let name = &format!("{name} ({layout:?})");
    let model = &loaded.model;
    let resolution = model.config.image_resolution as u32;

    // with torch.no_grad(): model.encode_text(clip.tokenize(TEXTS))   # model = clip.load(path, "cpu", jit=False)[0]
    let tokens: Vec<Vec<i64>> = serde_json::from_value(reference["tokens"].clone()).unwrap();
    let tokens = Tensor::from_slice(&tokens.concat()).view([tokens.len() as i64, 77]);
    let text = tch::no_grad(|| model.encode_text(&tokens));
    let (cos, rel) = agreement(&text, &matrix(&model_ref["text_features"]));
    assert!(cos >= 0.99999 && rel < 1e-4, "{name} text: cosine {cos}, relative error {rel}");

    // Our tokenizer gives the reference's ids for the same texts.
    let texts: Vec<String> = serde_json::from_value(reference["texts"].clone()).unwrap();
    let ours = Tokenizer::new().unwrap().tokenize(&texts, false).unwrap();
    assert!(ours.equal(&tokens), "tokenizer disagrees with clip.tokenize");

    // model.encode_image(torch.stack([preprocess(Image.open(p)) for p in images]))
    let images: Vec<String> = serde_json::from_value(model_ref["images"].clone()).unwrap();
    let expected = matrix(&model_ref["image_features"]);
    for (i, image) in images.iter().enumerate() {
        let path = fixtures().join("images").join(image);
        let pixels = preprocess::preprocess_path(&path, resolution).unwrap();
        let ours = tch::no_grad(|| model.encode_image(&pixels.unsqueeze(0)));
        let (cos, rel) = agreement(&ours, &expected.narrow(0, i as i64, 1));
        // Resized images too: preprocessing reproduces Pillow's bicubic resampling exactly for PNGs,
        // so every image gets the text bound, stricter than the 0.999 the foundation issue asks.
        assert!(cos >= 0.99999 && rel < 1e-4, "{name} {image}: cosine {cos}, relative error {rel}");
    }
}

/// fp16 on the CPU: the reference's own fp16 model (`build_model`, which `convert_weights`, without
/// `clip.load`'s `.float()` on the CPU) against ours loaded with `Precision::Fp16`, both layouts.
// model = clip.model.build_model(torch.jit.load(path).state_dict()).eval()   # fp16, on the CPU
// model.encode_image(torch.stack([preprocess(Image.open(p)) ...])); model.encode_text(clip.tokenize(TEXTS))
fn check_fp16_fixture(name: &str) {
    let reference = read_json("reference_fp16.json");
    let model_ref = &reference["models"][name];
    for layout in LAYOUTS {
        let path = fixtures().join(model_ref["file"].as_str().unwrap());
        let mut loaded = LoadedClip::load_with(&path, Device::Cpu, Precision::Fp16, &|| false)
            .expect("fixture loads in fp16");
        loaded.model.set_layout(layout);
        let model = &loaded.model;
        assert_eq!(model.dtype(), Kind::Half);
        let texts: Vec<String> = serde_json::from_value(reference["texts"].clone()).unwrap();
        let tokens = Tokenizer::new().unwrap().tokenize(&texts, false).unwrap();
        let text = tch::no_grad(|| model.encode_text(&tokens)).to_kind(Kind::Float);
        let (cos, _) = agreement(&text, &matrix(&model_ref["text_features"]));
        assert!(cos >= 0.9999, "{name} ({layout:?}) fp16 text: cosine {cos}");
        let images: Vec<String> = serde_json::from_value(model_ref["images"].clone()).unwrap();
        let expected = matrix(&model_ref["image_features"]);
        for (i, image) in images.iter().enumerate() {
            let pixels = preprocess::preprocess_path(
                &fixtures().join("images").join(image),
                model.config.image_resolution as u32,
            )
            .unwrap();
            let ours =
                tch::no_grad(|| model.encode_image(&pixels.unsqueeze(0))).to_kind(Kind::Float);
            let (cos, _) = agreement(&ours, &expected.narrow(0, i as i64, 1));
            assert!(cos >= 0.9999, "{name} ({layout:?}) fp16 {image}: cosine {cos}");
        }
    }
}

#[test]
fn fp16_on_the_cpu_matches_the_references_fp16_model() {
    check_fp16_fixture("tiny-rn");
    check_fp16_fixture("tiny-vit");
}

#[test]
fn tiny_resnet_matches_reference() {
    check_fixture("tiny-rn");
}

#[test]
fn tiny_vit_matches_reference() {
    check_fixture("tiny-vit");
}

/// `clip::score`, the one scoring path of every command: an image file against texts is the
/// reference's cosine of its `preprocess`ed image features and the text features (both
/// normalised), and texts beyond one batch ([`score::TEXT_BATCH`]) are encoded in several passes
/// with the reference's features.
// img = model.encode_image(preprocess(Image.open(p))[None]); txt = model.encode_text(clip.tokenize(TEXTS))
// (img / img.norm(dim=-1, keepdim=True)) @ (txt / txt.norm(dim=-1, keepdim=True)).T
#[test]
fn scoring_a_file_is_the_references_cosine() {
    let reference = read_json("reference.json");
    let tokens: Vec<Vec<i64>> = serde_json::from_value(reference["tokens"].clone()).unwrap();
    let k = tokens.len() as i64;
    let tokens = Tensor::from_slice(&tokens.concat()).view([k, 77]);
    let unit = |t: &Tensor| t / t.norm_scalaropt_dim(2, [-1], true);
    for name in ["tiny-rn", "tiny-vit"] {
        let model_ref = &reference["models"][name];
        let loaded = LoadedClip::load(&fixtures().join(format!("{name}.pt")), Device::Cpu)
            .expect("fixture loads");
        let model = &loaded.model;
        // 14 copies of the reference's texts: more than one batch.
        let many = tokens.repeat([14, 1]);
        assert!(many.size()[0] > score::TEXT_BATCH);
        let text = score::text_features(model, &many, Device::Cpu);
        let expected_text = matrix(&model_ref["text_features"]).repeat([14, 1]);
        let (cos, rel) = agreement(&text, &expected_text);
        assert!(cos >= 0.99999 && rel < 1e-4, "{name} batched text: cosine {cos}, error {rel}");

        let images: Vec<String> = serde_json::from_value(model_ref["images"].clone()).unwrap();
        let expected = unit(&matrix(&model_ref["image_features"]))
            .matmul(&unit(&expected_text.narrow(0, 0, k)).tr());
        for (i, image) in images.iter().enumerate() {
            let path = fixtures().join("images").join(image);
            let ours = score::score_file(model, &path, &text.narrow(0, 0, k)).unwrap();
            assert_eq!(ours.len() as i64, k);
            for (j, value) in ours.iter().enumerate() {
                let want = expected.double_value(&[i as i64, j as i64]);
                assert!((value - want).abs() < 1e-4, "{name} {image} text {j}: {value} vs {want}");
            }
        }
        let missing = score::score_file(model, &fixtures().join("no such.png"), &text);
        assert!(missing.unwrap_err().to_string().contains("no such.png"));
    }
}

/// The layouts give the same embeddings and the same gradient to the input image (what the
/// optimisation uses), for an input whose side is not a multiple of the patch size too.
#[test]
fn layouts_give_the_same_embedding_and_input_gradient() {
    for (name, side) in [("tiny-vit", 32), ("tiny-vit", 37), ("tiny-rn", 64)] {
        let mut loaded = LoadedClip::load(&fixtures().join(format!("{name}.pt")), Device::Cpu)
            .expect("fixture loads");
        tch::manual_seed(5);
        let image = Tensor::rand([2, 3, side, side], (tch::Kind::Float, Device::Cpu));
        // The backward's seed: a random weighting of the embedding's components.
        let dim = loaded.model.config.embed_dim;
        let weights = Tensor::rand([2, dim], (tch::Kind::Float, Device::Cpu));
        let mut results = Vec::new();
        for layout in LAYOUTS {
            loaded.model.set_layout(layout);
            let own = loaded.model.layout();
            let applied = if name == "tiny-rn" {
                own.channels_last == layout.channels_last
            } else {
                own.patch_embedding == layout.patch_embedding
            };
            assert!(applied, "{name}: {layout:?} not applied ({own:?})");
            let x = image.copy().set_requires_grad(true);
            let features = loaded.model.encode_image(&x);
            let grad = Tensor::run_backward(
                &[(&features * &weights).sum(tch::Kind::Float)],
                &[&x],
                false,
                false,
            );
            results.push((features.detach(), grad[0].shallow_clone()));
        }
        let (f0, g0) = &results[0];
        let (f1, g1) = &results[1];
        let (cos, rel) = agreement(f1, f0);
        assert!(cos >= 0.999999 && rel < 1e-5, "{name} {side}: features cosine {cos}, rel {rel}");
        let grel = ((g1 - g0).abs().max() / g0.abs().max()).double_value(&[]);
        assert!(grel < 1e-5, "{name} {side}: input gradient relative error {grel}");
    }
}

#[test]
fn configuration_is_inferred_from_shapes_like_build_model() {
    let loaded = LoadedClip::load(&fixtures().join("tiny-rn.pt"), Device::Cpu).unwrap();
    let c = loaded.model.config;
    assert_eq!(c.vision, VisionConfig::ResNet { layers: [1, 2, 1, 1], width: 8 });
    assert_eq!(
        (c.embed_dim, c.image_resolution, c.transformer_width, c.transformer_layers),
        (32, 64, 64, 2)
    );
    let loaded = LoadedClip::load(&fixtures().join("tiny-vit.pt"), Device::Cpu).unwrap();
    let c = loaded.model.config;
    assert_eq!(c.vision, VisionConfig::ViT { patch_size: 8, width: 128, layers: 2 });
    assert_eq!(
        (c.image_resolution, c.vision_heads(), c.context_length, c.vocab_size),
        (32, 2, 77, 49408)
    );
}

/// for name, config in CONFIGS: model = CLIP(*config); model.state_dict(), parameters(), buffers()
#[test]
fn nine_released_configurations_have_the_reference_keys_shapes_and_counts() {
    let configs = read_json("configs.json");
    for name in MODEL_NAMES {
        let config = released::by_name(name).unwrap().config;
        let loaded = LoadedClip::random(&config, Device::Cpu);
        let variables = loaded.vs.variables();
        let ours: BTreeMap<String, Vec<i64>> =
            variables.iter().map(|(k, v)| (k.clone(), v.size())).collect();
        let reference: BTreeMap<String, Vec<i64>> =
            serde_json::from_value(configs[name]["shapes"].clone()).unwrap();
        assert_eq!(ours, reference, "{name}: state-dict keys and shapes");
        let trainable: i64 = loaded.vs.trainable_variables().iter().map(|v| v.numel() as i64).sum();
        let total: i64 = variables.values().map(|v| v.numel() as i64).sum();
        assert_eq!(
            trainable,
            configs[name]["parameters"].as_i64().unwrap(),
            "{name}: parameter count"
        );
        assert_eq!(
            total - trainable,
            configs[name]["buffers"].as_i64().unwrap(),
            "{name}: buffer count"
        );
        // The inference from shapes recovers the configuration.
        assert_eq!(
            ClipConfig::from_shapes(&ours).unwrap(),
            config,
            "{name}: build_model inference"
        );
    }
}

/// convert_weights(model): which entries the reference turns to fp16.
#[test]
fn fp16_conversion_follows_convert_weights() {
    for key in [
        "visual.conv1.weight",
        "visual.proj",
        "text_projection",
        "transformer.resblocks.0.attn.in_proj_weight",
        "transformer.resblocks.0.attn.out_proj.bias",
        "visual.layer1.0.downsample.0.weight",
        "visual.attnpool.q_proj.weight",
        "transformer.resblocks.3.mlp.c_fc.bias",
    ] {
        assert!(converted_to_fp16(key), "{key} should be fp16");
    }
    for key in [
        "visual.bn1.weight",
        "visual.layer1.0.downsample.1.running_var",
        "visual.layer1.0.downsample.1.weight",
        "visual.ln_pre.weight",
        "ln_final.bias",
        "token_embedding.weight",
        "positional_embedding",
        "visual.class_embedding",
        "visual.attnpool.positional_embedding",
        "logit_scale",
        "transformer.resblocks.0.ln_1.weight",
    ] {
        assert!(!converted_to_fp16(key), "{key} should stay fp32");
    }
}
