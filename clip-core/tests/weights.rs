//! Checkpoint loading against PyTorch's own readers, on fixtures made by
//! `scripts/make_weight_fixtures.py`, plus hostile and broken inputs built here.

#[path = "common/hostile_files.rs"]
mod hostile_files;
use hostile_files::{push_str, tensor_pickle, write_zip};

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use clip_core::clip::weights::{PickleError, StateDict, WeightsError};
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/weights").join(name)
}

/// `{key: {"dtype", "shape", "values"}}` as the fixture script writes it.
#[derive(serde::Deserialize)]
struct Reference {
    dtype: String,
    shape: Vec<i64>,
    values: Vec<f64>,
}

fn reference(name: &str) -> BTreeMap<String, Reference> {
    let text = std::fs::read_to_string(fixture(name)).expect("reference JSON");
    serde_json::from_str(&text).expect("reference JSON parses")
}

fn torch_dtype(kind: Kind) -> &'static str {
    match kind {
        Kind::Half => "float16",
        Kind::Float => "float32",
        Kind::Double => "float64",
        Kind::BFloat16 => "bfloat16",
        Kind::Int64 => "int64",
        Kind::Int => "int32",
        Kind::Bool => "bool",
        Kind::Uint8 => "uint8",
        _ => "other",
    }
}

fn values(t: &Tensor) -> Vec<f64> {
    Vec::<f64>::try_from(t.to_kind(Kind::Double).flatten(0, -1)).expect("values")
}

/// Same keys, dtypes, shapes and (exactly) the same values as the reference.
fn assert_matches(sd: &StateDict, reference: &BTreeMap<String, Reference>) {
    let keys: Vec<&str> = sd.keys().collect();
    let expected: Vec<&str> = reference.keys().map(String::as_str).collect();
    assert_eq!(keys, expected);
    for (key, r) in reference {
        let t = sd.get(key).expect("key present");
        assert_eq!(t.device(), Device::Cpu);
        assert_eq!(torch_dtype(t.kind()), r.dtype, "{key}");
        assert_eq!(sd.shape(key), Some(r.shape.clone()), "{key}");
        assert_eq!(values(t), r.values, "{key}");
    }
    assert_eq!(sd.len(), reference.len());
}

// Reference: `torch.jit.load("jit_fp16.pt").state_dict()`, a traced Conv2d + BatchNorm2d +
// Linear + MultiheadAttention + scripted LayerNorm block, `.half()`, random running stats.
#[test]
fn torchscript_archive_matches_torch_jit_load() {
    let sd = StateDict::load(&fixture("jit_fp16.pt")).unwrap();
    assert_matches(&sd, &reference("jit_fp16.json"));
    // Buffers are included; a plain tensor attribute of the scripted block is not.
    assert_eq!(sd.get("bn1.num_batches_tracked").map(Tensor::kind), Some(Kind::Int64));
    assert!(sd.get("bn1.running_var").is_some());
    assert!(sd.get("block.plain").is_none());
}

// Reference: `torch.load("state_dict.pt")`: fp32, fp16, int64, a Parameter, and a slice
// (offset 5) and a transpose sharing the storage of `base`.
#[test]
fn torch_save_state_dict_matches_torch_load() {
    let sd = StateDict::load(&fixture("state_dict.pt")).unwrap();
    assert_matches(&sd, &reference("state_dict.json"));
    assert_eq!(sd.shape("transposed"), Some(vec![4, 3]));
}

// Reference: `torch.load("nested.pt")["state_dict"]`, saved as `{"state_dict": …, "epoch": 3}`.
#[test]
fn training_checkpoint_uses_its_state_dict_entry() {
    let sd = StateDict::load(&fixture("nested.pt")).unwrap();
    assert_matches(&sd, &reference("nested.json"));
}

// Reference: the dict given to `safetensors.torch.save_file`.
#[test]
fn safetensors_matches_save_file_input() {
    let sd = StateDict::load(&fixture("weights.safetensors")).unwrap();
    assert_matches(&sd, &reference("weights_safetensors.json"));
}

#[test]
fn format_is_told_by_content_not_extension() {
    let dir = tempfile::tempdir().unwrap();
    let renamed = dir.path().join("weights.bin");
    std::fs::copy(fixture("weights.safetensors"), &renamed).unwrap();
    assert_eq!(StateDict::load(&renamed).unwrap().len(), 3);
    let renamed = dir.path().join("model.safetensors");
    std::fs::copy(fixture("state_dict.pt"), &renamed).unwrap();
    assert_eq!(StateDict::load(&renamed).unwrap().len(), 6);
}

// --- load_into ------------------------------------------------------------------------------

/// A VarStore laid out like the JIT fixture's module, in fp32 (as the lead's models are built).
fn jit_fixture_varstore() -> VarStore {
    let vs = VarStore::new(Device::Cpu);
    let root = vs.root();
    let _ = root.zeros("logit_scale", &[]);
    let _ = (&root / "conv1").zeros("weight", &[4, 3, 3, 3]);
    let bn = &root / "bn1";
    let _ = bn.zeros("weight", &[4]);
    let _ = bn.zeros("bias", &[4]);
    let _ = bn.zeros_no_train("running_mean", &[4]);
    let _ = bn.ones_no_train("running_var", &[4]);
    let _ = bn.add("num_batches_tracked", Tensor::zeros([], (Kind::Int64, Device::Cpu)), false);
    let l0 = &root / "layers" / 0;
    let _ = l0.zeros("weight", &[4, 4]);
    let _ = l0.zeros("bias", &[4]);
    let attn = &root / "attn";
    let _ = attn.zeros("in_proj_weight", &[12, 4]);
    let _ = attn.zeros("in_proj_bias", &[12]);
    let _ = (&attn / "out_proj").zeros("weight", &[4, 4]);
    let _ = (&attn / "out_proj").zeros("bias", &[4]);
    let ln = &root / "block" / "ln";
    let _ = ln.zeros("weight", &[4]);
    let _ = ln.zeros("bias", &[4]);
    vs
}

// Reference: `model.load_state_dict(torch.jit.load("jit_fp16.pt").state_dict())` into an fp32
// model after deleting `input_resolution` (as `build_model` does).
#[test]
fn load_into_copies_and_converts_fp16_into_fp32_variables() {
    let sd = StateDict::load(&fixture("jit_fp16.pt")).unwrap();
    let vs = jit_fixture_varstore();
    sd.load_into(&vs, &["input_resolution", "context_length", "vocab_size"]).unwrap();
    let reference = reference("jit_fp16.json");
    for (name, var) in vs.variables() {
        let r = &reference[&name];
        let want = if name.ends_with("num_batches_tracked") { Kind::Int64 } else { Kind::Float };
        assert_eq!(var.kind(), want, "{name}");
        assert_eq!(values(&var), r.values, "{name}");
    }
    // Trainable ones stay trainable, buffers not.
    let trainable = vs.trainable_variables().len();
    assert_eq!(trainable, vs.variables().len() - 3);
}

#[test]
fn load_into_reports_missing_unexpected_and_misshapen_keys_together() {
    let sd = StateDict::load(&fixture("jit_fp16.pt")).unwrap();
    let vs = jit_fixture_varstore();
    let root = vs.root();
    let _ = root.zeros("positional_embedding", &[7, 4]); // missing from the file
                                                         // `input_resolution` is not ignored here, so it is unexpected.
    let err = sd.load_into(&vs, &[]).unwrap_err();
    let msg = err.to_string();
    match &err {
        WeightsError::Mismatch { path, missing, unexpected, shapes } => {
            assert!(path.ends_with("jit_fp16.pt"));
            assert_eq!(missing, &["positional_embedding"]);
            assert_eq!(unexpected, &["input_resolution"]);
            assert!(shapes.is_empty());
        }
        other => panic!("unexpected error {other}"),
    }
    assert!(
        msg.contains("jit_fp16.pt")
            && msg.contains("`positional_embedding`")
            && msg.contains("`input_resolution`"),
        "{msg}"
    );

    // A wrong shape names the key and both shapes; nothing is copied.
    let sd = StateDict::load(&fixture("nested.pt")).unwrap(); // weight [3, 2], bias [3]
    let vs = VarStore::new(Device::Cpu);
    let _ = vs.root().zeros("weight", &[2, 3]);
    let _ = vs.root().zeros("bias", &[3]);
    let err = sd.load_into(&vs, &[]).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("nested.pt")
            && msg.contains("`weight` is [3, 2] in the checkpoint but [2, 3] in the model"),
        "{msg}"
    );
    assert_eq!(values(&vs.variables()["bias"]), vec![0.0; 3]);
}

#[test]
fn mismatch_report_lists_the_first_few_and_counts_the_rest() {
    let sd = StateDict::load(&fixture("nested.pt")).unwrap();
    let vs = VarStore::new(Device::Cpu);
    for i in 0..12 {
        let _ = vs.root().zeros(&format!("extra{i:02}"), &[1]);
    }
    let msg = sd.load_into(&vs, &[]).unwrap_err().to_string();
    assert!(msg.contains("12 keys the model needs are missing"), "{msg}");
    assert!(msg.contains("`extra00`") && msg.contains("… and 7 more"), "{msg}");
    assert!(msg.contains("2 checkpoint keys are not in the model"), "{msg}");
}

// --- hostile and broken files ---------------------------------------------------------------

fn checkpoint(dir: &Path, name: &str, pickle: &[u8], storage: &[u8]) -> PathBuf {
    let path = dir.join(name);
    write_zip(&path, &[("archive/data.pkl", pickle), ("archive/data/0", storage)]);
    path
}

#[test]
fn handwritten_tensor_pickle_loads() {
    // Sanity check of the helper the tests below break: a [2, 2] slice at offset 2 of 6 floats.
    let dir = tempfile::tempdir().unwrap();
    let data: Vec<u8> = (0..6).flat_map(|i| (i as f32).to_le_bytes()).collect();
    let path = checkpoint(
        dir.path(),
        "ok.pt",
        &tensor_pickle("FloatStorage", 6, 2, &[2, 2], &[1, 2]),
        &data,
    );
    let sd = StateDict::load(&path).unwrap();
    assert_eq!(values(sd.get("w").unwrap()), vec![2.0, 4.0, 3.0, 5.0]);
}

fn pickle_error(err: &WeightsError) -> &PickleError {
    match err {
        WeightsError::Pickle { source, .. } => source,
        other => panic!("expected a pickle error, got {other}"),
    }
}

// What `pickle.dump({"weight": Evil()})` writes when `Evil.__reduce__` returns
// `(os.system, ("touch clip_rs_pickle_marker",))`.
#[test]
fn os_system_reduce_from_python_is_refused() {
    let err = StateDict::load(&fixture("os_system.pt")).unwrap_err();
    assert_eq!(
        pickle_error(&err),
        &PickleError::UnknownGlobal { module: "posix".into(), name: "system".into() }
    );
    let msg = err.to_string();
    assert!(msg.contains("os_system.pt") && msg.contains("`posix.system`"), "{msg}");
    assert!(!Path::new("clip_rs_pickle_marker").exists());
    assert!(!fixture("clip_rs_pickle_marker").exists());
}

#[test]
fn code_execution_globals_are_refused_and_never_run() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("MARKER");
    let cmd = format!("touch {}", marker.display());
    let call = |module: &str, name: &str, arg: &str, stack_global: bool| {
        let mut p = vec![0x80, if stack_global { 4 } else { 2 }];
        if stack_global {
            push_str(&mut p, module);
            push_str(&mut p, name);
            p.push(0x93);
        } else {
            p.extend_from_slice(format!("c{module}\n{name}\n").as_bytes());
        }
        push_str(&mut p, arg);
        p.extend_from_slice(&[0x85, b'R', b'.']);
        p
    };
    let cases = [
        ("os", "system", cmd.clone(), false),
        ("posix", "system", cmd.clone(), true),
        ("builtins", "eval", format!("__import__('os').system('{cmd}')"), false),
        ("builtins", "exec", format!("__import__('os').system('{cmd}')"), true),
        ("subprocess", "getoutput", cmd.clone(), false),
        ("torch", "load", cmd.clone(), false),
        ("__builtin__", "eval", cmd.clone(), false),
    ];
    for (module, name, arg, stack_global) in cases {
        let path = checkpoint(dir.path(), "evil.pt", &call(module, name, &arg, stack_global), &[]);
        let err = StateDict::load(&path).unwrap_err();
        assert_eq!(
            pickle_error(&err),
            &PickleError::UnknownGlobal { module: module.into(), name: name.into() },
            "{module}.{name}"
        );
        assert!(err.to_string().contains("evil.pt"));
    }
    assert!(!marker.exists());
}

#[test]
fn broken_and_wrong_files_give_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();

    let missing = d.join("nope.pt");
    assert!(
        matches!(StateDict::load(&missing), Err(WeightsError::Missing { path }) if path == missing)
    );
    assert!(matches!(StateDict::load(d), Err(WeightsError::IsDirectory { .. })));

    let text = d.join("notes.pt");
    std::fs::write(&text, "just some text, not weights").unwrap();
    let err = StateDict::load(&text).unwrap_err();
    assert!(
        matches!(err, WeightsError::NotACheckpoint { .. }) && err.to_string().contains("notes.pt"),
        "{err}"
    );
    let empty = d.join("empty.pt");
    std::fs::write(&empty, "").unwrap();
    assert!(StateDict::load(&empty).unwrap_err().to_string().contains("empty"));

    let bytes = std::fs::read(fixture("state_dict.pt")).unwrap();
    let truncated = d.join("truncated.pt");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let err = StateDict::load(&truncated).unwrap_err();
    assert!(
        matches!(err, WeightsError::Zip { .. }) && err.to_string().contains("truncated.pt"),
        "{err}"
    );

    let no_pkl = d.join("no_pkl.pt");
    write_zip(&no_pkl, &[("archive/data/0", b"1234"), ("archive/version", b"3\n")]);
    let err = StateDict::load(&no_pkl).unwrap_err();
    assert!(
        matches!(err, WeightsError::NoDataPkl { .. }) && err.to_string().contains("no_pkl.pt"),
        "{err}"
    );

    // A corrupt data.pkl inside a valid zip.
    let bad_pkl = checkpoint(d, "bad_pkl.pt", b"\x80\x02}X\xff\xff\xff\x00", &[]);
    let err = StateDict::load(&bad_pkl).unwrap_err();
    assert!(matches!(pickle_error(&err), PickleError::Truncated { .. }));
    assert!(
        err.to_string().contains("bad_pkl.pt") && err.to_string().contains("archive/data.pkl"),
        "{err}"
    );
}

#[test]
fn storage_out_of_range_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let data = [0u8; 24]; // six floats
    let cases = [
        ("offset.pt", tensor_pickle("FloatStorage", 6, 5, &[2], &[1])), // elements 5..7 of 6
        ("stride.pt", tensor_pickle("FloatStorage", 6, 0, &[2, 2], &[4, 1])), // reaches element 5 of 6: fine
        ("numel.pt", tensor_pickle("FloatStorage", 60, 0, &[2], &[1])), // storage larger than its entry
        ("past_end.pt", tensor_pickle("FloatStorage", 6, 200, &[], &[])), // scalar past the end
    ];
    for (name, pickle) in cases {
        let path = checkpoint(dir.path(), name, &pickle, &data);
        let result = StateDict::load(&path);
        if name == "stride.pt" {
            assert_eq!(result.unwrap().shape("w"), Some(vec![2, 2]));
            continue;
        }
        let err = result.unwrap_err();
        assert!(
            matches!(&err, WeightsError::StorageOutOfRange { key, .. } if key == "w"),
            "{name}: {err}"
        );
        assert!(err.to_string().contains(name), "{err}");
    }
    let path = checkpoint(
        dir.path(),
        "stride_far.pt",
        &tensor_pickle("FloatStorage", 6, 0, &[2, 2], &[5, 1]),
        &data,
    );
    assert!(matches!(StateDict::load(&path), Err(WeightsError::StorageOutOfRange { .. })));

    // Zero strides turning 24 bytes into 132 MB.
    let expand = tensor_pickle("FloatStorage", 6, 0, &[255, 255, 255, 2], &[0, 0, 0, 0]);
    let path = checkpoint(dir.path(), "expand.pt", &expand, &data);
    let err = StateDict::load(&path).unwrap_err();
    assert!(
        matches!(&err, WeightsError::StorageOutOfRange { .. })
            && err.to_string().contains("expands"),
        "{err}"
    );

    let path = dir.path().join("no_storage.pt");
    write_zip(&path, &[("archive/data.pkl", &tensor_pickle("FloatStorage", 6, 0, &[6], &[1]))]);
    let err = StateDict::load(&path).unwrap_err();
    assert!(
        matches!(&err, WeightsError::MissingStorage { entry, .. } if entry == "archive/data/0"),
        "{err}"
    );
}

#[test]
fn deeply_nested_pickle_is_an_error_not_a_stack_overflow() {
    let n = 100_000;
    let mut p = vec![0x80, 2];
    p.extend(std::iter::repeat_n(b']', n));
    p.extend(std::iter::repeat_n(b'a', n - 1));
    p.push(b'.');
    let dir = tempfile::tempdir().unwrap();
    let path = checkpoint(dir.path(), "deep.pt", &p, &[]);
    let err = StateDict::load(&path).unwrap_err();
    assert!(matches!(pickle_error(&err), PickleError::TooDeep { .. }), "{err}");
}

#[test]
fn unsupported_dtypes_name_the_key_and_dtype() {
    // `torch.save({"x": torch.zeros(2, dtype=torch.uint16)})`
    let err = StateDict::load(&fixture("uint16.pt")).unwrap_err();
    assert!(
        matches!(&err, WeightsError::UnsupportedDtype { key, dtype, .. } if key == "x" && dtype == "uint16"),
        "{err}"
    );
    assert!(err.to_string().contains("uint16.pt"));

    let dir = tempfile::tempdir().unwrap();
    let path = checkpoint(
        dir.path(),
        "complex.pt",
        &tensor_pickle("ComplexFloatStorage", 2, 0, &[2], &[1]),
        &[0; 16],
    );
    let err = StateDict::load(&path).unwrap_err();
    assert!(
        matches!(&err, WeightsError::UnsupportedDtype { key, dtype, .. } if key == "w" && dtype == "ComplexFloat"),
        "{err}"
    );
}

#[test]
fn non_tensor_state_dict_is_explained() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = vec![0x80, 2, b'}'];
    push_str(&mut p, "epoch");
    p.extend_from_slice(&[b'K', 3, b's', b'.']);
    let path = checkpoint(dir.path(), "epoch.pt", &p, &[]);
    let err = StateDict::load(&path).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, WeightsError::Layout { .. }) && msg.contains("`epoch` = int"), "{msg}");
}

// --- download ---------------------------------------------------------------------------------

mod download {
    use super::*;
    use clip_core::clip::weights::download::{
        fetch, model_file, model_names, resolve_model_from, ModelFile,
    };
    use sha2::{Digest, Sha256};
    use std::io::Read;
    use std::net::TcpListener;
    use std::thread::JoinHandle;

    fn sha256(bytes: &[u8]) -> String {
        Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
    }

    fn http(status: &str, body: &[u8], content_length: usize) -> Vec<u8> {
        let mut r = format!(
            "HTTP/1.1 {status}\r\nContent-Length: {content_length}\r\nConnection: close\r\n\r\n"
        )
        .into_bytes();
        r.extend_from_slice(body);
        r
    }

    /// Answers one connection per response on 127.0.0.1; the thread returns the request lines.
    fn serve(responses: Vec<Vec<u8>>) -> (String, JoinHandle<Vec<String>>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let handle = std::thread::spawn(move || {
            let mut requests = Vec::new();
            for response in responses {
                let (mut conn, _) = listener.accept().unwrap();
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    let n = conn.read(&mut buf).unwrap();
                    if n == 0 {
                        break;
                    }
                    request.extend_from_slice(&buf[..n]);
                }
                let text = String::from_utf8_lossy(&request);
                requests.push(text.lines().next().unwrap_or_default().to_string());
                let _ = conn.write_all(&response);
            }
            requests
        });
        (base, handle)
    }

    /// A base URL nothing listens on.
    fn refused_base() -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        drop(listener);
        base
    }

    fn dir_entries(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    // Reference: `clip.available_models()` and `_MODELS["ViT-B/32"]`.
    #[test]
    fn model_table_matches_the_reference() {
        assert_eq!(
            model_names(),
            [
                "RN50",
                "RN101",
                "RN50x4",
                "RN50x16",
                "RN50x64",
                "ViT-B/32",
                "ViT-B/16",
                "ViT-L/14",
                "ViT-L/14@336px"
            ]
        );
        let m =
            model_file("ViT-B/32", clip_core::clip::weights::download::DEFAULT_BASE_URL).unwrap();
        assert_eq!(
            m.url,
            "https://openaipublic.azureedge.net/clip/models/40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af/ViT-B-32.pt"
        );
        assert_eq!(m.file_name, "ViT-B-32.pt");
        assert_eq!(m.sha256, "40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af");
        let m = model_file("ViT-L/14@336px", "http://127.0.0.1:9/mirror/").unwrap();
        assert_eq!(
            m.url,
            "http://127.0.0.1:9/mirror/3035c92b350959924f9f00213499208652fc7ea050643e8b385c2dac08641f02/ViT-L-14-336px.pt"
        );
        let err = model_file("ViT-H/14", "x").unwrap_err().to_string();
        assert!(
            err.contains("ViT-H/14") && err.contains("RN50x64") && err.contains("ViT-L/14@336px"),
            "{err}"
        );
    }

    #[test]
    fn download_is_verified_then_renamed_and_then_reused() {
        let body = b"pretend checkpoint bytes".repeat(1000);
        let (base, server) = serve(vec![http("200 OK", &body, body.len())]);
        let cache = tempfile::tempdir().unwrap();
        let model = ModelFile {
            url: format!("{base}/abc/Tiny.pt"),
            file_name: "Tiny.pt".into(),
            sha256: sha256(&body),
        };
        let path = fetch(&model, cache.path()).unwrap();
        assert_eq!(path, cache.path().join("Tiny.pt"));
        assert_eq!(std::fs::read(&path).unwrap(), body);
        assert_eq!(dir_entries(cache.path()), ["Tiny.pt"]);
        assert_eq!(server.join().unwrap(), ["GET /abc/Tiny.pt HTTP/1.1"]);

        // Present with the right checksum: reused, no request (nothing listens any more).
        let offline = ModelFile { url: format!("{}/abc/Tiny.pt", refused_base()), ..model.clone() };
        assert_eq!(fetch(&offline, cache.path()).unwrap(), path);

        // Present with a wrong checksum: downloaded again, as the reference does.
        std::fs::write(&path, b"stale").unwrap();
        let (base, server) = serve(vec![http("200 OK", &body, body.len())]);
        let again = ModelFile { url: format!("{base}/abc/Tiny.pt"), ..model };
        assert_eq!(fetch(&again, cache.path()).unwrap(), path);
        assert_eq!(std::fs::read(&path).unwrap(), body);
        assert_eq!(server.join().unwrap().len(), 1);
        assert_eq!(dir_entries(cache.path()), ["Tiny.pt"]);
    }

    /// The library prints nothing: a fetch tells its watcher of the stale file, the bytes as they
    /// arrive (with the server's total) and the end, and the application shows them.
    #[test]
    fn a_watched_fetch_reports_the_stale_file_the_progress_and_the_end() {
        use clip_core::clip::weights::download::{fetch_watched, FetchEvent, Watch};
        let body = b"pretend checkpoint bytes".repeat(10_000);
        let (base, server) = serve(vec![http("200 OK", &body, body.len())]);
        let cache = tempfile::tempdir().unwrap();
        std::fs::write(cache.path().join("Tiny.pt"), b"stale").unwrap();
        let model = ModelFile {
            url: format!("{base}/abc/Tiny.pt"),
            file_name: "Tiny.pt".into(),
            sha256: sha256(&body),
        };
        let events = std::cell::RefCell::new(Vec::new());
        let report = |event: FetchEvent| {
            events.borrow_mut().push(match event {
                FetchEvent::Mismatch { path } => format!("stale {}", path.display()),
                FetchEvent::Progress { file_name, received, total } => {
                    format!("{file_name} {received} of {total:?}")
                }
                FetchEvent::Done => "done".to_string(),
            })
        };
        let path = fetch_watched(&model, cache.path(), Watch { stop: &|| false, report: &report })
            .unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), body);
        assert_eq!(server.join().unwrap().len(), 1);
        let events = events.into_inner();
        assert_eq!(events.first(), Some(&format!("stale {}", path.display())));
        assert_eq!(events.last().map(String::as_str), Some("done"));
        let total = body.len();
        assert_eq!(events[events.len() - 2], format!("Tiny.pt {total} of Some({total})"));
        assert!(events.len() > 3, "progress comes in chunks: {events:?}");
    }

    #[test]
    fn checksum_mismatch_is_an_error_and_leaves_nothing() {
        let body = b"not the real RN50".to_vec();
        let (base, server) = serve(vec![http("200 OK", &body, body.len())]);
        let cache = tempfile::tempdir().unwrap();
        let err = resolve_model_from("RN50", Some(cache.path()), &base).unwrap_err();
        let url = format!(
            "{base}/afeb0e10f9e5a86da6080e35cf09123aca3b358a0c3e3b6c78a7b63bc04b6762/RN50.pt"
        );
        match &err {
            WeightsError::Checksum { url: u, expected, actual, .. } => {
                assert_eq!(u, &url);
                assert_eq!(
                    expected,
                    "afeb0e10f9e5a86da6080e35cf09123aca3b358a0c3e3b6c78a7b63bc04b6762"
                );
                assert_eq!(actual, &sha256(&body));
            }
            other => panic!("expected a checksum error, got {other}"),
        }
        let msg = err.to_string();
        assert!(
            msg.contains(&url) && msg.contains("--weights PATH") && msg.contains("RN50.pt"),
            "{msg}"
        );
        assert_eq!(server.join().unwrap().len(), 1);
        assert!(dir_entries(cache.path()).is_empty(), "{:?}", dir_entries(cache.path()));
    }

    #[test]
    fn connection_refused_http_errors_and_short_bodies_name_the_url() {
        let cache = tempfile::tempdir().unwrap();
        let base = refused_base();
        let err = resolve_model_from("ViT-B/32", Some(cache.path()), &base).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, WeightsError::Download { .. }), "{msg}");
        assert!(msg.contains(&format!("{base}/40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af/ViT-B-32.pt")), "{msg}");
        assert!(
            msg.contains("--weights PATH")
                && msg.contains(&cache.path().join("ViT-B-32.pt").display().to_string()),
            "{msg}"
        );

        let (base, server) =
            serve(vec![http("404 Not Found", b"no", 2), http("200 OK", b"short", 1000)]);
        let err = resolve_model_from("RN101", Some(cache.path()), &base).unwrap_err().to_string();
        assert!(err.contains(&base) && err.contains("404"), "{err}");
        let err = resolve_model_from("RN101", Some(cache.path()), &base).unwrap_err();
        assert!(matches!(err, WeightsError::Download { .. }), "{err}");
        assert_eq!(server.join().unwrap().len(), 2);
        assert!(dir_entries(cache.path()).is_empty(), "{:?}", dir_entries(cache.path()));
    }

    #[test]
    fn a_directory_in_the_way_is_an_error() {
        let cache = tempfile::tempdir().unwrap();
        std::fs::create_dir(cache.path().join("RN50.pt")).unwrap();
        let err = resolve_model_from("RN50", Some(cache.path()), &refused_base()).unwrap_err();
        assert!(matches!(err, WeightsError::IsDirectory { .. }), "{err}");
    }
}

#[test]
fn errors_work_with_anyhow() {
    fn send_sync<T: std::error::Error + Send + Sync + 'static>() {}
    send_sync::<WeightsError>();
}
