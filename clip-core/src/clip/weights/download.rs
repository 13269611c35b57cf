//! Fetching OpenAI's released checkpoints into the reference's own cache, `~/.cache/clip`.
//!
//! Mirrors `clip/clip.py` `_download` (the models' table is `clip::released`): the expected SHA-256 is the URL's
//! second-to-last path segment; a cached file with the right checksum is reused, one with the
//! wrong checksum is re-downloaded after a warning. Unlike the reference, the download goes to a
//! temporary file in the cache directory, is hashed while streaming and verified before an atomic
//! rename, so a failed or corrupted download never leaves a file behind.
//!
//! The environment variable `CLIP_DOWNLOAD_BASE_URL` replaces the
//! `https://openaipublic.azureedge.net/clip/models` prefix (a mirror, or a test server).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::WeightsError;
use crate::clip::released;

pub use crate::clip::released::DEFAULT_BASE_URL;
/// Environment variable that replaces [`DEFAULT_BASE_URL`].
pub const BASE_URL_ENV: &str = "CLIP_DOWNLOAD_BASE_URL";

/// What a fetch tells its caller as it goes. The library prints nothing: an application shows
/// these (the `clip` tool: a warning line and a progress bar on stderr).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchEvent<'a> {
    /// A cached file's checksum did not match: it is downloaded again.
    Mismatch { path: &'a Path },
    /// `received` bytes of `file_name` so far, of `total` when the server said.
    Progress { file_name: &'a str, received: u64, total: Option<u64> },
    /// The download ended, whether it succeeded or not.
    Done,
}

/// How a fetch is watched: `stop` is asked between chunks whether to give up, `report` hears
/// each [`FetchEvent`] on the caller's thread.
#[derive(Clone, Copy)]
pub struct Watch<'a> {
    pub stop: &'a dyn Fn() -> bool,
    pub report: &'a dyn Fn(FetchEvent),
}

impl Watch<'_> {
    /// Never stops, reports nothing.
    pub const SILENT: Watch<'static> = Watch { stop: &|| false, report: &|_| {} };
}

/// The model names `clip.available_models()` lists, in the same order.
pub fn model_names() -> &'static [&'static str] {
    &released::MODEL_NAMES
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
    let model = released::by_name(name)
        .map_err(|_| WeightsError::UnknownModel { name: name.to_string() })?;
    Ok(ModelFile {
        url: model.url(base_url),
        file_name: model.file_name.to_string(),
        sha256: model.sha256.to_string(),
    })
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
    resolve_model_with(name, cache_dir, &|| false)
}

/// [`resolve_model`], asking `stop` between chunks (hashing, downloading) whether to give up
/// ([`WeightsError::Interrupted`]; a partial download is removed).
pub fn resolve_model_with(
    name: &str,
    cache_dir: Option<&Path>,
    stop: &dyn Fn() -> bool,
) -> Result<PathBuf, WeightsError> {
    resolve_model_watched(name, cache_dir, Watch { stop, ..Watch::SILENT })
}

/// [`resolve_model`], watched: stopped and reported on as `watch` says.
pub fn resolve_model_watched(
    name: &str,
    cache_dir: Option<&Path>,
    watch: Watch,
) -> Result<PathBuf, WeightsError> {
    let base = std::env::var(BASE_URL_ENV).ok().filter(|b| !b.is_empty());
    resolve(name, cache_dir, base.as_deref().unwrap_or(DEFAULT_BASE_URL), watch)
}

/// [`resolve_model`] with an explicit base URL in place of [`DEFAULT_BASE_URL`].
pub fn resolve_model_from(
    name: &str,
    cache_dir: Option<&Path>,
    base_url: &str,
) -> Result<PathBuf, WeightsError> {
    resolve(name, cache_dir, base_url, Watch::SILENT)
}

fn resolve(
    name: &str,
    cache_dir: Option<&Path>,
    base_url: &str,
    watch: Watch,
) -> Result<PathBuf, WeightsError> {
    let model = model_file(name, base_url)?;
    let dir = match cache_dir {
        Some(d) => d.to_path_buf(),
        None => default_cache_dir()?,
    };
    fetch_watched(&model, &dir, watch)
}

/// The copy of `model` in directory `dir` (created if needed), downloaded first unless a file
/// with the right checksum is already there.
pub fn fetch(model: &ModelFile, dir: &Path) -> Result<PathBuf, WeightsError> {
    fetch_with(model, dir, &|| false)
}

/// [`fetch`], asking `stop` between chunks whether to give up.
pub fn fetch_with(
    model: &ModelFile,
    dir: &Path,
    stop: &dyn Fn() -> bool,
) -> Result<PathBuf, WeightsError> {
    fetch_watched(model, dir, Watch { stop, ..Watch::SILENT })
}

/// [`fetch`], watched: stopped and reported on as `watch` says.
pub fn fetch_watched(model: &ModelFile, dir: &Path, watch: Watch) -> Result<PathBuf, WeightsError> {
    std::fs::create_dir_all(dir)
        .map_err(|source| WeightsError::Io { path: dir.to_path_buf(), source })?;
    let target = dir.join(&model.file_name);
    if target.is_dir() {
        return Err(WeightsError::IsDirectory { path: target });
    }
    if target.is_file() {
        if sha256_file_with(&target, watch.stop)? == model.sha256 {
            return Ok(target);
        }
        (watch.report)(FetchEvent::Mismatch { path: &target });
    }
    let downloaded = download(model, &target, watch);
    (watch.report)(FetchEvent::Done);
    downloaded?;
    Ok(target)
}

/// Lower-case hex SHA-256 of a file, streamed.
pub fn sha256_file(path: &Path) -> Result<String, WeightsError> {
    sha256_file_with(path, &|| false)
}

/// [`sha256_file`], asking `stop` between chunks whether to give up.
pub fn sha256_file_with(path: &Path, stop: &dyn Fn() -> bool) -> Result<String, WeightsError> {
    let io = |source| WeightsError::Io { path: path.to_path_buf(), source };
    let mut file = crate::clip::files::open_regular(path).map_err(io)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        if stop() {
            return Err(WeightsError::Interrupted { path: path.to_path_buf() });
        }
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

/// How often a download that is waiting for data asks its `stop` whether to give up.
const STOP_POLL: Duration = Duration::from_millis(100);

/// Streams `model.url` into a temporary file next to `target`, hashing as it goes, and renames
/// it to `target` only if the checksum matches. The temporary file is removed on any failure.
///
/// The network is read on a worker thread, so that a stalled connection cannot keep `stop` from
/// being heard: when it says stop, the temporary file is removed and the worker is left to end
/// with the process (it only ever writes to the removed file).
fn download(model: &ModelFile, target: &Path, watch: Watch) -> Result<(), WeightsError> {
    let fail = |reason: String| WeightsError::Download {
        url: model.url.clone(),
        target: target.to_path_buf(),
        reason,
    };
    let dir = target.parent().unwrap_or(Path::new("."));
    let tmp = tempfile::Builder::new()
        .prefix(&format!(".{}.", model.file_name))
        .suffix(".part")
        .tempfile_in(dir)
        .map_err(|source| WeightsError::Io { path: dir.to_path_buf(), source })?;
    let tmp_io = |source| WeightsError::Io { path: tmp.path().to_path_buf(), source };
    let file = tmp.as_file().try_clone().map_err(tmp_io)?;

    let (sender, receiver) = std::sync::mpsc::channel();
    let url = model.url.clone();
    std::thread::spawn(move || {
        let progress = sender.clone();
        let report = move |received, total| {
            let _ = progress.send(Message::Progress { received, total });
        };
        let _ = sender.send(Message::Done(receive(&url, file, &report)));
    });
    let received = loop {
        match receiver.recv_timeout(STOP_POLL) {
            Ok(Message::Done(result)) => break result,
            Ok(Message::Progress { received, total }) => {
                let file_name = model.file_name.as_str();
                (watch.report)(FetchEvent::Progress { file_name, received, total });
                if (watch.stop)() {
                    drop(tmp);
                    return Err(WeightsError::Interrupted { path: target.to_path_buf() });
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) if (watch.stop)() => {
                drop(tmp);
                return Err(WeightsError::Interrupted { path: target.to_path_buf() });
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                return Err(fail("the download thread ended without a result".into()));
            }
        }
    };
    let actual = match received {
        Ok(sha256) => sha256,
        Err(Received::Network(reason)) => return Err(fail(reason)),
        Err(Received::Write(source)) => return Err(tmp_io(source)),
    };
    if actual != model.sha256 {
        return Err(WeightsError::Checksum {
            url: model.url.clone(),
            target: target.to_path_buf(),
            expected: model.sha256.clone(),
            actual,
        });
    }
    tmp.as_file().sync_all().map_err(tmp_io)?;
    tmp.persist(target)
        .map_err(|e| WeightsError::Io { path: target.to_path_buf(), source: e.error })?;
    Ok(())
}

/// What the worker of [`download`] sends.
enum Message {
    Progress { received: u64, total: Option<u64> },
    Done(Result<String, Received>),
}

/// Why [`receive`] failed.
enum Received {
    Network(String),
    Write(std::io::Error),
}

/// The worker of [`download`]: `url`'s body into `file`, telling `progress` the bytes received
/// (and the total when known) after each chunk; its SHA-256.
fn receive(
    url: &str,
    mut file: std::fs::File,
    progress: &dyn Fn(u64, Option<u64>),
) -> Result<String, Received> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_recv_response(Some(Duration::from_secs(60)))
        .build()
        .into();
    let mut response = agent.get(url).call().map_err(|e| Received::Network(e.to_string()))?;
    let len = response.body().content_length();
    let mut reader = response.body_mut().as_reader();
    let mut hasher = Sha256::new();
    let mut received: u64 = 0;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = reader.read(&mut buf).map_err(|e| {
            Received::Network(format!("reading the response failed after {received} bytes: {e}"))
        })?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        file.write_all(&buf[..n]).map_err(Received::Write)?;
        received += n as u64;
        progress(received, len);
    }
    if let Some(len) = len.filter(|&l| l != received) {
        return Err(Received::Network(format!(
            "the connection closed after {received} of {len} bytes"
        )));
    }
    Ok(hex(&hasher.finalize()))
}
