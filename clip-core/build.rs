//! clip-core's build script: libtorch's link fixes (shared with the binary crates), then the
//! CUDA-graph shim (`csrc/cuda_graph.cpp`, see `src/cuda_graph.rs`).
//!
//! The shim is compiled against libtorch's headers when libtorch has CUDA (`libtorch_cuda.so`) and
//! the CUDA runtime headers are found: `$CLIP_CUDA_INCLUDE`, else PyPI's `nvidia/cu13/include` next
//! to torch (with `nvidia-cuda-crt`'s `crt/host_config.h`, which `scripts/setup.sh` installs), else
//! `$CUDA_HOME/include`, else `/usr/local/cuda/include`. Otherwise the library is built without it
//! and every step runs eagerly; the reason is compiled in (`CLIP_CUDA_GRAPH_MISSING`) so that
//! the fallback names it, and shown once as a cargo warning.

#[path = "../build/link_libtorch.rs"]
mod link_libtorch;

use std::path::{Path, PathBuf};

const SHIM: &str = "csrc/cuda_graph.cpp";

fn main() {
    link_libtorch::main();
    println!("cargo:rerun-if-changed={SHIM}");
    println!("cargo:rerun-if-env-changed=CLIP_CUDA_INCLUDE");
    println!("cargo:rerun-if-env-changed=CUDA_HOME");
    println!("cargo:rustc-check-cfg=cfg(clip_cuda_graph)");
    let has_cuda = std::env::var("DEP_TCH_LIBTORCH_LIB")
        .is_ok_and(|lib| Path::new(&lib).join("libtorch_cuda.so").exists());
    println!("cargo:rustc-env=CLIP_LIBTORCH_HAS_CUDA={}", u8::from(has_cuda));
    match shim_inputs() {
        Ok((torch_include, cuda_include)) => {
            let mut build = cc::Build::new();
            build.cpp(true).file(SHIM).std("c++17").define("_GLIBCXX_USE_CXX11_ABI", "1");
            // -isystem: libtorch's own headers are not warning-clean under -Wextra.
            for dir in
                [torch_include.clone(), torch_include.join("torch/csrc/api/include"), cuda_include]
            {
                build.flag("-isystem").flag(dir.to_string_lossy().as_ref());
            }
            build.compile("clip_cuda_graph");
            println!("cargo:rustc-link-lib=dylib=torch_cuda");
            println!("cargo:rustc-link-lib=dylib=c10_cuda");
            println!("cargo:rustc-cfg=clip_cuda_graph");
        }
        Err(reason) => {
            println!("cargo:warning=CUDA graphs disabled: {reason}");
            println!("cargo:rustc-env=CLIP_CUDA_GRAPH_MISSING={reason}");
        }
    }
}

/// libtorch's include dir and the CUDA runtime's, or why the shim cannot be built.
fn shim_inputs() -> Result<(PathBuf, PathBuf), String> {
    let lib = std::env::var("DEP_TCH_LIBTORCH_LIB")
        .map_err(|_| "torch-sys did not say where libtorch is".to_string())?;
    // Resolved: `.libtorch` (scripts/setup.sh) is a link into the cached venv, and the CUDA
    // headers are found relative to where torch really is.
    let lib = std::fs::canonicalize(&lib).unwrap_or_else(|_| PathBuf::from(lib));
    if !lib.join("libtorch_cuda.so").exists() {
        return Err(format!("libtorch at {} has no CUDA (no libtorch_cuda.so)", lib.display()));
    }
    let torch_include = lib.parent().map(|t| t.join("include")).unwrap_or_default();
    if !torch_include.join("ATen/cuda/CUDAGraph.h").exists() {
        return Err(format!("no ATen/cuda/CUDAGraph.h under {}", torch_include.display()));
    }
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Ok(dir) = std::env::var("CLIP_CUDA_INCLUDE") {
        candidates.push(dir.into());
    }
    // PyPI: site-packages/torch/lib → site-packages/nvidia/cu13/include.
    if let Some(site) = lib.parent().and_then(Path::parent) {
        candidates.push(site.join("nvidia/cu13/include"));
    }
    if let Ok(home) = std::env::var("CUDA_HOME") {
        candidates.push(Path::new(&home).join("include"));
    }
    candidates.push("/usr/local/cuda/include".into());
    let complete = |dir: &Path| {
        dir.join("cuda_runtime_api.h").exists() && dir.join("crt/host_config.h").exists()
    };
    candidates.iter().find(|d| complete(d)).map(|d| (torch_include.clone(), d.clone())).ok_or_else(
        || {
            let tried: Vec<String> = candidates.iter().map(|d| d.display().to_string()).collect();
            format!(
                "no CUDA runtime headers (cuda_runtime_api.h and crt/host_config.h) in {}; \
                 run scripts/setup.sh (installs nvidia-cuda-crt) or set CLIP_CUDA_INCLUDE",
                tried.join(", ")
            )
        },
    )
}
