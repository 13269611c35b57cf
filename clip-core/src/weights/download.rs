//! Fetching OpenAI's released checkpoints into the reference's own cache, `~/.cache/clip`.
//!
//! Mirrors `clip/clip.py` `_MODELS` and `_download`: the expected SHA-256 is the URL's
//! second-to-last path segment; a cached file with the right checksum is reused, one with the
//! wrong checksum is re-downloaded after a warning. Unlike the reference, the download goes to a
//! temporary file in the cache directory, is hashed while streaming and verified before an atomic
//! rename, so a failed or corrupted download never leaves a file behind.
//!
//! The environment variable `CLIP_DOWNLOAD_BASE_URL` replaces the
//! `https://openaipublic.azureedge.net/clip/models` prefix (a mirror, or a test server).

use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use sha2::{Digest, Sha256};

use super::WeightsError;

/// The prefix of every URL in [`MODELS`].
pub const DEFAULT_BASE_URL: &str = "https://openaipublic.azureedge.net/clip/models";
/// Environment variable that replaces [`DEFAULT_BASE_URL`].
pub const BASE_URL_ENV: &str = "CLIP_DOWNLOAD_BASE_URL";

/// `clip._MODELS`, verbatim.
const MODELS: [(&str, &str); 9] = [
    ("RN50", "https://openaipublic.azureedge.net/clip/models/afeb0e10f9e5a86da6080e35cf09123aca3b358a0c3e3b6c78a7b63bc04b6762/RN50.pt"),
    ("RN101", "https://openaipublic.azureedge.net/clip/models/8fa8567bab74a42d41c5915025a8e4538c3bdbe8804a470a72f30b0d94fab599/RN101.pt"),
    ("RN50x4", "https://openaipublic.azureedge.net/clip/models/7e526bd135e493cef0776de27d5f42653e6b4c8bf9e0f653bb11773263205fdd/RN50x4.pt"),
    ("RN50x16", "https://openaipublic.azureedge.net/clip/models/52378b407f34354e150460fe41077663dd5b39c54cd0bfd2b27167a4a06ec9aa/RN50x16.pt"),
    ("RN50x64", "https://openaipublic.azureedge.net/clip/models/be1cfb55d75a9666199fb2206c106743da0f6468c9d327f3e0d0a543a9919d9c/RN50x64.pt"),
    ("ViT-B/32", "https://openaipublic.azureedge.net/clip/models/40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af/ViT-B-32.pt"),
    ("ViT-B/16", "https://openaipublic.azureedge.net/clip/models/5806e77cd80f8b59890b7e101eabd078d9fb84e6937f9e85e4ecb61988df416f/ViT-B-16.pt"),
    ("ViT-L/14", "https://openaipublic.azureedge.net/clip/models/b8cca3fd41ae0c99ba7e8951adf17d267cdb84cd88be6f7c2e0eca1737a03836/ViT-L-14.pt"),
    ("ViT-L/14@336px", "https://openaipublic.azureedge.net/clip/models/3035c92b350959924f9f00213499208652fc7ea050643e8b385c2dac08641f02/ViT-L-14-336px.pt"),
];

/// The names of OpenAI's released models, as `clip.available_models()` lists them.
pub const MODEL_NAMES: [&str; 9] = {
    let mut names = [""; 9];
    let mut i = 0;
    while i < MODELS.len() {
        names[i] = MODELS[i].0;
        i += 1;
    }
    names
};

/// The model names `clip.available_models()` lists, in the same order.
pub fn model_names() -> &'static [&'static str] {
    &MODEL_NAMES
}

/// A released checkpoint: where it comes from and what it must hash to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelFile {
    pub url: String,
    /// The file name (`ViT-B-32.pt`), also its name in the cache.
    pub file_name: String,
    /// Lower-case hex SHA-256, `url.split("/")[-2]` as in `_download`.
    pub sha256: String,
}

/// The URL, file name and checksum of model `name`, with [`DEFAULT_BASE_URL`] replaced by
/// `base_url`.
pub fn model_file(name: &str, base_url: &str) -> Result<ModelFile, WeightsError> {
    let url = MODELS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, url)| url)
        .ok_or_else(|| WeightsError::UnknownModel { name: name.to_string() })?;
    let mut parts = url.rsplit('/');
    let file_name = parts.next().unwrap_or_default().to_string();
    let sha256 = parts.next().unwrap_or_default().to_string();
    let url =
        format!("{}{}", base_url.trim_end_matches('/'), url.trim_start_matches(DEFAULT_BASE_URL));
    Ok(ModelFile { url, file_name, sha256 })
}

/// `~/.cache/clip`, the reference's cache (`os.path.expanduser("~/.cache/clip")`).
pub fn default_cache_dir() -> Result<PathBuf, WeightsError> {
    let home = std::env::var_os("HOME")
        .or_else(|| std::env::var_os("USERPROFILE"))
        .filter(|h| !h.is_empty());
    Ok(PathBuf::from(home.ok_or(WeightsError::NoHome)?).join(".cache").join("clip"))
}

/// The local path of model `name`'s checkpoint, downloading it into `cache_dir` (default
/// `~/.cache/clip`) unless a file with the right checksum is already there. Honours
/// `CLIP_DOWNLOAD_BASE_URL`.
pub fn resolve_model(name: &str, cache_dir: Option<&Path>) -> Result<PathBuf, WeightsError> {
    let base = std::env::var(BASE_URL_ENV).ok().filter(|b| !b.is_empty());
    resolve_model_from(name, cache_dir, base.as_deref().unwrap_or(DEFAULT_BASE_URL))
}

/// [`resolve_model`] with an explicit base URL in place of [`DEFAULT_BASE_URL`].
pub fn resolve_model_from(
    name: &str,
    cache_dir: Option<&Path>,
    base_url: &str,
) -> Result<PathBuf, WeightsError> {
    let model = model_file(name, base_url)?;
    let dir = match cache_dir {
        Some(d) => d.to_path_buf(),
        None => default_cache_dir()?,
    };
    fetch(&model, &dir)
}

/// The copy of `model` in directory `dir` (created if needed), downloaded first unless a file
/// with the right checksum is already there.
pub fn fetch(model: &ModelFile, dir: &Path) -> Result<PathBuf, WeightsError> {
    std::fs::create_dir_all(dir)
        .map_err(|source| WeightsError::Io { path: dir.to_path_buf(), source })?;
    let target = dir.join(&model.file_name);
    if target.is_dir() {
        return Err(WeightsError::IsDirectory { path: target });
    }
    if target.is_file() {
        if sha256_file(&target)? == model.sha256 {
            return Ok(target);
        }
        eprintln!(
            "warning: {} exists, but the SHA256 checksum does not match; re-downloading the file",
            target.display()
        );
    }
    download(model, &target)?;
    Ok(target)
}

/// Lower-case hex SHA-256 of a file, streamed.
pub fn sha256_file(path: &Path) -> Result<String, WeightsError> {
    let io = |source| WeightsError::Io { path: path.to_path_buf(), source };
    let mut file = std::fs::File::open(path).map_err(io)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(io)?;
        if n == 0 {
            return Ok(hex(&hasher.finalize()));
        }
        hasher.update(&buf[..n]);
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn progress_bar(len: Option<u64>, file_name: &str) -> ProgressBar {
    let target = if std::io::stderr().is_terminal() {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    };
    let bar = ProgressBar::with_draw_target(len, target);
    if let Ok(style) = ProgressStyle::with_template(
        "{msg} [{bar:40}] {binary_bytes}/{binary_total_bytes} ({binary_bytes_per_sec}, {eta})",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(file_name.to_string());
    bar
}

/// Streams `model.url` into a temporary file next to `target`, hashing as it goes, and renames
/// it to `target` only if the checksum matches. The temporary file is removed on any failure.
fn download(model: &ModelFile, target: &Path) -> Result<(), WeightsError> {
    let fail = |reason: String| WeightsError::Download {
        url: model.url.clone(),
        target: target.to_path_buf(),
        reason,
    };
    let dir = target.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{}.", model.file_name))
        .suffix(".part")
        .tempfile_in(dir)
        .map_err(|source| WeightsError::Io { path: dir.to_path_buf(), source })?;

    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_recv_response(Some(Duration::from_secs(60)))
        .build()
        .into();
    let mut response = agent.get(&model.url).call().map_err(|e| fail(e.to_string()))?;
    let len = response.body().content_length();
    let bar = progress_bar(len, &model.file_name);
    let mut reader = response.body_mut().as_reader();
    let mut hasher = Sha256::new();
    let mut received: u64 = 0;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = reader.read(&mut buf).map_err(|e| {
            fail(format!("reading the response failed after {received} bytes: {e}"))
        })?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        tmp.write_all(&buf[..n])
            .map_err(|source| WeightsError::Io { path: tmp.path().to_path_buf(), source })?;
        received += n as u64;
        bar.inc(n as u64);
    }
    bar.finish_and_clear();
    if let Some(len) = len.filter(|&l| l != received) {
        return Err(fail(format!("the connection closed after {received} of {len} bytes")));
    }
    let actual = hex(&hasher.finalize());
    if actual != model.sha256 {
        return Err(WeightsError::Checksum {
            url: model.url.clone(),
            target: target.to_path_buf(),
            expected: model.sha256.clone(),
            actual,
        });
    }
    tmp.as_file()
        .sync_all()
        .map_err(|source| WeightsError::Io { path: tmp.path().to_path_buf(), source })?;
    tmp.persist(target)
        .map_err(|e| WeightsError::Io { path: target.to_path_buf(), source: e.error })?;
    Ok(())
}
