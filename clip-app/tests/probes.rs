//! `clip compare`'s robustness probes against the reference libraries, on the fixtures of
//! `scripts/make_probe_fixtures.py` (torchvision 0.26, Pillow 13): `blur:SIGMA` byte for byte
//! equal to torchvision's `F.gaussian_blur` on a PIL image, `down:K` to Pillow's bicubic down and
//! back up, and `rotate:DEG` to `F.rotate(img, DEG, BILINEAR, fill=0)` (Pillow's `rotate`).

use clip_app::compare::{blur_kernel_size, down_up, gaussian_blur, rotate_bilinear};
use clip_core::clip::preprocess::load_rgb;
use image::RgbImage;
use std::path::PathBuf;

const STEMS: [&str; 2] = ["wide_96x64", "odd_45x67"];

fn fixture(name: &str) -> RgbImage {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../clip-core/tests/fixtures/probes")
        .join(name);
    load_rgb(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Asserts byte equality, saying how many bytes differ and by how much when not.
fn assert_same(ours: &RgbImage, reference: &RgbImage, what: &str) {
    assert_eq!(ours.dimensions(), reference.dimensions(), "{what}");
    let diffs: Vec<i32> = ours
        .as_raw()
        .iter()
        .zip(reference.as_raw())
        .map(|(a, b)| *a as i32 - *b as i32)
        .filter(|d| *d != 0)
        .collect();
    let worst = diffs.iter().map(|d| d.abs()).max().unwrap_or(0);
    assert!(diffs.is_empty(), "{what}: {} bytes differ, by up to {worst}", diffs.len());
}

#[test]
fn blur_is_torchvisions_gaussian_blur_exactly() {
    assert_eq!(blur_kernel_size(1.0), 7);
    assert_eq!(blur_kernel_size(1.5), 11);
    assert_eq!(blur_kernel_size(0.7), 7, "3 * 0.7 is 2.1000000000000000888: ceil 3");
    for stem in STEMS {
        let img = fixture(&format!("{stem}.png"));
        for sigma in ["0.7", "1", "1.5"] {
            let reference = fixture(&format!("{stem}.blur{sigma}.png"));
            let ours = gaussian_blur(&img, sigma.parse().expect("a number")).expect("blurs");
            assert_same(&ours, &reference, &format!("{stem} blur:{sigma}"));
        }
    }
}

#[test]
fn down_is_pillows_bicubic_down_and_up_exactly() {
    for stem in STEMS {
        let img = fixture(&format!("{stem}.png"));
        for factor in [2, 3] {
            let reference = fixture(&format!("{stem}.down{factor}.png"));
            assert_same(&down_up(&img, factor), &reference, &format!("{stem} down:{factor}"));
        }
    }
}

#[test]
fn rotate_is_torchvisions_rotate_on_a_pil_image() {
    for stem in STEMS {
        let img = fixture(&format!("{stem}.png"));
        for degrees in ["5", "-5", "30"] {
            let reference = fixture(&format!("{stem}.rotate{degrees}.png"));
            let ours = rotate_bilinear(&img, degrees.parse().expect("a number"));
            assert_same(&ours, &reference, &format!("{stem} rotate {degrees}"));
        }
    }
}
