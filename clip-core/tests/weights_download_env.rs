//! `CLIP_DOWNLOAD_BASE_URL` replaces the download prefix. In its own test binary because it sets
//! an environment variable, which must not race with other tests' threads.

use clip_core::clip::weights::{resolve_model, WeightsError};

#[test]
fn base_url_comes_from_the_environment() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}/mirror", listener.local_addr().unwrap());
    drop(listener); // nothing listens: the error must name the mirror URL
    std::env::set_var("CLIP_DOWNLOAD_BASE_URL", &base);
    let cache = tempfile::tempdir().unwrap();
    let err = resolve_model("RN50x4", Some(cache.path())).unwrap_err();
    let url = format!(
        "{base}/7e526bd135e493cef0776de27d5f42653e6b4c8bf9e0f653bb11773263205fdd/RN50x4.pt"
    );
    assert!(matches!(&err, WeightsError::Download { url: u, .. } if *u == url), "{err}");
    assert!(std::fs::read_dir(cache.path()).unwrap().next().is_none());
}
