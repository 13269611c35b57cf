//! Image preprocessing for scoring saved images, mirroring OpenAI's `clip/clip.py::_transform(n_px)`:
//! `Resize(n_px, interpolation=BICUBIC)`, `CenterCrop(n_px)`, `_convert_image_to_rgb`, `ToTensor()`,
//! `Normalize(CLIP_MEAN, CLIP_STD)`, with torchvision's size and crop rules
//! (`torchvision/transforms/functional.py::{_compute_resized_output_size, center_crop}`) on PIL images.
//!
//! The resampling is a port of Pillow's `libImaging/Resample.c` (`precompute_coeffs`,
//! `normalize_coeffs_8bpc`, the 8-bit and 16-bit horizontal and vertical passes): antialiased bicubic
//! (a = -0.5) with 22-bit fixed-point weights, rounding and clipping to 8 bits after each pass,
//! horizontal pass first. It is hand-written because no crate matches Pillow: `image::imageops::resize`
//! and `fast_image_resize` differ from it by up to 19 8-bit levels at sharp edges, this port by none on
//! the test images (docs/preprocessing.md). Pillow's mode rules are followed too, reading the mode PIL
//! would open from the file header: palette and 1-bit images are resized with nearest neighbour
//! (`Image.resize` → `Geometry.c::ImagingScaleAffine`), images with alpha premultiplied (`RGBa`) with the
//! alpha then dropped, not composited (`convert("RGB")`), and 16-bit grey saturated at 255.
use std::path::{Path, PathBuf};

use image::{DynamicImage, ImageFormat, RgbImage, RgbaImage};
use tch::{Kind, Tensor};

/// CLIP's per-channel mean (RGB), from `clip.py::_transform`.
pub const CLIP_MEAN: [f64; 3] = [0.48145466, 0.4578275, 0.40821073];
/// CLIP's per-channel standard deviation (RGB), from `clip.py::_transform`.
pub const CLIP_STD: [f64; 3] = [0.26862954, 0.26130258, 0.27577711];

#[derive(Debug, thiserror::Error)]
pub enum PreprocessError {
    #[error("cannot read image {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("cannot decode image {path}: {source}")]
    Decode { path: PathBuf, source: image::ImageError },
    #[error("image {path} is empty ({width}x{height})")]
    Empty { path: PathBuf, width: u32, height: u32 },
}

/// A decoded image in the class of PIL mode that decides how Pillow resizes it.
enum Decoded {
    /// "L", "RGB" (and what else PIL resizes per 8-bit channel): bicubic.
    Plain(RgbImage),
    /// "RGBA", "LA": bicubic on premultiplied colour, alpha dropped afterwards.
    Alpha(RgbaImage),
    /// "P", "1": nearest neighbour on the palette indices, i.e. on the colours.
    Palette(RgbImage),
    /// "I;16" (16-bit grey PNG): Pillow's 16-bit bicubic, then `convert("RGB")` clips to 255.
    Gray16(Gray16Image),
}

type Gray16Image = image::ImageBuffer<image::Luma<u16>, Vec<u16>>;

impl Decoded {
    fn dimensions(&self) -> (u32, u32) {
        match self {
            Decoded::Plain(img) | Decoded::Palette(img) => img.dimensions(),
            Decoded::Alpha(img) => img.dimensions(),
            Decoded::Gray16(img) => img.dimensions(),
        }
    }

    fn into_rgb(self) -> RgbImage {
        match self {
            Decoded::Plain(img) | Decoded::Palette(img) => img,
            Decoded::Alpha(img) => drop_alpha(&img),
            Decoded::Gray16(img) => gray16_to_rgb(&img),
        }
    }
}

/// Pillow's "I;16" -> "RGB": values above 255 saturate (they are not scaled down).
fn gray16_to_rgb(img: &Gray16Image) -> RgbImage {
    RgbImage::from_fn(img.width(), img.height(), |x, y| {
        image::Rgb([img.get_pixel(x, y).0[0].min(255) as u8; 3])
    })
}

fn decode(path: &Path) -> Result<Decoded, PreprocessError> {
    let bytes = std::fs::read(path)
        .map_err(|source| PreprocessError::Read { path: path.into(), source })?;
    let decode_err = |source| PreprocessError::Decode { path: path.into(), source };
    let format = image::guess_format(&bytes).map_err(decode_err)?;
    let img = image::load_from_memory_with_format(&bytes, format).map_err(decode_err)?;
    if img.width() == 0 || img.height() == 0 {
        return Err(PreprocessError::Empty {
            path: path.into(),
            width: img.width(),
            height: img.height(),
        });
    }
    // PIL keeps a PNG tRNS chunk on a grey or RGB image as metadata and resizes without alpha, where
    // `image` expands it into an alpha channel.
    let img = match (format, bytes.get(25), img) {
        (ImageFormat::Png, Some(0 | 2), img) if img.color().has_alpha() => match img {
            DynamicImage::ImageLumaA8(_) => DynamicImage::ImageLuma8(img.to_luma8()),
            DynamicImage::ImageLumaA16(_) => DynamicImage::ImageLuma16(img.to_luma16()),
            DynamicImage::ImageRgba16(_) => DynamicImage::ImageRgb16(img.to_rgb16()),
            img => DynamicImage::ImageRgb8(img.to_rgb8()),
        },
        (_, _, img) => img,
    };
    if is_palette(&bytes, format) {
        // PIL's P -> RGB uses the palette colour even for transparent entries; the alpha is dropped.
        return Ok(Decoded::Palette(img.to_rgb8()));
    }
    Ok(match img {
        DynamicImage::ImageLuma16(im) => Decoded::Gray16(im),
        // PIL reads 16-bit RGB(A) and LA PNGs as 8-bit "RGB"/"RGBA"/"LA" keeping the high byte
        // ("RGB;16B"), where `image` would round.
        DynamicImage::ImageRgb16(im) => {
            Decoded::Plain(RgbImage::from_fn(im.width(), im.height(), |x, y| {
                image::Rgb(im.get_pixel(x, y).0.map(|v| (v >> 8) as u8))
            }))
        }
        DynamicImage::ImageRgba16(im) => {
            Decoded::Alpha(RgbaImage::from_fn(im.width(), im.height(), |x, y| {
                image::Rgba(im.get_pixel(x, y).0.map(|v| (v >> 8) as u8))
            }))
        }
        DynamicImage::ImageLumaA16(im) => {
            Decoded::Alpha(RgbaImage::from_fn(im.width(), im.height(), |x, y| {
                let [l, a] = im.get_pixel(x, y).0.map(|v| (v >> 8) as u8);
                image::Rgba([l, l, l, a])
            }))
        }
        im if im.color().has_alpha() => Decoded::Alpha(im.to_rgba8()),
        im => Decoded::Plain(im.to_rgb8()),
    })
}

/// Whether PIL opens the file in mode "P" or "1" (which `Image.resize` resamples with NEAREST):
/// indexed and 1-bit PNGs, GIFs, and palette BMPs (see [`bmp_is_palette`]).
fn is_palette(bytes: &[u8], format: ImageFormat) -> bool {
    match format {
        // IHDR bit depth and colour type: indexed, or 1-bit grey ("1").
        ImageFormat::Png => matches!(bytes.get(24..26), Some([_, 3] | [1, 0])),
        ImageFormat::Gif => true,
        ImageFormat::Bmp => bmp_is_palette(bytes),
        _ => false,
    }
}

/// `BmpImagePlugin`: a BMP of at most 8 bits is "L" when its palette is the grey ramp
/// `(i, i, i)` (two colours: "1"), otherwise "P".
fn bmp_is_palette(bytes: &[u8]) -> bool {
    let u16_at =
        |at: usize| bytes.get(at..at + 2).map(|b| u16::from_le_bytes([b[0], b[1]]) as usize);
    let u32_at = |at: usize| {
        bytes.get(at..at + 4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
    };
    let Some(header) = u32_at(14) else { return false };
    // BITMAPCOREHEADER (12 bytes) has 16-bit sizes and 3-byte palette entries.
    let (bits, used, entry) =
        if header == 12 { (u16_at(24), Some(0), 3) } else { (u16_at(28), u32_at(46), 4) };
    let (Some(bits), Some(used)) = (bits, used) else { return false };
    if bits > 8 {
        return false;
    }
    let colors = if used == 0 { 1 << bits } else { used };
    if colors == 2 {
        return true;
    }
    let start = 14 + header;
    let grey_ramp = colors <= 256
        && (0..colors).all(|i| {
            bytes.get(start + i * entry..start + i * entry + 3) == Some(&[i as u8; 3][..])
        });
    !grey_ramp
}

/// Reads an image like `PIL.Image.open(path).convert("RGB")`: grey is replicated, palettes are
/// expanded, alpha is dropped (not composited onto a background).
pub fn load_rgb(path: &Path) -> Result<RgbImage, PreprocessError> {
    Ok(decode(path)?.into_rgb())
}

/// torchvision's `_compute_resized_output_size(.., [n])`: the shorter side becomes `n`, the longer
/// `int(n * long / short)`. Returns (width, height).
fn resized_size(width: u32, height: u32, n: u32) -> (u32, u32) {
    let (short, long) = if width <= height { (width, height) } else { (height, width) };
    // Python's `n * long / short` is exact integer product then correctly rounded true division.
    let new_long = ((n as u64 * long as u64) as f64 / short as f64) as u32;
    if width <= height {
        (n, new_long)
    } else {
        (new_long, n)
    }
}

/// `Resize(n, interpolation=BICUBIC)` on an RGB PIL image: shorter side to `n`, Pillow's antialiased
/// bicubic; an image already of the target size is returned unchanged, as torchvision does.
pub fn resize_shorter_side(img: &RgbImage, n: u32) -> RgbImage {
    if n == 0 {
        return RgbImage::new(0, 0);
    }
    if img.width() == 0 || img.height() == 0 {
        return img.clone();
    }
    let (w, h) = resized_size(img.width(), img.height(), n);
    let raw = resample_bicubic(img.as_raw(), 3, img.width(), img.height(), w, h);
    RgbImage::from_raw(w, h, raw).unwrap_or_else(|| RgbImage::new(w, h))
}

/// `Resize` for the source's PIL mode (see [`Decoded`]); returns RGB.
fn resize_decoded(img: Decoded, n: u32) -> RgbImage {
    let (iw, ih) = img.dimensions();
    let (w, h) = resized_size(iw, ih, n);
    if n == 0 {
        return RgbImage::new(0, 0);
    }
    if (w, h) == (iw, ih) {
        // torchvision returns the image untouched (so no RGBA -> RGBa -> RGBA round trip either).
        return img.into_rgb();
    }
    match img {
        Decoded::Plain(img) => resize_shorter_side(&img, n),
        Decoded::Palette(img) => {
            let raw = resample_nearest(img.as_raw(), 3, iw, ih, w, h);
            RgbImage::from_raw(w, h, raw).unwrap_or_else(|| RgbImage::new(w, h))
        }
        Decoded::Alpha(img) => {
            let mut raw = img.into_raw();
            raw.chunks_exact_mut(4).for_each(premultiply);
            let mut out = resample_bicubic(&raw, 4, iw, ih, w, h);
            out.chunks_exact_mut(4).for_each(unpremultiply);
            drop_alpha(&RgbaImage::from_raw(w, h, out).unwrap_or_else(|| RgbaImage::new(w, h)))
        }
        Decoded::Gray16(img) => {
            let raw = resample_bicubic_16bpc(img.as_raw(), iw, ih, w, h);
            gray16_to_rgb(
                &Gray16Image::from_raw(w, h, raw).unwrap_or_else(|| Gray16Image::new(w, h)),
            )
        }
    }
}

fn drop_alpha(img: &RgbaImage) -> RgbImage {
    RgbImage::from_fn(img.width(), img.height(), |x, y| {
        let [r, g, b, _] = img.get_pixel(x, y).0;
        image::Rgb([r, g, b])
    })
}

/// Pillow's `rgbA2rgba` (RGBA -> RGBa): `MULDIV255(c, a)`.
fn premultiply(px: &mut [u8]) {
    let a = px[3] as u32;
    for c in &mut px[..3] {
        let t = *c as u32 * a + 128;
        *c = (((t >> 8) + t) >> 8) as u8;
    }
}

/// Pillow's `rgba2rgbA` (RGBa -> RGBA): `CLIP8(255 * c / a)`, untouched where a is 0 or 255.
fn unpremultiply(px: &mut [u8]) {
    let a = px[3] as u32;
    if a != 0 && a != 255 {
        for c in &mut px[..3] {
            *c = (255 * *c as u32 / a).min(255) as u8;
        }
    }
}

/// `Resample.c::PRECISION_BITS`: 8 bits of result, 2 bits of headroom for negative lobes.
const PRECISION_BITS: u32 = 32 - 8 - 2;

/// `Resample.c::bicubic_filter` (a = -0.5), same operation order for bit-equal weights.
fn bicubic_filter(x: f64) -> f64 {
    const A: f64 = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * A
    } else {
        0.0
    }
}

/// Per output pixel: first input index, number of taps, and `ksize` normalised weights.
struct Coeffs {
    bounds: Vec<(usize, usize)>,
    weights: Vec<f64>,
    ksize: usize,
}

impl Coeffs {
    fn taps(&self, out: usize) -> (usize, &[f64]) {
        let (first, taps) = self.bounds[out];
        (first, &self.weights[out * self.ksize..out * self.ksize + taps])
    }

    /// `Resample.c::normalize_coeffs_8bpc`: weights in fixed point, rounded half away from zero.
    fn fixed(&self, out: usize) -> (usize, Vec<i32>) {
        let (first, k) = self.taps(out);
        let one = (1u32 << PRECISION_BITS) as f64;
        let fixed = k
            .iter()
            .map(|&w| if w < 0.0 { (-0.5 + w * one) as i32 } else { (0.5 + w * one) as i32 })
            .collect();
        (first, fixed)
    }
}

/// `Resample.c::precompute_coeffs` for box (0, in_size) and the bicubic filter (support 2).
/// Downscaling widens the filter by the scale factor (antialiasing).
fn precompute_coeffs(in_size: u32, out_size: u32) -> Coeffs {
    let scale = in_size as f32 as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = 2.0 * filterscale;
    let ksize = support.ceil() as usize * 2 + 1;
    let mut bounds = Vec::with_capacity(out_size as usize);
    let mut weights = vec![0f64; out_size as usize * ksize];
    let mut k = vec![0f64; ksize];
    for xx in 0..out_size as usize {
        let center = (xx as f64 + 0.5) * scale;
        let ss = 1.0 / filterscale;
        // C's `(int)` truncates toward zero, as does `as`.
        let xmin = ((center - support + 0.5) as i64).max(0);
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64) - xmin;
        let taps = xmax.max(0) as usize;
        let mut ww = 0.0;
        for (x, kx) in k.iter_mut().enumerate().take(taps) {
            let w = bicubic_filter(((x as i64 + xmin) as f64 - center + 0.5) * ss);
            *kx = w;
            ww += w;
        }
        let row = &mut weights[xx * ksize..xx * ksize + taps];
        for (dst, &w) in row.iter_mut().zip(&k[..taps]) {
            *dst = if ww != 0.0 { w / ww } else { w };
        }
        bounds.push((xmin as usize, taps));
    }
    Coeffs { bounds, weights, ksize }
}

/// `Resample.c::clip8`: drop the fraction bits and saturate to 0..=255.
fn clip8(ss: i32) -> u8 {
    (ss >> PRECISION_BITS).clamp(0, 255) as u8
}

/// `ImagingResampleInner` with `ImagingResample{Horizontal,Vertical}_8bpc`: interleaved 8-bit
/// channels, horizontal pass first, each pass skipped when its size is unchanged.
fn resample_bicubic(src: &[u8], ch: usize, w: u32, h: u32, out_w: u32, out_h: u32) -> Vec<u8> {
    let (w, h, out_w, out_h) = (w as usize, h as usize, out_w as usize, out_h as usize);
    let mut cur: std::borrow::Cow<[u8]> = std::borrow::Cow::Borrowed(src);
    if out_w != w {
        let c = precompute_coeffs(w as u32, out_w as u32);
        let fixed: Vec<_> = (0..out_w).map(|xx| c.fixed(xx)).collect();
        let mut out = vec![0u8; out_w * h * ch];
        for y in 0..h {
            let row_in = &cur[y * w * ch..(y + 1) * w * ch];
            let row_out = &mut out[y * out_w * ch..(y + 1) * out_w * ch];
            for (px, (xmin, k)) in row_out.chunks_exact_mut(ch).zip(&fixed) {
                for (i, v) in px.iter_mut().enumerate() {
                    let mut ss = 1i32 << (PRECISION_BITS - 1);
                    for (x, &kx) in k.iter().enumerate() {
                        ss += row_in[(xmin + x) * ch + i] as i32 * kx;
                    }
                    *v = clip8(ss);
                }
            }
        }
        cur = std::borrow::Cow::Owned(out);
    }
    if out_h != h {
        let c = precompute_coeffs(h as u32, out_h as u32);
        let stride = out_w * ch;
        let mut out = vec![0u8; stride * out_h];
        for (yy, row_out) in out.chunks_exact_mut(stride).enumerate() {
            let (ymin, k) = c.fixed(yy);
            for (i, v) in row_out.iter_mut().enumerate() {
                let mut ss = 1i32 << (PRECISION_BITS - 1);
                for (y, &ky) in k.iter().enumerate() {
                    ss += cur[(ymin + y) * stride + i] as i32 * ky;
                }
                *v = clip8(ss);
            }
        }
        cur = std::borrow::Cow::Owned(out);
    }
    cur.into_owned()
}

/// `ImagingResample{Horizontal,Vertical}_16bpc` for "I;16": double accumulation, rounded half away
/// from zero, then each byte of the result clipped on its own (`CLIP8(v % 256)`, `CLIP8(v >> 8)`).
fn resample_bicubic_16bpc(src: &[u16], w: u32, h: u32, out_w: u32, out_h: u32) -> Vec<u16> {
    fn store(ss: f64) -> u16 {
        let v = if ss >= 0.0 { ss + 0.5 } else { ss - 0.5 } as i32;
        let clip8 = |b: i32| b.clamp(0, 255) as u16;
        clip8(v >> 8) << 8 | clip8(v % 256)
    }
    let (w, h, out_w, out_h) = (w as usize, h as usize, out_w as usize, out_h as usize);
    let mut cur = src.to_vec();
    if out_w != w {
        let c = precompute_coeffs(w as u32, out_w as u32);
        let mut out = Vec::with_capacity(out_w * h);
        for row in cur.chunks_exact(w) {
            out.extend((0..out_w).map(|xx| {
                let (xmin, k) = c.taps(xx);
                store(k.iter().zip(&row[xmin..]).map(|(&kx, &v)| v as f64 * kx).sum())
            }));
        }
        cur = out;
    }
    if out_h != h {
        let c = precompute_coeffs(h as u32, out_h as u32);
        let mut out = Vec::with_capacity(out_w * out_h);
        for yy in 0..out_h {
            let (ymin, k) = c.taps(yy);
            out.extend((0..out_w).map(|x| {
                store(
                    k.iter()
                        .enumerate()
                        .map(|(y, &ky)| cur[(ymin + y) * out_w + x] as f64 * ky)
                        .sum(),
                )
            }));
        }
        cur = out;
    }
    cur
}

/// Pillow's NEAREST resize (`_imaging.c::_resize` → `Geometry.c::ImagingScaleAffine`): source
/// coordinates accumulated in double from `scale / 2` by steps of `scale`, truncated.
fn resample_nearest(src: &[u8], ch: usize, w: u32, h: u32, out_w: u32, out_h: u32) -> Vec<u8> {
    let coords = |in_size: u32, out_size: u32| -> Vec<usize> {
        let a = in_size as f32 as f64 / out_size as f64;
        let mut o = a * 0.5;
        (0..out_size)
            .map(|_| {
                let i = (o as usize).min(in_size as usize - 1);
                o += a;
                i
            })
            .collect()
    };
    let (xs, ys) = (coords(w, out_w), coords(h, out_h));
    let mut out = Vec::with_capacity(out_w as usize * out_h as usize * ch);
    for &y in &ys {
        for &x in &xs {
            let at = (y * w as usize + x) * ch;
            out.extend_from_slice(&src[at..at + ch]);
        }
    }
    out
}

/// Python's `round` on `d / 2` (round half to even), as in torchvision's `center_crop`.
fn half_round_even(d: u32) -> u32 {
    let q = d / 2;
    if d % 2 == 1 && q % 2 == 1 {
        q + 1
    } else {
        q
    }
}

/// torchvision's `center_crop(img, [n, n])`: zero padding (left/top get the smaller half) where the
/// image is smaller than `n`, then the window at `int(round((size - n) / 2.0))`.
pub fn center_crop(img: &RgbImage, n: u32) -> RgbImage {
    let (w, h) = img.dimensions();
    let pad = |size: u32| if n > size { (n - size) / 2 } else { 0 };
    let (pad_left, pad_top) = (pad(w), pad(h));
    let (pw, ph) = (w.max(n), h.max(n));
    let (left, top) = (half_round_even(pw - n), half_round_even(ph - n));
    RgbImage::from_fn(n, n, |x, y| {
        // Coordinates in the padded image, then in the source.
        let (px, py) = (x + left, y + top);
        match (px.checked_sub(pad_left), py.checked_sub(pad_top)) {
            (Some(sx), Some(sy)) if sx < w && sy < h => *img.get_pixel(sx, sy),
            _ => image::Rgb([0, 0, 0]),
        }
    })
}

/// torchvision's `ToTensor` on an RGB PIL image: `[3, H, W]` Float in [0, 1] (`x.float().div(255)`).
pub fn to_tensor(img: &RgbImage) -> Tensor {
    let (w, h) = img.dimensions();
    Tensor::from_slice(img.as_raw())
        .view([h as i64, w as i64, 3])
        .permute([2, 0, 1])
        .contiguous()
        .to_kind(Kind::Float)
        .g_div_scalar(255)
}

/// torchvision's `Normalize(CLIP_MEAN, CLIP_STD)`: `(x - mean) / std` with mean and std in `x`'s kind,
/// over the channel dimension -3 (`[3, H, W]` or `[N, 3, H, W]`). Keeps device and kind and is
/// differentiable. Panics if dimension -3 is not of size 3 (a programming error).
pub fn normalize(x: &Tensor) -> Tensor {
    let stat = |v: &[f64; 3]| {
        Tensor::from_slice(v).to_kind(x.kind()).to_device(x.device()).view([3, 1, 1])
    };
    (x - stat(&CLIP_MEAN)) / stat(&CLIP_STD)
}

/// `clip._transform(n)` on an RGB image: `[3, n, n]` normalised Float.
pub fn preprocess_image(img: &RgbImage, n: u32) -> Tensor {
    normalize(&to_tensor(&center_crop(&resize_shorter_side(img, n), n)))
}

/// `clip._transform(n)(Image.open(path))`, including Pillow's mode-dependent resizing (palette images
/// nearest, alpha premultiplied): `[3, n, n]` normalised Float.
pub fn preprocess_path(path: &Path, n: u32) -> Result<Tensor, PreprocessError> {
    let resized = resize_decoded(decode(path)?, n);
    Ok(normalize(&to_tensor(&center_crop(&resized, n))))
}
