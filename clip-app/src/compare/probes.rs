//! Robustness probes for `clip compare --probes`: each image (result or real photo) is perturbed
//! and scored again under every model. Does a generated image keep its score when it is
//! JPEG-compressed, blurred, downscaled, rotated or noised, as a photo of the thing would?
//!
//! Where a probe acts: on the image as it is read, `PIL.Image.open(path).convert("RGB")` — 8-bit
//! RGB at its own size ([`preprocess::load_rgb`]) — and the perturbed 8-bit image then goes
//! through CLIP's usual preprocessing (`Resize` + `CenterCrop` + `ToTensor` + `Normalize`,
//! [`preprocess::preprocess_image`]) and the model. (The unperturbed score resizes a palette or
//! alpha image in its own PIL mode, as `clip._transform` does; a probe works on its RGB
//! conversion. The results `clip generate` writes are RGB, where the two agree.)
//!
//! - `jpeg:Q` — encoded at quality Q (1–100) and decoded, both by the `image` crate: IJG's
//!   quantisation tables scaled by libjpeg's quality formula, but its own DCT and no chroma
//!   subsampling (Pillow's libjpeg uses 4:2:0 by default), decoded by zune-jpeg. Not libjpeg's:
//!   scores differ slightly from those of `img.save(f, "JPEG", quality=Q)` read back by PIL.
//!   JPEG's sides are at most 65 535 pixels; a longer image is left without this probe (warned).
//! - `blur:SIGMA` — torchvision 0.26's `F.gaussian_blur(img, [k, k], [SIGMA, SIGMA])` on the PIL
//!   image with k = 2⌈3·SIGMA⌉ + 1, exactly: the same libtorch ops in the same order
//!   (`_get_gaussian_kernel1d` in float32: `linspace`, `exp(-0.5 * (x / σ)²)`, divided by its
//!   sum; the 2-D kernel as `mm` of the two; `pil_to_tensor`, cast to float32, `reflect`
//!   padding of k // 2, a grouped `conv2d`, `round` (half to even) and the cast back to uint8),
//!   the convolution run on strips of rows so that its memory stays bounded (byte for byte the
//!   same). Reflection needs each side longer than k // 2 (torchvision raises otherwise): a smaller
//!   image is left without this probe (warned). 0 < SIGMA ≤ 64.
//! - `down:K` — Pillow's `img.resize((w // K, h // K), BICUBIC).resize((w, h), BICUBIC)`, exactly
//!   ([`preprocess::resize_bicubic`]): the small side is floored, and a side that would be 0 is 1
//!   (Pillow refuses a size of 0). K an integer ≥ 2.
//! - `rotate:DEG` — torchvision's `F.rotate(img, ±DEG, InterpolationMode.BILINEAR, fill=0)` on the
//!   PIL image, which is Pillow's `img.rotate(±DEG, Image.BILINEAR, fillcolor=(0, 0, 0))` (same
//!   size, about the centre, counter-clockwise for positive angles): ported from Pillow 13's
//!   `Image.rotate` (the matrix, its cosines rounded to 15 decimals, the 0/90/180/270 shortcuts)
//!   and `Geometry.c` (`affine_transform`, `bilinear_filter32RGB`: edge pixels clamped, outside
//!   black, the value truncated to 8 bits), exact on the fixtures. The similarity is the mean of
//!   the two rotations' (+DEG and −DEG). 0 < DEG ≤ 180.
//! - `noise:SD` — Gaussian noise N(0, SD²) in [0, 1] pixel units added to every channel of every
//!   pixel, clamped to [0, 1] and rounded to 8 bits (half away from zero): `round(clamp(v / 255 +
//!   SD·z, 0, 1) · 255)`. The normals z come from a fixed seed per image: the first 8 bytes
//!   (little-endian) of the SHA-256 of its width and height (`u32` little-endian each) and its
//!   RGB bytes ([`noise_seed`]), through SplitMix64 and Box–Muller (both of a pair used), in the
//!   bytes' order (rows, then pixels, then R, G, B). The same image gets the same noise in every
//!   run and under every model, whatever its name; two SDs get the same pattern, scaled. 0 < SD ≤ 1.
//!
//! `--probes` takes these comma-separated, in order (`none`: no probe; the default is
//! [`DEFAULT_PROBES`]); an unknown probe, a malformed or out-of-range parameter, a probe given
//! twice or `none` beside others is refused, naming it.

use clip_core::clip::preprocess;
use image::RgbImage;
use sha2::{Digest, Sha256};
use std::fmt;
use std::str::FromStr;
use tch::{Device, Kind, Tensor};

/// `--probes`' default.
pub const DEFAULT_PROBES: &str = "jpeg:75,blur:1,down:2,rotate:5,noise:0.03";

/// The largest `blur` σ: its kernel is 2⌈3σ⌉ + 1 = 385 pixels wide.
pub const MAX_BLUR_SIGMA: f64 = 64.0;

/// One perturbation of an image (see the module's documentation for what each mirrors).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Probe {
    /// `jpeg:Q`: encoded and decoded at quality Q (1–100).
    Jpeg { quality: u8 },
    /// `blur:SIGMA`: torchvision's Gaussian blur, kernel 2⌈3σ⌉ + 1.
    Blur { sigma: f64 },
    /// `down:K`: Pillow's bicubic down by K and back up.
    Down { factor: u32 },
    /// `rotate:DEG`: bilinear rotations by +DEG and −DEG, zero fill; the mean of their scores.
    Rotate { degrees: f64 },
    /// `noise:SD`: Gaussian noise of standard deviation SD in [0, 1] units, clamped.
    Noise { sd: f64 },
}

/// Why a `--probes` list was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ProbeParseError {
    #[error("unknown probe {0} (expected jpeg:Q, blur:SIGMA, down:K, rotate:DEG or noise:SD, comma-separated, or none)")]
    Unknown(String),
    #[error("probe {probe}: {expected}")]
    BadParameter { probe: String, expected: &'static str },
    #[error("probe {0} is given twice")]
    Duplicate(String),
    #[error("`none` turns the probes off and cannot be given with others ({0})")]
    NoneWithOthers(String),
    #[error("an empty probe in {0} (use `none` for no probes)")]
    Empty(String),
}

/// Why a probe could not be applied to an image (the image is left without that probe's score).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ProbeError {
    #[error("JPEG cannot hold a {width}x{height} image (at most 65535 pixels a side)")]
    TooLargeForJpeg { width: u32, height: u32 },
    #[error("JPEG round trip failed: {0}")]
    Jpeg(String),
    #[error(
        "a {width}x{height} image is too small for blur:{sigma}'s reflect padding of {pad} \
         (torchvision's gaussian_blur needs each side longer than it)"
    )]
    TooSmallForBlur { width: u32, height: u32, sigma: f64, pad: u32 },
    #[error("libtorch: {0}")]
    Torch(String),
}

impl From<tch::TchError> for ProbeError {
    fn from(e: tch::TchError) -> Self {
        ProbeError::Torch(e.to_string())
    }
}

impl fmt::Display for Probe {
    /// The canonical spelling, as `--probes` takes it and `robustness.csv` names it: `jpeg:75`,
    /// `blur:1.5`, `down:2`, `rotate:5`, `noise:0.03` (numbers as Rust prints an `f64`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Probe::Jpeg { quality } => write!(f, "jpeg:{quality}"),
            Probe::Blur { sigma } => write!(f, "blur:{sigma}"),
            Probe::Down { factor } => write!(f, "down:{factor}"),
            Probe::Rotate { degrees } => write!(f, "rotate:{degrees}"),
            Probe::Noise { sd } => write!(f, "noise:{sd}"),
        }
    }
}

/// A number in `(0, max]`.
fn positive(text: &str, max: f64) -> Option<f64> {
    text.parse::<f64>().ok().filter(|v| v.is_finite() && *v > 0.0 && *v <= max)
}

impl FromStr for Probe {
    type Err = ProbeParseError;

    /// `NAME:PARAMETER` (see [`Probe`]); spaces around either part are ignored.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let shown = || clip_core::clip::excerpt::excerpt(s.trim());
        let bad = |expected| ProbeParseError::BadParameter { probe: shown(), expected };
        let Some((name, value)) = s.split_once(':') else {
            return Err(match s.trim() {
                "jpeg" | "blur" | "down" | "rotate" | "noise" => {
                    bad("a parameter is needed, e.g. blur:1")
                }
                _ => ProbeParseError::Unknown(shown()),
            });
        };
        let value = value.trim();
        match name.trim() {
            "jpeg" => match value.parse::<u8>() {
                Ok(quality) if (1..=100).contains(&quality) => Ok(Probe::Jpeg { quality }),
                _ => Err(bad("Q must be an integer quality from 1 to 100")),
            },
            "blur" => positive(value, MAX_BLUR_SIGMA)
                .map(|sigma| Probe::Blur { sigma })
                .ok_or_else(|| bad("SIGMA must be a number > 0 and ≤ 64 (pixels)")),
            "down" => match value.parse::<u32>() {
                Ok(factor) if factor >= 2 => Ok(Probe::Down { factor }),
                _ => Err(bad("K must be an integer factor ≥ 2")),
            },
            "rotate" => positive(value, 180.0)
                .map(|degrees| Probe::Rotate { degrees })
                .ok_or_else(|| bad("DEG must be a number of degrees > 0 and ≤ 180")),
            "noise" => positive(value, 1.0)
                .map(|sd| Probe::Noise { sd })
                .ok_or_else(|| bad("SD must be a number > 0 and ≤ 1 (in [0, 1] pixel units)")),
            _ => Err(ProbeParseError::Unknown(shown())),
        }
    }
}

/// The probes of `--probes LIST`: comma-separated [`Probe`]s in order, or `none` (empty).
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeList(pub Vec<Probe>);

impl Default for ProbeList {
    /// [`DEFAULT_PROBES`].
    fn default() -> Self {
        // The default list is valid (a unit test says so); an empty list is never reached.
        DEFAULT_PROBES.parse().unwrap_or(ProbeList(Vec::new()))
    }
}

impl FromStr for ProbeList {
    type Err = ProbeParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.trim() == "none" {
            return Ok(ProbeList(Vec::new()));
        }
        let mut probes: Vec<Probe> = Vec::new();
        for part in s.split(',') {
            if part.trim().is_empty() {
                return Err(ProbeParseError::Empty(clip_core::clip::excerpt::excerpt(s)));
            }
            if part.trim() == "none" {
                return Err(ProbeParseError::NoneWithOthers(clip_core::clip::excerpt::excerpt(s)));
            }
            let probe: Probe = part.parse()?;
            // `blur:1` and `blur:1.0` are the same probe: compared as they are named.
            if probes.iter().any(|p| p.to_string() == probe.to_string()) {
                return Err(ProbeParseError::Duplicate(probe.to_string()));
            }
            probes.push(probe);
        }
        Ok(ProbeList(probes))
    }
}

impl fmt::Display for ProbeList {
    /// `none`, or the probes joined by commas.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("none");
        }
        let names: Vec<String> = self.0.iter().map(Probe::to_string).collect();
        f.write_str(&names.join(","))
    }
}

impl Probe {
    /// How many perturbed images the probe scores (their similarities are averaged): 2 for
    /// `rotate` (+DEG and −DEG), else 1.
    pub fn views(&self) -> usize {
        match self {
            Probe::Rotate { .. } => 2,
            _ => 1,
        }
    }

    /// The perturbed image of view `view` (< [`Probe::views`]).
    pub fn apply(&self, img: &RgbImage, view: usize) -> Result<RgbImage, ProbeError> {
        match *self {
            Probe::Jpeg { quality } => jpeg_round_trip(img, quality),
            Probe::Blur { sigma } => gaussian_blur(img, sigma),
            Probe::Down { factor } => Ok(down_up(img, factor)),
            Probe::Rotate { degrees } => {
                Ok(rotate_bilinear(img, if view == 0 { degrees } else { -degrees }))
            }
            Probe::Noise { sd } => Ok(add_noise(img, sd, noise_seed(img))),
        }
    }
}

/// `jpeg:Q`: encoded at quality `quality` and decoded by the `image` crate (not libjpeg; see the
/// module's documentation).
pub fn jpeg_round_trip(img: &RgbImage, quality: u8) -> Result<RgbImage, ProbeError> {
    let (width, height) = img.dimensions();
    if width > u16::MAX as u32 || height > u16::MAX as u32 || width == 0 || height == 0 {
        return Err(ProbeError::TooLargeForJpeg { width, height });
    }
    let mut bytes = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, quality.clamp(1, 100))
        .encode_image(img)
        .map_err(|e| ProbeError::Jpeg(e.to_string()))?;
    let decoded = image::load_from_memory_with_format(&bytes, image::ImageFormat::Jpeg)
        .map_err(|e| ProbeError::Jpeg(e.to_string()))?;
    Ok(decoded.to_rgb8())
}

/// The kernel size of `blur:SIGMA`: 2⌈3σ⌉ + 1.
pub fn blur_kernel_size(sigma: f64) -> i64 {
    2 * (3.0 * sigma).ceil() as i64 + 1
}

/// How many floats one strip of [`gaussian_blur`]'s convolution may unfold: libtorch's CPU
/// `conv2d` for this grouped convolution unfolds k² values per pixel (49 for σ = 1), which for a
/// whole 12-megapixel image is 2.3 GB; in strips of rows it stays near 64 MiB.
pub const BLUR_STRIP_FLOATS: usize = 16 << 20;

/// `F.gaussian_blur(img, [k, k], [sigma, sigma])` on an RGB PIL image, k = [`blur_kernel_size`],
/// bit for bit: torchvision 0.26's `_functional_tensor.gaussian_blur` op for op, in libtorch, on
/// the CPU. The convolution runs on strips of rows ([`BLUR_STRIP_FLOATS`]); each output pixel is
/// the same dot product of the same inputs as in one pass over the whole image (a unit test
/// checks strips against the whole).
pub fn gaussian_blur(img: &RgbImage, sigma: f64) -> Result<RgbImage, ProbeError> {
    gaussian_blur_in_strips(img, sigma, BLUR_STRIP_FLOATS)
}

/// torchvision's `_get_gaussian_kernel1d(k, sigma, float32)`, then `_get_gaussian_kernel2d`'s
/// outer product, expanded to `[3, 1, k, k]` as `gaussian_blur` does.
fn blur_kernel(k: i64, sigma: f64) -> Result<Tensor, ProbeError> {
    let half = (k - 1) as f64 * 0.5;
    let x = Tensor::f_linspace(-half, half, k, (Kind::Float, Device::Cpu))?;
    let pdf = x.f_div_scalar(sigma)?.f_pow_tensor_scalar(2)?.f_mul_scalar(-0.5)?.f_exp()?;
    let kernel1d = pdf.f_div(&pdf.f_sum(None::<Kind>)?)?;
    let kernel = kernel1d.f_unsqueeze(1)?.f_mm(&kernel1d.f_unsqueeze(0)?)?;
    Ok(kernel.f_expand([3, 1, k, k], false)?)
}

/// `torch.nn.functional.pad(mode="reflect")`'s source index for index `i` of an axis padded on
/// both sides (`i` from `-pad` to `size + pad - 1`, `pad < size`).
fn reflect(i: i64, size: i64) -> usize {
    let i = if i < 0 { -i } else { i };
    (if i >= size { 2 * (size - 1) - i } else { i }) as usize
}

/// [`gaussian_blur`] with strips of at most about `strip_floats` unfolded values (at least one
/// row).
fn gaussian_blur_in_strips(
    img: &RgbImage,
    sigma: f64,
    strip_floats: usize,
) -> Result<RgbImage, ProbeError> {
    let (width, height) = img.dimensions();
    let k = blur_kernel_size(sigma);
    let pad = k / 2;
    if pad >= width as i64 || pad >= height as i64 {
        return Err(ProbeError::TooSmallForBlur { width, height, sigma, pad: pad as u32 });
    }
    let kernel = blur_kernel(k, sigma)?;
    let (w, h) = (width as i64, height as i64);
    let (pw, src) = (w + 2 * pad, img.as_raw());
    let rows_per_strip = (strip_floats / (k * k * w).max(1) as usize).max(1) as i64;
    let mut raw = vec![0u8; src.len()];
    let mut top = 0i64;
    while top < h {
        let rows = rows_per_strip.min(h - top);
        let ph = rows + 2 * pad;
        // `pil_to_tensor` ([3, H, W] uint8) and `reflect` padding of this strip's rows (a copy of
        // bytes: the same values as padding after the cast), then `_cast_squeeze_in`'s float32.
        let mut planes = vec![0u8; (3 * ph * pw) as usize];
        for y in 0..ph {
            let sy = reflect(top + y - pad, h);
            for x in 0..pw {
                let at = (sy * width as usize + reflect(x - pad, w)) * 3;
                for c in 0..3 {
                    planes[((c as i64 * ph + y) * pw + x) as usize] = src[at + c];
                }
            }
        }
        let strip =
            Tensor::f_from_slice(&planes)?.f_view([1, 3, ph, pw])?.f_to_kind(Kind::Float)?;
        let blurred = strip.f_conv2d(&kernel, None::<Tensor>, [1, 1], [0, 0], [1, 1], 3)?;
        // `_cast_squeeze_out`: round (half to even), then cast to uint8.
        let out = blurred
            .f_squeeze_dim(0)?
            .f_round()?
            .f_to_kind(Kind::Uint8)?
            .f_permute([1, 2, 0])?
            .f_contiguous()?;
        let bytes = Vec::<u8>::try_from(&out.f_view([-1])?)?;
        let start = (top * w * 3) as usize;
        match raw.get_mut(start..start + bytes.len()) {
            Some(dst) if bytes.len() == (rows * w * 3) as usize => dst.copy_from_slice(&bytes),
            _ => return Err(ProbeError::Torch("a blurred strip has the wrong size".to_string())),
        }
        top += rows;
    }
    RgbImage::from_raw(width, height, raw)
        .ok_or_else(|| ProbeError::Torch("the blurred image has the wrong size".to_string()))
}

/// Estimated seconds above which [`blur_cost_note`] speaks.
pub const BLUR_NOTE_SECONDS: f64 = 60.0;

/// Multiply-adds of `blur:SIGMA` on an image of `pixels` pixels: torchvision's 2-D kernel, k² per
/// pixel and channel (not separable: the probe matches `F.gaussian_blur` bit for bit).
pub fn blur_multiply_adds(sigma: f64, pixels: u64) -> f64 {
    let k = blur_kernel_size(sigma) as f64;
    pixels as f64 * 3.0 * k * k
}

/// This CPU's multiply-adds per second in [`gaussian_blur`], measured on a small image (σ = 4 on
/// 160×160: about 0.05 G multiply-adds).
pub fn blur_rate() -> Result<f64, ProbeError> {
    let (side, sigma) = (160u32, 4.0);
    let img = RgbImage::from_fn(side, side, |x, y| image::Rgb([(x * 7) as u8, (y * 13) as u8, 99]));
    let started = std::time::Instant::now();
    gaussian_blur(&img, sigma)?;
    let seconds = started.elapsed().as_secs_f64().max(1e-6);
    Ok(blur_multiply_adds(sigma, (side * side) as u64) / seconds)
}

/// A note when the `blur` probes of `probes` would take longer than [`BLUR_NOTE_SECONDS`] on
/// images of `pixels` pixels each, scored under `models` models (each blurs every image again),
/// at `rate` multiply-adds per second ([`blur_rate`]): the estimate, per 224×224 image and in all,
/// and what a quarter of the σ would cost. `None` when they are quick.
pub fn blur_cost_note(
    probes: &[Probe],
    pixels: &[u64],
    models: usize,
    rate: f64,
) -> Option<String> {
    let sigmas: Vec<f64> = probes
        .iter()
        .filter_map(|p| match p {
            Probe::Blur { sigma } => Some(*sigma),
            _ => None,
        })
        .collect();
    let seconds = |sigma: f64| -> f64 {
        pixels.iter().map(|&n| blur_multiply_adds(sigma, n)).sum::<f64>() * models as f64 / rate
    };
    let total: f64 = sigmas.iter().map(|&s| seconds(s)).sum();
    if total <= BLUR_NOTE_SECONDS || !total.is_finite() {
        return None;
    }
    let slowest = sigmas.iter().copied().fold(0.0, f64::max);
    let k = blur_kernel_size(slowest);
    let smaller = (slowest / 4.0).max(1.0);
    Some(format!(
        "blur:{slowest} convolves with a {k}×{k} kernel, as torchvision's gaussian_blur does (the \
         cost grows with σ² and with the pixels): about {} per 224×224 image on this CPU; the \
         blur probes will take about {} for these {} image(s) under {models} model(s) \
         (blur:{smaller}: about {})",
        duration(blur_multiply_adds(slowest, 224 * 224) / rate),
        duration(total),
        pixels.len(),
        duration(seconds(smaller))
    ))
}

/// Seconds as `12 s`, `3.5 min` or `2.1 h`.
fn duration(seconds: f64) -> String {
    if seconds < 90.0 {
        format!("{seconds:.0} s")
    } else if seconds < 5400.0 {
        format!("{:.1} min", seconds / 60.0)
    } else {
        format!("{:.1} h", seconds / 3600.0)
    }
}

/// `down:K`: Pillow's `img.resize((w // K, h // K), BICUBIC).resize((w, h), BICUBIC)`, a side of
/// 0 made 1.
pub fn down_up(img: &RgbImage, factor: u32) -> RgbImage {
    let (w, h) = img.dimensions();
    let factor = factor.max(1);
    let small = preprocess::resize_bicubic(img, (w / factor).max(1), (h / factor).max(1));
    preprocess::resize_bicubic(&small, w, h)
}

/// Python's `round(v, 15)`: correctly rounded to 15 decimals, then read back.
fn round15(v: f64) -> f64 {
    format!("{v:.15}").parse().unwrap_or(v)
}

/// Pillow's `img.rotate(degrees, Image.BILINEAR, fillcolor=(0, 0, 0))` on an RGB image (same
/// size, about `(w / 2, h / 2)`, counter-clockwise), as `F.rotate(img, degrees, BILINEAR,
/// fill=0)` does on a PIL image.
pub fn rotate_bilinear(img: &RgbImage, degrees: f64) -> RgbImage {
    use image::imageops;
    let (w, h) = img.dimensions();
    // Python's `angle % 360.0` takes the sign of 360.
    let angle = degrees.rem_euclid(360.0);
    if angle == 0.0 || !angle.is_finite() {
        return img.clone();
    }
    if angle == 180.0 {
        return imageops::rotate180(img);
    }
    // `Transpose.ROTATE_90` turns counter-clockwise; `imageops::rotate270` is that.
    if angle == 90.0 && w == h {
        return imageops::rotate270(img);
    }
    if angle == 270.0 && w == h {
        return imageops::rotate90(img);
    }
    let (cx, cy) = (w as f64 / 2.0, h as f64 / 2.0);
    let a = -(angle * (std::f64::consts::PI / 180.0));
    let mut m = [round15(a.cos()), round15(a.sin()), 0.0, round15(-a.sin()), round15(a.cos()), 0.0];
    m[2] = m[0] * -cx + m[1] * -cy + m[2] + cx;
    m[5] = m[3] * -cx + m[4] * -cy + m[5] + cy;
    let (wi, hi) = (w as i64, h as i64);
    let src = img.as_raw();
    let at = |x: i64, y: i64, c: usize| src[(y as usize * w as usize + x as usize) * 3 + c] as i32;
    let clip = |v: i64, size: i64| v.clamp(0, size - 1);
    let mut out = RgbImage::new(w, h);
    for (x, y, px) in out.enumerate_pixels_mut() {
        // `affine_transform`: the output pixel's centre mapped back into the source.
        let (xo, yo) = (x as f64 + 0.5, y as f64 + 0.5);
        let xin = m[0] * xo + m[1] * yo + m[2];
        let yin = m[3] * xo + m[4] * yo + m[5];
        // `BILINEAR_HEAD`: outside the source, the fill colour (black) stays.
        if !(xin >= 0.0 && xin < w as f64 && yin >= 0.0 && yin < h as f64) {
            continue;
        }
        let (xin, yin) = (xin - 0.5, yin - 0.5);
        let (x0, y0) = (xin.floor() as i64, yin.floor() as i64);
        let (dx, dy) = (xin - x0 as f64, yin - y0 as f64);
        let (xa, xb) = (clip(x0, wi), clip(x0 + 1, wi));
        let row = clip(y0, hi);
        for c in 0..3 {
            let lerp = |a: i32, b: i32, d: f64| a as f64 + (b - a) as f64 * d;
            let v1 = lerp(at(xa, row, c), at(xb, row, c), dx);
            let v2 = if y0 + 1 >= 0 && y0 + 1 < hi {
                lerp(at(xa, y0 + 1, c), at(xb, y0 + 1, c), dx)
            } else {
                v1
            };
            // `(UINT8)v1`: truncated (the value is within [0, 255]).
            px.0[c] = (v1 + (v2 - v1) * dy) as u8;
        }
    }
    out
}

/// The seed of an image's noise: the first 8 bytes, little-endian, of the SHA-256 of its width
/// and height (`u32` little-endian) and its RGB bytes.
pub fn noise_seed(img: &RgbImage) -> u64 {
    let mut hash = Sha256::new();
    hash.update(img.width().to_le_bytes());
    hash.update(img.height().to_le_bytes());
    hash.update(img.as_raw());
    let digest = hash.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_le_bytes(first)
}

/// SplitMix64 (Steele, Lea and Flood 2014): the stream of `noise:SD`'s uniform draws.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in (0, 1]: the top 53 bits, plus one, times 2⁻⁵³.
    fn open_unit(&mut self) -> f64 {
        ((self.next() >> 11) + 1) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Two independent standard normals (Box–Muller).
    fn normals(&mut self) -> [f64; 2] {
        let (u1, u2) = (self.open_unit(), self.open_unit());
        let r = (-2.0 * u1.ln()).sqrt();
        let t = 2.0 * std::f64::consts::PI * u2;
        [r * t.cos(), r * t.sin()]
    }
}

/// `noise:SD`: `round(clamp(v / 255 + sd·z, 0, 1) · 255)` for every byte, z standard normals
/// from `seed` (see the module's documentation).
pub fn add_noise(img: &RgbImage, sd: f64, seed: u64) -> RgbImage {
    let mut rng = SplitMix64(seed);
    let mut raw = img.as_raw().clone();
    for pair in raw.chunks_mut(2) {
        let z = rng.normals();
        for (v, z) in pair.iter_mut().zip(z) {
            *v = ((*v as f64 / 255.0 + sd * z).clamp(0.0, 1.0) * 255.0).round() as u8;
        }
    }
    RgbImage::from_raw(img.width(), img.height(), raw).unwrap_or_else(|| img.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slow_blur_is_estimated_before_it_runs() {
        assert_eq!(blur_kernel_size(64.0), 385);
        assert_eq!(blur_multiply_adds(64.0, 224 * 224), 224.0 * 224.0 * 3.0 * 385.0 * 385.0);
        let probes: Vec<Probe> = "jpeg:75,blur:1,blur:64".parse::<ProbeList>().unwrap().0;
        let quick: Vec<Probe> = "jpeg:75,blur:1".parse::<ProbeList>().unwrap().0;
        let images = vec![224 * 224; 100];
        // At 1 G multiply-adds per second: blur:64 is 22 s per image, 37 min for 100.
        let note = blur_cost_note(&probes, &images, 1, 1e9).expect("a note");
        assert!(note.contains("blur:64") && note.contains("385×385"), "{note}");
        assert!(note.contains("22 s per 224×224 image"), "{note}");
        assert!(note.contains("37.2 min for these 100 image(s) under 1 model(s)"), "{note}");
        assert!(note.contains("(blur:16: about 2.4 min)"), "{note}");
        assert_eq!(blur_cost_note(&quick, &images, 3, 1e9), None);
        assert_eq!(blur_cost_note(&probes, &images[..2], 1, 1e9), None, "44 s: no note");
        let rate = blur_rate().expect("a blur");
        assert!(rate.is_finite() && rate > 0.0);
    }

    #[test]
    fn the_default_list_parses_and_prints_back() {
        let list = ProbeList::default();
        assert_eq!(list.0.len(), 5);
        assert_eq!(list.to_string(), DEFAULT_PROBES);
        assert_eq!(
            list.0,
            [
                Probe::Jpeg { quality: 75 },
                Probe::Blur { sigma: 1.0 },
                Probe::Down { factor: 2 },
                Probe::Rotate { degrees: 5.0 },
                Probe::Noise { sd: 0.03 },
            ]
        );
        assert_eq!("none".parse::<ProbeList>(), Ok(ProbeList(Vec::new())));
        assert_eq!(ProbeList(Vec::new()).to_string(), "none");
        let list: ProbeList = " blur:1.5 , rotate:2.5,down:3".parse().expect("valid");
        assert_eq!(list.to_string(), "blur:1.5,rotate:2.5,down:3");
        for p in ["blur:0.7", "noise:0.1", "jpeg:1", "jpeg:100", "rotate:180", "down:17"] {
            assert_eq!(p.parse::<Probe>().expect(p).to_string(), p);
        }
    }

    #[test]
    fn bad_lists_are_refused_naming_the_probe() {
        let err = |s: &str| s.parse::<ProbeList>().expect_err(s).to_string();
        assert!(err("jpeg:75,sharpen:2").starts_with("unknown probe \"sharpen:2\""));
        assert!(err("sharpen").contains("unknown probe \"sharpen\""));
        assert!(err("blur").contains("probe \"blur\": a parameter is needed"));
        for bad in ["jpeg:0", "jpeg:101", "jpeg:7.5", "jpeg:x"] {
            assert!(err(bad).contains("Q must be an integer quality from 1 to 100"), "{bad}");
        }
        for bad in ["blur:0", "blur:-1", "blur:NaN", "blur:inf", "blur:65", "blur:"] {
            assert!(err(bad).contains("SIGMA must be"), "{bad}: {}", err(bad));
        }
        for bad in ["down:1", "down:0", "down:2.5", "down:-2"] {
            assert!(err(bad).contains("K must be"), "{bad}");
        }
        for bad in ["rotate:0", "rotate:181", "rotate:-5", "rotate:nan"] {
            assert!(err(bad).contains("DEG must be"), "{bad}");
        }
        for bad in ["noise:0", "noise:1.5", "noise:-0.1"] {
            assert!(err(bad).contains("SD must be"), "{bad}");
        }
        assert_eq!(err("blur:1,blur:1.0"), "probe blur:1 is given twice");
        assert!(err("none,blur:1").contains("`none` turns the probes off"));
        assert!(err("blur:1,").contains("an empty probe"));
        assert!(err("").contains("an empty probe"));
        // A huge value is shown cut.
        assert!(err(&format!("blur:{}", "9".repeat(10_000))).len() < 400);
    }

    fn ramp(w: u32, h: u32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| image::Rgb([(x * 7 % 256) as u8, (y * 5 % 256) as u8, 128]))
    }

    #[test]
    fn every_probe_keeps_the_size_and_changes_the_image() {
        let img = ramp(40, 30);
        for probe in ProbeList::default().0 {
            for view in 0..probe.views() {
                let out = probe.apply(&img, view).expect("applies");
                assert_eq!(out.dimensions(), img.dimensions(), "{probe}");
                assert_ne!(out, img, "{probe} view {view}");
            }
        }
        let plus = rotate_bilinear(&img, 5.0);
        assert_ne!(plus, rotate_bilinear(&img, -5.0));
        assert_eq!(rotate_bilinear(&img, 360.0), img);
        assert_eq!(rotate_bilinear(&img, -355.0), plus);
    }

    #[test]
    fn blur_in_strips_equals_blur_in_one_pass() {
        // Sharp, irregular content: many values near a rounding boundary.
        let img = RgbImage::from_fn(173, 121, |x, y| {
            let v = (x * 37 + y * 91 + x * y * 13) % 256;
            let stripe = if (x / 5 + y / 3) % 2 == 0 { 0 } else { 255 };
            image::Rgb([v as u8, ((v * 7 + y) % 256) as u8, stripe])
        });
        for sigma in [0.7, 1.0, 1.5] {
            let whole = gaussian_blur_in_strips(&img, sigma, usize::MAX).expect("blurs");
            let k = blur_kernel_size(sigma) as usize;
            for rows in [1, 2, 7, 50] {
                let strips = gaussian_blur_in_strips(&img, sigma, rows * k * k * 173);
                assert!(strips.expect("blurs") == whole, "sigma {sigma}, strips of {rows} row(s)");
            }
        }
        assert_eq!(reflect(-3, 10), 3);
        assert_eq!(reflect(9, 10), 9);
        assert_eq!(reflect(12, 10), 6);
    }

    #[test]
    fn probes_that_cannot_apply_say_why() {
        let thin = ramp(100, 3);
        let err = gaussian_blur(&thin, 1.0).expect_err("pad 3 on a side of 3");
        assert!(matches!(err, ProbeError::TooSmallForBlur { pad: 3, .. }), "{err}");
        assert!(gaussian_blur(&ramp(100, 4), 1.0).is_ok());
        let long = RgbImage::new(70_000, 1);
        assert!(matches!(jpeg_round_trip(&long, 75), Err(ProbeError::TooLargeForJpeg { .. })));
        // `down` on a side smaller than K: a side of 1, and back.
        assert_eq!(down_up(&ramp(1, 9), 4).dimensions(), (1, 9));
    }

    #[test]
    fn noise_is_fixed_per_image_clamped_and_of_its_sd() {
        let img = RgbImage::from_pixel(64, 64, image::Rgb([128, 0, 255]));
        let a = add_noise(&img, 0.03, noise_seed(&img));
        assert_eq!(a, add_noise(&img, 0.03, noise_seed(&img)));
        assert_ne!(noise_seed(&img), noise_seed(&ramp(64, 64)));
        let red: Vec<f64> = a.pixels().map(|p| p.0[0] as f64 / 255.0 - 128.0 / 255.0).collect();
        let mean = red.iter().sum::<f64>() / red.len() as f64;
        let sd = (red.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / red.len() as f64).sqrt();
        assert!(mean.abs() < 0.005 && (sd - 0.03).abs() < 0.004, "mean {mean}, sd {sd}");
        // Clamped at both ends: 0 stays ≥ 0, 255 ≤ 255, and about half of each moves.
        let moved = a.pixels().filter(|p| p.0[1] > 0).count();
        assert!((1600..2500).contains(&moved), "{moved}");
        assert!(a.pixels().filter(|p| p.0[2] < 255).count() > 1600);
    }

    #[test]
    fn round15_is_pythons() {
        assert_eq!(round15((-(5.0f64 * (std::f64::consts::PI / 180.0))).sin()), -0.087155742747658);
        assert_eq!(round15(std::f64::consts::PI.sin()), 0.0);
        assert_eq!(round15(0.1 + 0.2), 0.3);
    }
}
