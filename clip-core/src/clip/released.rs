//! OpenAI's nine released CLIP models, in one table: the name `clip.load` takes, the token that
//! result paths and file names use, the configuration, where the checkpoint comes from and what it
//! hashes to, the input resolution and the cost of one optimisation step.
//!
//! Mirrors `clip._MODELS` (`clip/clip.py`, openai-clip 1.0.1): the URL's second-to-last segment is
//! the file's SHA-256, as `_download` checks it. Everything that names a released model — the
//! download, `ClipConfig::by_name`, `clip bench`, `clip compare`, the model crates — looks it up
//! here or names its constant ([`RN50`], [`VIT_B_32`], …), so a name or token is spelled once.

use super::model::config::ClipConfig;

/// The prefix of every checkpoint URL; `CLIP_DOWNLOAD_BASE_URL` replaces it (`weights::download`).
pub const DEFAULT_BASE_URL: &str = "https://openaipublic.azureedge.net/clip/models";

/// One released model.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReleasedModel {
    /// The name `clip.load` and `clip.available_models()` use: `ViT-B/32`.
    pub name: &'static str,
    /// The model's part of result paths and file names: `results/ViT-B/constrained_ViT-B_….png`.
    /// The seed's three (RN50, ViT-B, ViT-L-14) as the seed spells them; the others are their
    /// names with `/` and `@` turned into `-`.
    pub token: &'static str,
    /// The checkpoint's file name, also its name in `~/.cache/clip`.
    pub file_name: &'static str,
    /// Lower-case hex SHA-256 of the checkpoint.
    pub sha256: &'static str,
    pub config: ClipConfig,
    /// FLOPs of one prompt-step of the optimisation (`encode_image` forward and the gradient to
    /// the input image, batch 1), in GFLOP, counted with `torch.utils.flop_counter` on the
    /// reference model (docs/gpu.md); `None` where not measured.
    pub gflop_per_prompt_step: Option<f64>,
}

impl ReleasedModel {
    /// The side of the square input image.
    pub fn input_resolution(&self) -> i64 {
        self.config.image_resolution
    }

    /// The checkpoint's URL under `base_url` (normally [`DEFAULT_BASE_URL`]).
    pub fn url(&self, base_url: &str) -> String {
        format!("{}/{}/{}", base_url.trim_end_matches('/'), self.sha256, self.file_name)
    }
}

/// `RN50`.
pub const RN50: ReleasedModel = ReleasedModel {
    name: "RN50",
    token: "RN50",
    file_name: "RN50.pt",
    sha256: "afeb0e10f9e5a86da6080e35cf09123aca3b358a0c3e3b6c78a7b63bc04b6762",
    config: ClipConfig::rn50(),
    gflop_per_prompt_step: Some(24.5),
};

/// `RN101`.
pub const RN101: ReleasedModel = ReleasedModel {
    name: "RN101",
    token: "RN101",
    file_name: "RN101.pt",
    sha256: "8fa8567bab74a42d41c5915025a8e4538c3bdbe8804a470a72f30b0d94fab599",
    config: ClipConfig::rn101(),
    gflop_per_prompt_step: None,
};

/// `RN50x4`.
pub const RN50X4: ReleasedModel = ReleasedModel {
    name: "RN50x4",
    token: "RN50x4",
    file_name: "RN50x4.pt",
    sha256: "7e526bd135e493cef0776de27d5f42653e6b4c8bf9e0f653bb11773263205fdd",
    config: ClipConfig::rn50x4(),
    gflop_per_prompt_step: None,
};

/// `RN50x16`.
pub const RN50X16: ReleasedModel = ReleasedModel {
    name: "RN50x16",
    token: "RN50x16",
    file_name: "RN50x16.pt",
    sha256: "52378b407f34354e150460fe41077663dd5b39c54cd0bfd2b27167a4a06ec9aa",
    config: ClipConfig::rn50x16(),
    gflop_per_prompt_step: None,
};

/// `RN50x64`.
pub const RN50X64: ReleasedModel = ReleasedModel {
    name: "RN50x64",
    token: "RN50x64",
    file_name: "RN50x64.pt",
    sha256: "be1cfb55d75a9666199fb2206c106743da0f6468c9d327f3e0d0a543a9919d9c",
    config: ClipConfig::rn50x64(),
    gflop_per_prompt_step: None,
};

/// `ViT-B/32`.
pub const VIT_B_32: ReleasedModel = ReleasedModel {
    name: "ViT-B/32",
    token: "ViT-B",
    file_name: "ViT-B-32.pt",
    sha256: "40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af",
    config: ClipConfig::vit_b_32(),
    gflop_per_prompt_step: Some(17.8),
};

/// `ViT-B/16`.
pub const VIT_B_16: ReleasedModel = ReleasedModel {
    name: "ViT-B/16",
    token: "ViT-B-16",
    file_name: "ViT-B-16.pt",
    sha256: "5806e77cd80f8b59890b7e101eabd078d9fb84e6937f9e85e4ecb61988df416f",
    config: ClipConfig::vit_b_16(),
    gflop_per_prompt_step: None,
};

/// `ViT-L/14`.
pub const VIT_L_14: ReleasedModel = ReleasedModel {
    name: "ViT-L/14",
    token: "ViT-L-14",
    file_name: "ViT-L-14.pt",
    sha256: "b8cca3fd41ae0c99ba7e8951adf17d267cdb84cd88be6f7c2e0eca1737a03836",
    config: ClipConfig::vit_l_14(),
    gflop_per_prompt_step: Some(333.8),
};

/// `ViT-L/14@336px`.
pub const VIT_L_14_336PX: ReleasedModel = ReleasedModel {
    name: "ViT-L/14@336px",
    token: "ViT-L-14-336px",
    file_name: "ViT-L-14-336px.pt",
    sha256: "3035c92b350959924f9f00213499208652fc7ea050643e8b385c2dac08641f02",
    config: ClipConfig::vit_l_14_336(),
    gflop_per_prompt_step: None,
};

/// The released models, in `clip.available_models()` order.
pub const RELEASED_MODELS: [ReleasedModel; 9] =
    [RN50, RN101, RN50X4, RN50X16, RN50X64, VIT_B_32, VIT_B_16, VIT_L_14, VIT_L_14_336PX];

/// The released models' names, in `clip.available_models()` order.
pub const MODEL_NAMES: [&str; 9] = {
    let mut names = [""; 9];
    let mut i = 0;
    while i < RELEASED_MODELS.len() {
        names[i] = RELEASED_MODELS[i].name;
        i += 1;
    }
    names
};

/// The seed's three models (its per-model folders), in its order: what `clip compare` scores and
/// `clip bench` times unless told otherwise.
pub const SEED_MODELS: [ReleasedModel; 3] = [RN50, VIT_B_32, VIT_L_14];

/// A name that is not a released model's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown model `{name}`; available models: {}", MODEL_NAMES.join(", "))]
pub struct UnknownModel {
    pub name: String,
}

/// The released model called `name` (`clip.load`'s names).
pub fn by_name(name: &str) -> Result<&'static ReleasedModel, UnknownModel> {
    RELEASED_MODELS
        .iter()
        .find(|m| m.name == name)
        .ok_or_else(|| UnknownModel { name: name.to_string() })
}

/// The released model whose result token is `token`.
pub fn by_token(token: &str) -> Option<&'static ReleasedModel> {
    RELEASED_MODELS.iter().find(|m| m.token == token)
}

/// The released model with exactly this architecture, as inferred from a checkpoint's shapes.
pub fn by_config(config: &ClipConfig) -> Option<&'static ReleasedModel> {
    RELEASED_MODELS.iter().find(|m| m.config == *config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_tokens_and_configurations_are_unique() {
        for (i, a) in RELEASED_MODELS.iter().enumerate() {
            for b in &RELEASED_MODELS[i + 1..] {
                assert_ne!(a.name, b.name);
                assert_ne!(a.token, b.token);
                assert_ne!(a.file_name, b.file_name);
                assert_ne!(a.config, b.config, "{} and {}", a.name, b.name);
            }
            // Tokens are file-name parts: no separators, nothing a shell or Windows refuses.
            assert!(a.token.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'), "{}", a.token);
            assert_eq!(by_name(a.name), Ok(a));
            assert_eq!(by_token(a.token), Some(a));
            assert_eq!(by_config(&a.config), Some(a));
        }
    }

    #[test]
    fn urls_are_the_reference_packages() {
        let m = by_name("ViT-L/14@336px").unwrap();
        assert_eq!(
            m.url(DEFAULT_BASE_URL),
            "https://openaipublic.azureedge.net/clip/models/3035c92b350959924f9f00213499208652fc7ea050643e8b385c2dac08641f02/ViT-L-14-336px.pt"
        );
        assert_eq!(m.input_resolution(), 336);
        assert_eq!(by_name("RN50x4").unwrap().input_resolution(), 288);
        assert!(by_name("ViT-H/14").unwrap_err().to_string().contains("ViT-B/32"));
    }
}
