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
//!
//! The work is bounded by the input, not by the resized image: resizing the shorter side to `n`
//! multiplies the longer one by `n / short`, so a 5 000 000 × 1 image would become
//! 1 120 000 000 × 224 pixels (and its filter weights 45 GB) before the crop kept 224 × 224 of
//! them. Each pass computes only the output pixels the centre crop keeps, and the horizontal pass
//! only the rows the vertical pass reads; every output pixel depends on its own weights alone, so
//! the result is bit for bit that of resizing everything and cropping. Decoding is bounded too
//! ([`MAX_DECODED_BYTES`]), and a resized side beyond Pillow's `int` sizes is refused.
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use image::{DynamicImage, ImageDecoder, ImageFormat, RgbImage, RgbaImage};
use tch::{Kind, Tensor};

/// CLIP's per-channel mean (RGB), from `clip.py::_transform`.
pub const CLIP_MEAN: [f64; 3] = [0.48145466, 0.4578275, 0.40821073];
/// CLIP's per-channel standard deviation (RGB), from `clip.py::_transform`.
pub const CLIP_STD: [f64; 3] = [0.26862954, 0.26130258, 0.27577711];

/// The most bytes a decoded image may take (the `image` crate's default limit, made explicit so
/// that the error names the file and its size): 16k × 10k RGB fits, a decompression bomb does not.
pub const MAX_DECODED_BYTES: u64 = 512 << 20;

/// The longest side a resize may produce: Pillow's image sizes are C `int`s, so neither Pillow nor
/// torchvision can resize an image whose longer side would grow past this, and there is no
/// reference result to mirror (a 10 000 000 × 1 image at n = 224 would be 2 240 000 000 wide).
pub const MAX_RESIZED_SIDE: u64 = i32::MAX as u64;

/// Bytes read from the start of a file to tell its format and the PIL mode it opens in.
const HEAD_BYTES: u64 = 64 << 10;

#[derive(Debug, thiserror::Error)]
pub enum PreprocessError {
    #[error("cannot read image {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("cannot decode image {path}: {source}")]
    Decode { path: PathBuf, source: image::ImageError },
    #[error("image {path} is empty ({width}x{height})")]
    Empty { path: PathBuf, width: u32, height: u32 },
    #[error(
        "image {path}{}: decoding it would take more than the limit of {limit} bytes",
        dimensions.map_or(String::new(), |(w, h)| format!(" is {w}x{h} pixels"))
    )]
    TooLarge { path: PathBuf, dimensions: Option<(u32, u32)>, limit: u64 },
    #[error(
        "image {path} is {width}x{height} pixels: CLIP's resize of its shorter side to {n} would \
         make it {resized_width}x{resized_height}, larger than Pillow can make (sides up to \
         {MAX_RESIZED_SIDE}); it cannot be preprocessed as CLIP does"
    )]
    TooElongated {
        path: PathBuf,
        width: u32,
        height: u32,
        n: u32,
        resized_width: u64,
        resized_height: u64,
    },
}

/// A decoded image in the class of PIL mode that decides how Pillow resizes it.
#[derive(Clone)]
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
    let read_err = |source| PreprocessError::Read { path: path.into(), source };
    let decode_err = |source| PreprocessError::Decode { path: path.into(), source };
    // Streamed from the file, not read whole: what it may allocate is the decoder's limit.
    let mut file = BufReader::new(super::files::open_regular(path).map_err(read_err)?);
    // The header tells the format and the PIL mode (PNG bit depth and colour type, BMP palette).
    let mut bytes = Vec::new();
    (&mut file).take(HEAD_BYTES).read_to_end(&mut bytes).map_err(read_err)?;
    file.seek(SeekFrom::Start(0)).map_err(read_err)?;
    let format = image::guess_format(&bytes).map_err(decode_err)?;
    let mut reader = image::ImageReader::with_format(file, format);
    let mut limits = image::Limits::default();
    limits.max_alloc = Some(MAX_DECODED_BYTES);
    reader.limits(limits);
    // Checked from the header, before anything is allocated for the pixels (some decoders check
    // their limits when made, others are checked here).
    let too_large = |dimensions| PreprocessError::TooLarge {
        path: path.into(),
        dimensions,
        limit: MAX_DECODED_BYTES,
    };
    let decoder = match reader.into_decoder() {
        Ok(decoder) => decoder,
        Err(image::ImageError::Limits(_)) => {
            return Err(too_large(header_dimensions(&bytes, format)));
        }
        Err(e) => return Err(decode_err(e)),
    };
    if decoder.total_bytes() > MAX_DECODED_BYTES {
        return Err(too_large(Some(decoder.dimensions())));
    }
    let img = DynamicImage::from_decoder(decoder).map_err(|e| match e {
        image::ImageError::Limits(_) => too_large(header_dimensions(&bytes, format)),
        e => decode_err(e),
    })?;
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

/// Width and height as the file header states them, for the formats where they sit at a fixed
/// place (PNG's IHDR, BMP's info header, GIF's logical screen).
fn header_dimensions(bytes: &[u8], format: ImageFormat) -> Option<(u32, u32)> {
    let be = |at: usize| Some(u32::from_be_bytes(bytes.get(at..at + 4)?.try_into().ok()?));
    let le = |at: usize| Some(i32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?));
    let le16 = |at: usize| Some(u16::from_le_bytes(bytes.get(at..at + 2)?.try_into().ok()?));
    match format {
        ImageFormat::Png => Some((be(16)?, be(20)?)),
        ImageFormat::Bmp => Some((le(18)?.unsigned_abs(), le(22)?.unsigned_abs())),
        ImageFormat::Gif => Some((u32::from(le16(6)?), u32::from(le16(8)?))),
        _ => None,
    }
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
/// `int(n * long / short)`. Returns (width, height), which may exceed `u32` for thin images.
fn resized_size(width: u32, height: u32, n: u32) -> (u64, u64) {
    let (short, long) = if width <= height { (width, height) } else { (height, width) };
    // Python's `n * long / short` is exact integer product then correctly rounded true division
    // (the product is below 2^53, so it is exact as an f64 too).
    let new_long = ((n as u64 * long as u64) as f64 / short as f64) as u64;
    if width <= height {
        (n as u64, new_long)
    } else {
        (new_long, n as u64)
    }
}

/// A range of indices along one axis of the resized image: `start..start + len`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Span {
    start: u64,
    len: u64,
}

impl Span {
    fn end(self) -> u64 {
        self.start + self.len
    }
}

/// What torchvision's `center_crop(img, [n, n])` keeps of a `size` long axis: the window at
/// `int(round((size - n) / 2.0))`, or all of it (then zero-padded) when it is shorter than `n`;
/// and the padding before it.
fn crop_span(size: u64, n: u32) -> (Span, u64) {
    let n = n as u64;
    if size >= n {
        (Span { start: half_round_even(size - n), len: n }, 0)
    } else {
        (Span { start: 0, len: size }, (n - size) / 2)
    }
}

/// `Resize(n, interpolation=BICUBIC)` on an RGB PIL image: shorter side to `n`, Pillow's antialiased
/// bicubic; an image already of the target size is returned unchanged, as torchvision does.
///
/// This makes the whole resized image, which for a thin image is huge (a 100 000 × 1 image becomes
/// 22 400 000 × 224); [`resize_and_crop`] makes only what `CenterCrop(n)` keeps of it.
pub fn resize_shorter_side(img: &RgbImage, n: u32) -> RgbImage {
    if n == 0 {
        return RgbImage::new(0, 0);
    }
    if img.width() == 0 || img.height() == 0 {
        return img.clone();
    }
    let (w, h) = resized_size(img.width(), img.height(), n);
    let (w, h) = (w.min(u32::MAX as u64) as u32, h.min(u32::MAX as u64) as u32);
    let all = |size: u32| Span { start: 0, len: size as u64 };
    let out = (w as u64, h as u64);
    let raw = resample_bicubic(img.as_raw(), 3, img.dimensions(), out, all(w), all(h));
    RgbImage::from_raw(w, h, raw).unwrap_or_else(|| RgbImage::new(w, h))
}

/// Pillow's `img.resize((width, height), Image.BICUBIC)` on an RGB image, bit for bit: the same
/// resampler as [`resize_shorter_side`] to a size given outright (each pass skipped when its side
/// is unchanged, so the image's own size returns it as is). An empty size or image gives an empty
/// or black image (Pillow refuses a size of 0).
pub fn resize_bicubic(img: &RgbImage, width: u32, height: u32) -> RgbImage {
    if width == 0 || height == 0 || img.width() == 0 || img.height() == 0 {
        return RgbImage::new(width, height);
    }
    let all = |size: u32| Span { start: 0, len: size as u64 };
    let out = (width as u64, height as u64);
    let raw = resample_bicubic(img.as_raw(), 3, img.dimensions(), out, all(width), all(height));
    RgbImage::from_raw(width, height, raw).unwrap_or_else(|| RgbImage::new(width, height))
}

/// `CenterCrop(n)(Resize(n, interpolation=BICUBIC)(img))` on an RGB PIL image, bit for bit, making
/// only the resized pixels the crop keeps.
pub fn resize_and_crop(img: &RgbImage, n: u32) -> RgbImage {
    if img.width() == 0 || img.height() == 0 || n == 0 {
        return center_crop(img, n);
    }
    let (w, h) = resized_size(img.width(), img.height(), n);
    let ((xs, pad_x), (ys, pad_y)) = (crop_span(w, n), crop_span(h, n));
    let raw = resample_bicubic(img.as_raw(), 3, img.dimensions(), (w, h), xs, ys);
    pad(raw, (xs, ys), (pad_x, pad_y), n)
}

/// The cropped window (`xs.len` × `ys.len` RGB bytes) placed in an `n` × `n` black image, as
/// `center_crop` pads an image smaller than the crop.
fn pad(raw: Vec<u8>, spans: (Span, Span), padding: (u64, u64), n: u32) -> RgbImage {
    pad_to(raw, spans, padding, (n, n))
}

/// [`pad`] into a `width` × `height` image.
fn pad_to(
    raw: Vec<u8>,
    (xs, ys): (Span, Span),
    (pad_x, pad_y): (u64, u64),
    (width, height): (u32, u32),
) -> RgbImage {
    let (ww, wh) = (xs.len as u32, ys.len as u32);
    if (ww, wh) == (width, height) {
        return RgbImage::from_raw(width, height, raw)
            .unwrap_or_else(|| RgbImage::new(width, height));
    }
    let window = RgbImage::from_raw(ww, wh, raw).unwrap_or_else(|| RgbImage::new(ww, wh));
    let mut out = RgbImage::new(width, height);
    image::imageops::replace(&mut out, &window, pad_x as i64, pad_y as i64);
    out
}

/// `CenterCrop(n)(Resize(n))` for the source's PIL mode (see [`Decoded`]); returns RGB. Refuses
/// an image whose resized longer side would be larger than Pillow can make.
fn resize_and_crop_decoded(img: Decoded, n: u32, path: &Path) -> Result<RgbImage, PreprocessError> {
    resize_and_crop_decoded_to(img, n, (n, n), path)
}

/// `CenterCrop((height, width))(Resize(n))` for the source's PIL mode.
fn resize_and_crop_decoded_to(
    img: Decoded,
    n: u32,
    (cw, ch): (u32, u32),
    path: &Path,
) -> Result<RgbImage, PreprocessError> {
    let (iw, ih) = img.dimensions();
    if n == 0 || cw == 0 || ch == 0 {
        return Ok(RgbImage::new(cw, ch));
    }
    let (w, h) = resized_size(iw, ih, n);
    if w.max(h) > MAX_RESIZED_SIDE {
        return Err(PreprocessError::TooElongated {
            path: path.into(),
            width: iw,
            height: ih,
            n,
            resized_width: w,
            resized_height: h,
        });
    }
    let ((xs, pad_x), (ys, pad_y)) = (crop_span(w, cw), crop_span(h, ch));
    let raw = if (w, h) == (iw as u64, ih as u64) {
        // torchvision returns the image untouched (so no RGBA -> RGBa -> RGBA round trip either).
        let img = img.into_rgb();
        let window = image::imageops::crop_imm(
            &img,
            xs.start as u32,
            ys.start as u32,
            xs.len as u32,
            ys.len as u32,
        );
        window.to_image().into_raw()
    } else {
        match img {
            Decoded::Plain(img) => resample_bicubic(img.as_raw(), 3, (iw, ih), (w, h), xs, ys),
            Decoded::Palette(img) => resample_nearest(img.as_raw(), 3, (iw, ih), (w, h), xs, ys),
            Decoded::Alpha(img) => {
                let mut raw = img.into_raw();
                raw.chunks_exact_mut(4).for_each(premultiply);
                let mut out = resample_bicubic(&raw, 4, (iw, ih), (w, h), xs, ys);
                out.chunks_exact_mut(4).for_each(unpremultiply);
                out.chunks_exact(4).flat_map(|px| [px[0], px[1], px[2]]).collect()
            }
            Decoded::Gray16(img) => resample_bicubic_16bpc(img.as_raw(), (iw, ih), (w, h), xs, ys)
                .into_iter()
                .flat_map(|v| [v.min(255) as u8; 3])
                .collect(),
        }
    };
    Ok(pad_to(raw, (xs, ys), (pad_x, pad_y), (cw, ch)))
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

/// Per kept output pixel: first input index, number of taps, and `ksize` normalised weights.
struct Coeffs {
    bounds: Vec<(usize, usize)>,
    weights: Vec<f64>,
    ksize: usize,
}

impl Coeffs {
    /// The taps of the `i`-th kept output pixel.
    fn taps(&self, i: usize) -> (usize, &[f64]) {
        let (first, taps) = self.bounds[i];
        (first, &self.weights[i * self.ksize..i * self.ksize + taps])
    }

    /// `Resample.c::normalize_coeffs_8bpc`: weights in fixed point, rounded half away from zero.
    fn fixed(&self, i: usize) -> (usize, Vec<i32>) {
        let (first, k) = self.taps(i);
        let one = (1u32 << PRECISION_BITS) as f64;
        let fixed = k
            .iter()
            .map(|&w| if w < 0.0 { (-0.5 + w * one) as i32 } else { (0.5 + w * one) as i32 })
            .collect();
        (first, fixed)
    }

    /// The input indices the kept pixels read (Pillow's `ybox_first..ybox_last` for the rows).
    fn input_range(&self) -> (usize, usize) {
        let start = self.bounds.iter().map(|b| b.0).min().unwrap_or(0);
        let end = self.bounds.iter().map(|b| b.0 + b.1).max().unwrap_or(start);
        (start, end)
    }
}

/// `Resample.c::precompute_coeffs` for box (0, in_size) and the bicubic filter (support 2), for the
/// output pixels `keep` of `out_size` only: each pixel's weights depend on its own index alone.
/// Downscaling widens the filter by the scale factor (antialiasing).
fn precompute_coeffs(in_size: u32, out_size: u64, keep: Span) -> Coeffs {
    let scale = in_size as f32 as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = 2.0 * filterscale;
    let ksize = support.ceil() as usize * 2 + 1;
    let mut bounds = Vec::with_capacity(keep.len as usize);
    let mut weights = vec![0f64; keep.len as usize * ksize];
    let mut k = vec![0f64; ksize];
    for (i, xx) in (keep.start..keep.end()).enumerate() {
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
        let row = &mut weights[i * ksize..i * ksize + taps];
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

/// The rows of the source the vertical pass reads, and that pass's weights (`None`: the height is
/// unchanged, Pillow skips the pass, and the rows are those of the window).
fn vertical_plan(h: u32, out_h: u64, ys: Span) -> (Option<Coeffs>, (usize, usize)) {
    if out_h != h as u64 {
        let c = precompute_coeffs(h, out_h, ys);
        let rows = c.input_range();
        (Some(c), rows)
    } else {
        (None, (ys.start as usize, ys.end() as usize))
    }
}

/// `ImagingResampleInner` with `ImagingResample{Horizontal,Vertical}_8bpc` on interleaved 8-bit
/// channels, horizontal pass first, each pass skipped when its size is unchanged — computing only
/// the window `xs` × `ys` of the `out_w` × `out_h` result (`xs.len` × `ys.len` pixels returned).
fn resample_bicubic(
    src: &[u8],
    ch: usize,
    (w, h): (u32, u32),
    (out_w, out_h): (u64, u64),
    xs: Span,
    ys: Span,
) -> Vec<u8> {
    let stride = xs.len as usize * ch;
    if stride == 0 || ys.len == 0 {
        return Vec::new();
    }
    let (vertical, (r0, r1)) = vertical_plan(h, out_h, ys);
    let row_in = |y: usize| &src[y * w as usize * ch..(y + 1) * w as usize * ch];
    let mut tmp = vec![0u8; (r1 - r0) * stride];
    if out_w != w as u64 {
        let c = precompute_coeffs(w, out_w, xs);
        let fixed: Vec<_> = (0..xs.len as usize).map(|i| c.fixed(i)).collect();
        for (y, row_out) in (r0..r1).zip(tmp.chunks_exact_mut(stride)) {
            let row_in = row_in(y);
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
    } else {
        let cols = xs.start as usize * ch..xs.end() as usize * ch;
        for (y, row_out) in (r0..r1).zip(tmp.chunks_exact_mut(stride)) {
            row_out.copy_from_slice(&row_in(y)[cols.clone()]);
        }
    }
    let Some(c) = vertical else { return tmp };
    let mut out = vec![0u8; stride * ys.len as usize];
    for (yy, row_out) in out.chunks_exact_mut(stride).enumerate() {
        let (ymin, k) = c.fixed(yy);
        for (i, v) in row_out.iter_mut().enumerate() {
            let mut ss = 1i32 << (PRECISION_BITS - 1);
            for (y, &ky) in k.iter().enumerate() {
                ss += tmp[(ymin - r0 + y) * stride + i] as i32 * ky;
            }
            *v = clip8(ss);
        }
    }
    out
}

/// `ImagingResample{Horizontal,Vertical}_16bpc` for "I;16": double accumulation, rounded half away
/// from zero, then each byte of the result clipped on its own (`CLIP8(v % 256)`, `CLIP8(v >> 8)`);
/// only the window `xs` × `ys`, as [`resample_bicubic`].
fn resample_bicubic_16bpc(
    src: &[u16],
    (w, h): (u32, u32),
    (out_w, out_h): (u64, u64),
    xs: Span,
    ys: Span,
) -> Vec<u16> {
    fn store(ss: f64) -> u16 {
        let v = if ss >= 0.0 { ss + 0.5 } else { ss - 0.5 } as i32;
        let clip8 = |b: i32| b.clamp(0, 255) as u16;
        clip8(v >> 8) << 8 | clip8(v % 256)
    }
    let stride = xs.len as usize;
    if stride == 0 || ys.len == 0 {
        return Vec::new();
    }
    let (vertical, (r0, r1)) = vertical_plan(h, out_h, ys);
    let row_in = |y: usize| &src[y * w as usize..(y + 1) * w as usize];
    let mut tmp = Vec::with_capacity((r1 - r0) * stride);
    if out_w != w as u64 {
        let c = precompute_coeffs(w, out_w, xs);
        for y in r0..r1 {
            let row = row_in(y);
            tmp.extend((0..stride).map(|i| {
                let (xmin, k) = c.taps(i);
                store(k.iter().zip(&row[xmin..]).map(|(&kx, &v)| v as f64 * kx).sum())
            }));
        }
    } else {
        for y in r0..r1 {
            tmp.extend_from_slice(&row_in(y)[xs.start as usize..xs.end() as usize]);
        }
    }
    let Some(c) = vertical else { return tmp };
    let mut out = Vec::with_capacity(stride * ys.len as usize);
    for yy in 0..ys.len as usize {
        let (ymin, k) = c.taps(yy);
        out.extend((0..stride).map(|x| {
            store(
                k.iter()
                    .enumerate()
                    .map(|(y, &ky)| tmp[(ymin - r0 + y) * stride + x] as f64 * ky)
                    .sum(),
            )
        }));
    }
    out
}

/// Pillow's NEAREST resize (`_imaging.c::_resize` → `Geometry.c::ImagingScaleAffine`): source
/// coordinates accumulated in double from `scale / 2` by steps of `scale`, truncated; only the
/// window `xs` × `ys`. The accumulation rounds at each step, so the steps before the window are
/// taken too (at most [`MAX_RESIZED_SIDE`] additions, no memory).
fn resample_nearest(
    src: &[u8],
    ch: usize,
    (w, h): (u32, u32),
    (out_w, out_h): (u64, u64),
    xs: Span,
    ys: Span,
) -> Vec<u8> {
    let coords = |in_size: u32, out_size: u64, keep: Span| -> Vec<usize> {
        let a = in_size as f32 as f64 / out_size as f64;
        let mut o = a * 0.5;
        let mut kept = Vec::with_capacity(keep.len as usize);
        for i in 0..keep.end() {
            if i >= keep.start {
                kept.push((o as usize).min(in_size as usize - 1));
            }
            o += a;
        }
        kept
    };
    let (cols, rows) = (coords(w, out_w, xs), coords(h, out_h, ys));
    let mut out = Vec::with_capacity(cols.len() * rows.len() * ch);
    for &y in &rows {
        for &x in &cols {
            let at = (y * w as usize + x) * ch;
            out.extend_from_slice(&src[at..at + ch]);
        }
    }
    out
}

/// Python's `round` on `d / 2` (round half to even), as in torchvision's `center_crop`.
fn half_round_even(d: u64) -> u64 {
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
    let (left, top) =
        (half_round_even((pw - n) as u64) as u32, half_round_even((ph - n) as u64) as u32);
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
    normalize(&to_tensor(&resize_and_crop(img, n)))
}

/// `clip._transform(n)(Image.open(path))`, including Pillow's mode-dependent resizing (palette images
/// nearest, alpha premultiplied): `[3, n, n]` normalised Float.
pub fn preprocess_path(path: &Path, n: u32) -> Result<Tensor, PreprocessError> {
    let cropped = resize_and_crop_decoded(decode(path)?, n, path)?;
    Ok(normalize(&to_tensor(&cropped)))
}

/// The shorter-side length `n` for which `Resize(n)` covers a `width` × `height` crop of an
/// `iw` × `ih` image: the smallest `n` whose resized size (torchvision's rounding) is at least the
/// crop on both axes. For a square crop of side `n` it is `n`, CLIP's own.
fn covering_shorter_side(iw: u32, ih: u32, width: u32, height: u32) -> u32 {
    let (short_crop, long_crop) = if iw <= ih { (width, height) } else { (height, width) };
    let mut n = short_crop.max(1);
    // The longer side grows with `n`; a few steps at most past the exact ratio.
    let (short, long) = (iw.min(ih).max(1) as f64, iw.max(ih) as f64);
    let estimate = (long_crop as f64 * short / long.max(1.0)).ceil();
    if estimate.is_finite() && estimate > n as f64 {
        n = estimate.min(u32::MAX as f64) as u32;
    }
    while n < u32::MAX {
        let (w, h) = resized_size(iw, ih, n);
        if w >= width as u64 && h >= height as u64 {
            break;
        }
        n += 1;
    }
    n
}

/// A photo as the start of an optimisation: CLIP's `Resize` (bicubic, the shorter side to the
/// smallest length that covers the canvas) and `CenterCrop` to `width` × `height`, then
/// `ToTensor` — no normalisation: `[3, height, width]` Float in [0, 1]. For a square canvas of
/// side `n` this is `clip._transform(n)` without its `Normalize`.
pub fn start_image_path(path: &Path, width: u32, height: u32) -> Result<Tensor, PreprocessError> {
    let img = decode(path)?;
    let (iw, ih) = img.dimensions();
    let n = covering_shorter_side(iw, ih, width, height);
    Ok(to_tensor(&resize_and_crop_decoded_to(img, n, (width, height), path)?))
}

#[cfg(test)]
mod tests {
    //! The cropped-window resize against the way it was done before: the whole image resized
    //! (the functions below are the earlier code, kept verbatim as the reference), then cropped.
    use super::*;

    fn resized_size_full(width: u32, height: u32, n: u32) -> (u32, u32) {
        let (w, h) = resized_size(width, height, n);
        (w as u32, h as u32)
    }

    fn precompute_coeffs_full(in_size: u32, out_size: u32) -> Coeffs {
        precompute_coeffs(in_size, out_size as u64, Span { start: 0, len: out_size as u64 })
    }

    fn resample_bicubic_full(
        src: &[u8],
        ch: usize,
        w: u32,
        h: u32,
        out_w: u32,
        out_h: u32,
    ) -> Vec<u8> {
        let (w, h, out_w, out_h) = (w as usize, h as usize, out_w as usize, out_h as usize);
        let mut cur: std::borrow::Cow<[u8]> = std::borrow::Cow::Borrowed(src);
        if out_w != w {
            let c = precompute_coeffs_full(w as u32, out_w as u32);
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
            let c = precompute_coeffs_full(h as u32, out_h as u32);
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

    fn resample_bicubic_16bpc_full(
        src: &[u16],
        w: u32,
        h: u32,
        out_w: u32,
        out_h: u32,
    ) -> Vec<u16> {
        fn store(ss: f64) -> u16 {
            let v = if ss >= 0.0 { ss + 0.5 } else { ss - 0.5 } as i32;
            let clip8 = |b: i32| b.clamp(0, 255) as u16;
            clip8(v >> 8) << 8 | clip8(v % 256)
        }
        let (w, h, out_w, out_h) = (w as usize, h as usize, out_w as usize, out_h as usize);
        let mut cur = src.to_vec();
        if out_w != w {
            let c = precompute_coeffs_full(w as u32, out_w as u32);
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
            let c = precompute_coeffs_full(h as u32, out_h as u32);
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

    fn resample_nearest_full(
        src: &[u8],
        ch: usize,
        w: u32,
        h: u32,
        out_w: u32,
        out_h: u32,
    ) -> Vec<u8> {
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

    /// The earlier `resize_decoded`: the whole image resized for its PIL mode.
    fn resize_decoded_full(img: Decoded, n: u32) -> RgbImage {
        let (iw, ih) = img.dimensions();
        let (w, h) = resized_size_full(iw, ih, n);
        if n == 0 {
            return RgbImage::new(0, 0);
        }
        if (w, h) == (iw, ih) {
            return img.into_rgb();
        }
        match img {
            Decoded::Plain(img) => {
                let raw = resample_bicubic_full(img.as_raw(), 3, iw, ih, w, h);
                RgbImage::from_raw(w, h, raw).expect("size")
            }
            Decoded::Palette(img) => {
                let raw = resample_nearest_full(img.as_raw(), 3, iw, ih, w, h);
                RgbImage::from_raw(w, h, raw).expect("size")
            }
            Decoded::Alpha(img) => {
                let mut raw = img.into_raw();
                raw.chunks_exact_mut(4).for_each(premultiply);
                let mut out = resample_bicubic_full(&raw, 4, iw, ih, w, h);
                out.chunks_exact_mut(4).for_each(unpremultiply);
                drop_alpha(&RgbaImage::from_raw(w, h, out).expect("size"))
            }
            Decoded::Gray16(img) => {
                let raw = resample_bicubic_16bpc_full(img.as_raw(), iw, ih, w, h);
                gray16_to_rgb(&Gray16Image::from_raw(w, h, raw).expect("size"))
            }
        }
    }

    /// Sharp edges (random pixels, with full black and white) so that clipping after each pass
    /// shows, and a smooth part.
    fn noise(len: usize, seed: u64) -> Vec<u8> {
        let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..len)
            .map(|i| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                match state % 5 {
                    0 => 0,
                    1 => 255,
                    2 => (i % 256) as u8,
                    _ => (state >> 24) as u8,
                }
            })
            .collect()
    }

    fn every_mode(w: u32, h: u32, seed: u64) -> Vec<(&'static str, Decoded)> {
        let len = (w * h) as usize;
        let rgb = RgbImage::from_raw(w, h, noise(len * 3, seed)).expect("size");
        let rgba = RgbaImage::from_raw(w, h, noise(len * 4, seed + 1)).expect("size");
        let grey: Vec<u16> = noise(len * 2, seed + 2)
            .chunks_exact(2)
            .map(|b| u16::from(b[0]) * 3 + u16::from(b[1]))
            .collect();
        vec![
            ("RGB", Decoded::Plain(rgb.clone())),
            ("P", Decoded::Palette(rgb)),
            ("RGBA", Decoded::Alpha(rgba)),
            ("I;16", Decoded::Gray16(Gray16Image::from_raw(w, h, grey).expect("size"))),
        ]
    }

    #[test]
    fn the_cropped_window_equals_the_crop_of_the_full_resize() {
        let shapes = [
            (3000, 2),
            (2, 3000),
            (997, 13),
            (13, 997),
            (1, 700),
            (700, 1),
            (300, 200),
            (225, 224),
            (224, 224),
            (31, 32),
            (5, 3),
            (1, 1),
        ];
        let path = Path::new("test.png");
        for (k, &(w, h)) in shapes.iter().enumerate() {
            for (mode, img) in every_mode(w, h, k as u64) {
                for n in [1, 7, 32, 64, 224] {
                    // The reference makes the whole resized image: keep it to a few megapixels
                    // (3000 x 2 at n = 224 would be 75).
                    let (fw, fh) = resized_size(w, h, n);
                    if fw * fh > 8_000_000 {
                        continue;
                    }
                    let full = center_crop(&resize_decoded_full(img.clone(), n), n);
                    let ours = resize_and_crop_decoded(img.clone(), n, path).expect("fits");
                    assert!(ours == full, "{mode} {w}x{h}, n = {n}: the window differs");
                }
            }
            let Some((_, Decoded::Plain(rgb))) = every_mode(w, h, k as u64).into_iter().next()
            else {
                unreachable!()
            };
            for n in [1, 7, 224] {
                let full = center_crop(&resize_shorter_side(&rgb, n), n);
                assert!(resize_and_crop(&rgb, n) == full, "RGB {w}x{h}, n = {n}");
            }
        }
    }

    #[test]
    fn a_thin_image_is_resized_within_the_crop() {
        // 1 120 000 000 x 224 if resized whole; the window is 224 x 224.
        let rgb = RgbImage::from_fn(5_000_000, 1, |x, _| image::Rgb([(x % 251) as u8, 7, 200]));
        let out = resize_and_crop(&rgb, 224);
        assert_eq!(out.dimensions(), (224, 224));
        // Upscaling a single row: every output row equals the first.
        assert!(out.rows().all(|row| row.eq(out.rows().next().expect("a row"))));
        let tall = RgbImage::from_fn(1, 5_000_000, |_, y| image::Rgb([(y % 251) as u8, 7, 200]));
        assert_eq!(resize_and_crop(&tall, 224).dimensions(), (224, 224));
    }

    #[test]
    fn a_resize_larger_than_pillow_can_make_is_refused() {
        let img = Decoded::Plain(RgbImage::new(10_000_000, 1));
        let err = resize_and_crop_decoded(img, 224, Path::new("thin.png")).expect_err("too long");
        let message = err.to_string();
        assert!(message.contains("thin.png") && message.contains("10000000x1"), "{message}");
        assert!(message.contains("2240000000x224"), "{message}");
    }
}
