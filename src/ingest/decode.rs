//! Bytes of a picture → an upright 8-bit RGB image, the way Pillow would see it.
//!
//! Two paths:
//! - exact: the `image` crate decodes at full size (any format it supports);
//! - fast, for JPEGs far larger than the model needs: decoded at 1/2, 1/4 or 1/8 scale, which
//!   skips most of the decode work. At 1/8 and 1/4, JPEGs are read for their lowest
//!   coefficients only (`jpeg_reduced`); the rest go to `jpeg-decoder` (or libjpeg-turbo with the
//!   `turbojpeg` feature) with its IDCT scaled. Its effect on embeddings is measured by
//!   `tests/it/preprocess.rs` (cosine ≥ 0.995 against the exact path).
//!
//! Both apply the EXIF orientation, so photos are never embedded sideways. Camera RAW files go
//! through the JPEG preview embedded in them (`raw`); HEIC and AVIF through libheif (`heif`),
//! which turns them upright by their container's own rotation.

use std::io::Cursor;
use std::path::Path;

use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder, ImageError, ImageFormat, ImageReader, Limits, RgbImage};

use super::{exif, heif, jpeg_reduced, measured_tiff, raw};
use crate::error::{Error, Result};
use crate::model::config::{Alpha, PatchBudget};
use crate::model::{Coverage, PreprocessConfig, PreprocessedImage};

/// Default cap on decoded pixels: far beyond any camera (a 200 MP phone sensor fits),
/// small enough that a decompression bomb cannot take the machine's memory.
pub const DEFAULT_MAX_PIXELS: u64 = 250_000_000;

/// Default cap on the pixels of a picture uploaded to `serve` to search by: any camera's photo,
/// at most ~600 MB to decode per request (each of a server's workers may decode one at once).
pub const DEFAULT_UPLOAD_MAX_PIXELS: u64 = 100_000_000;

#[derive(Debug, Clone, Copy)]
pub struct DecodeOptions {
    pub max_pixels: u64,
    /// When set, the decoder may return a smaller picture that is still this large: a JPEG
    /// decoded at 1/2, 1/4 or 1/8 of its size, a HEIC's stored thumbnail.
    pub min_size: Option<MinSize>,
    pub alpha: Alpha,
}

/// How small a picture may come back, upright.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MinSize {
    /// At least this wide and this high: what a model's resize and crop need.
    Covering(u32, u32),
    /// The longer side at least this long: a picture to fit into a square box (a rendition).
    LongSide(u32),
    /// Covering the grid of patches SigLIP 2 NaFlex resizes a picture of its aspect ratio to,
    /// with a patch to spare: a picture scaled down changes its aspect ratio by a fraction of a
    /// pixel, which may move the grid (computed from the full size) by a patch.
    PatchGrid(PatchBudget),
}

impl MinSize {
    /// How small a picture may be decoded for a model's preprocessing and still give it the
    /// same input: its resize target (the shortest edge on both axes covers any aspect ratio).
    /// `None` without a resize step: the picture is used at its own size.
    pub fn for_model(preprocess: &PreprocessConfig) -> Option<Self> {
        Some(match (preprocess.patch_budget, preprocess.exact_size) {
            _ if !preprocess.do_resize => return None,
            (Some(budget), _) => Self::PatchGrid(budget),
            (None, Some((height, width))) => Self::Covering(width, height),
            (None, None) => Self::Covering(preprocess.shortest_edge, preprocess.shortest_edge),
        })
    }

    /// The (width, height) a `width` × `height` picture must keep at least, where the
    /// requirement is one of covering.
    pub fn covering(self, (width, height): (u32, u32)) -> Option<(u32, u32)> {
        match self {
            MinSize::Covering(min_width, min_height) => Some((min_width, min_height)),
            MinSize::LongSide(_) => None,
            MinSize::PatchGrid(budget) => {
                let (grid_height, grid_width) = budget.resized_size(height, width);
                Some((grid_width + budget.patch_size, grid_height + budget.patch_size))
            }
        }
    }

    fn is_met_by(self, (width, height): (u32, u32)) -> bool {
        match (self, self.covering((width, height))) {
            (MinSize::LongSide(min), _) => width.max(height) >= min,
            (_, Some((min_width, min_height))) => width >= min_width && height >= min_height,
            (_, None) => true,
        }
    }
}

impl Default for DecodeOptions {
    fn default() -> Self {
        Self { max_pixels: DEFAULT_MAX_PIXELS, min_size: None, alpha: Alpha::OverWhite }
    }
}

impl DecodeOptions {
    /// How to decode a picture for a model's preprocessing: scaled down no further than its
    /// resize step needs, transparency handled as its processor does.
    pub fn for_model(preprocess: &PreprocessConfig, max_pixels: u64) -> Self {
        Self { max_pixels, min_size: MinSize::for_model(preprocess), alpha: preprocess.alpha }
    }
}

/// A decoded, upright picture plus facts about the original file.
#[derive(Debug, Clone)]
pub struct DecodedImage {
    pub rgb: RgbImage,
    /// Size of the original picture, upright (after EXIF orientation), before any scaling.
    pub original_width: u32,
    pub original_height: u32,
    /// The part of `rgb` the picture covers (left, top, width, height): all of it, but for a
    /// JPEG decoded at a scale its sides are not multiples of (see [`Coverage`]).
    pub region: (f64, f64, f64, f64),
}

impl DecodedImage {
    /// A picture that covers all of `rgb`, whose original is `original_size`.
    fn whole(rgb: RgbImage, (original_width, original_height): (u32, u32)) -> Self {
        let region = Coverage::whole(&rgb).region;
        Self { rgb, original_width, original_height, region }
    }

    /// What preprocessing needs to know of where the picture lies in `rgb`.
    pub fn coverage(&self) -> Coverage {
        Coverage { region: self.region, full_size: (self.original_width, self.original_height) }
    }
}

pub fn decode_file(path: &Path, options: &DecodeOptions) -> Result<DecodedImage> {
    let bytes = std::fs::read(path).map_err(|source| Error::Io { path: path.to_owned(), source })?;
    decode_bytes(&bytes, path, options)
}

/// `path` only names the picture in errors.
pub fn decode_bytes(bytes: &[u8], path: &Path, options: &DecodeOptions) -> Result<DecodedImage> {
    // One line per reason: `stats --errors` prints one line per file.
    let one_line = |error| match error {
        Error::Decode { path, reason } => {
            Error::Decode { path, reason: reason.split_whitespace().collect::<Vec<_>>().join(" ") }
        }
        other => other,
    };
    decode(bytes, path, options)
        .or_else(|error| match is_truncated(bytes) && bytes.starts_with(PNG_SIGNATURE) {
            // A PNG whose pixel data is whole but whose end chunk is missing: Pillow reads it,
            // and so do we. Cut anywhere before, it still fails, with the first error.
            true => decode(&[bytes, PNG_END_CHUNK].concat(), path, options).map_err(|_| error),
            false => Err(error),
        })
        .map_err(one_line)
        .map_err(|error| match error {
            // Decoders report a cut-off file as a read error ("failed to fill whole buffer",
            // "unexpected end of file", libjpeg-turbo's "Premature end of JPEG file"); say why. Not for
            // garbage that also lacks the end marker.
            Error::Decode { path, reason } if is_truncated(bytes) && ran_out_of_data(&reason) => Error::Decode {
                path,
                reason: format!(
                    "{reason}: the file ends without its end marker, so it was probably cut short (an \
                 interrupted copy or download?); copy it again from its source"
                ),
            },
            // Other formats have no end marker to tell an incomplete file from a damaged one.
            Error::Decode { path, reason } if ran_out_of_data(&reason) => Error::Decode {
                path,
                reason: format!(
                    "{reason}: the picture's data ends early, so the file is incomplete or damaged; copy it again \
                     from its source"
                ),
            },
            other => other,
        })
}

/// Whether a decoder's error says the data ended before the picture did.
fn ran_out_of_data(reason: &str) -> bool {
    let reason = reason.to_lowercase();
    [
        "fill whole buffer",
        "end of file",
        "unexpected end",
        "unexpected eof",
        "premature end",
        "no more data",
        "not enough bytes",
    ]
    .iter()
    .any(|said| reason.contains(said))
}

const PNG_SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";
const JPEG_START: &[u8] = &[0xFF, 0xD8, 0xFF];
/// A PNG's last chunk: no data, type IEND, its CRC.
const PNG_END_CHUNK: &[u8] = b"\0\0\0\0IEND\xAE\x42\x60\x82";

/// A JPEG or PNG whose data stops without its end marker (trailing zero padding aside).
fn is_truncated(bytes: &[u8]) -> bool {
    let end = bytes.iter().rposition(|&b| b != 0).map_or(0, |last| last + 1);
    let data = &bytes[..end];
    (bytes.starts_with(JPEG_START) && !data.ends_with(&[0xFF, 0xD9]))
        || (bytes.starts_with(PNG_SIGNATURE) && !data.ends_with(&PNG_END_CHUNK[4..]))
}

fn decode(bytes: &[u8], path: &Path, options: &DecodeOptions) -> Result<DecodedImage> {
    let fail = |reason: String| Error::Decode { path: path.to_owned(), reason };
    if bytes.is_empty() {
        return Err(fail("the file is empty".into()));
    }
    if raw::raw_format(bytes, path).is_some() {
        return decode_raw(bytes, path, options);
    }
    if heif::format(bytes).is_some() {
        let check = |width, height| check_pixels(path, width, height, (options.max_pixels, RGB_BYTES));
        let heif::Decoded { picture, size: (original_width, original_height) } =
            heif::decode(bytes, path, |size| options.min_size.is_some_and(|min| min.is_met_by(size)), check)?;
        return Ok(DecodedImage::whole(to_rgb_like_pillow(picture, options.alpha), (original_width, original_height)));
    }
    decode_picture(bytes, path, options, None)
}

/// A camera RAW file: the largest preview JPEG in it that decodes, upright by the RAW's own
/// orientation tag (the previews themselves mostly carry none). Without one, the picture in its
/// first TIFF directory where that is one: the RGB thumbnail of a phone's DNG (Android's
/// `DngCreator` writes no JPEG).
fn decode_raw(bytes: &[u8], path: &Path, options: &DecodeOptions) -> Result<DecodedImage> {
    let no_preview =
        |detail: String| Error::Decode { path: path.to_owned(), reason: raw::NO_PREVIEW.to_string() + &detail };
    let orientation = exif::read_exif(bytes, path).as_ref().and_then(exif::orientation);
    let mut first_error = None;
    for preview in raw::embedded_previews(bytes) {
        match decode_picture(preview, path, options, orientation) {
            Ok(decoded) => return Ok(decoded),
            Err(error) => {
                first_error.get_or_insert(error);
            }
        }
    }
    if bytes.starts_with(b"II*\0") || bytes.starts_with(b"MM\0*") {
        if let Ok(decoded) = decode_exact(bytes, path, options, orientation) {
            return Ok(decoded);
        }
    }
    Err(match first_error {
        None => no_preview(String::new()),
        Some(too_large @ Error::TooLarge { .. }) => too_large,
        Some(Error::Decode { reason, .. }) => no_preview(format!(" (what looks like one does not decode: {reason})")),
        Some(other) => other,
    })
}

/// `orientation`: the picture's, where it comes from outside its own bytes (a RAW file's);
/// otherwise its own EXIF orientation applies.
fn decode_picture(
    bytes: &[u8],
    path: &Path,
    options: &DecodeOptions,
    orientation: Option<Orientation>,
) -> Result<DecodedImage> {
    if let (Some(min), true) = (options.min_size, bytes.starts_with(JPEG_START)) {
        if let Some(decoded) = decode_jpeg_scaled(bytes, path, (min, options.max_pixels), orientation)? {
            return Ok(decoded);
        }
    }
    decode_exact(bytes, path, options, orientation)
}

/// Bytes a PNG's metadata chunks (and one row of pixels) may take while it is decoded.
const PNG_METADATA_BUDGET: u64 = 32 << 20;

fn decode_exact(
    bytes: &[u8],
    path: &Path,
    options: &DecodeOptions,
    orientation: Option<Orientation>,
) -> Result<DecodedImage> {
    let fail = |reason: String| Error::Decode { path: path.to_owned(), reason };
    let mut reader = ImageReader::new(Cursor::new(bytes)).with_guessed_format().map_err(|e| fail(e.to_string()))?;
    let format = reader.format().or_else(|| format_by_name_only(path));
    if let (None, Some(by_name)) = (reader.format(), format) {
        reader.set_format(by_name);
    }
    if let Some(png) = format.filter(|f| *f == ImageFormat::Ico).and_then(|_| png_of_icon(bytes)) {
        return decode_exact(png, path, options, orientation);
    }
    match format {
        None => return Err(fail("not an image in a supported format (JPEG, PNG, GIF, WebP, BMP, TIFF, ...)".into())),
        // A PNG's budget covers what its metadata chunks inflate to (a colour profile, text): a
        // few kilobytes in real files, but a crafted 2 MB one inflates to gigabytes, on every
        // decode thread at once. Its pixels are not counted (the pixel limit bounds them), and
        // an oversized profile is dropped, not fatal.
        Some(ImageFormat::Png) => {
            let mut limits = Limits::default();
            limits.max_alloc = Some(PNG_METADATA_BUDGET);
            reader.limits(limits);
        }
        Some(_) => {}
    }
    let check_size = |width, height, bytes_per_pixel| {
        check_pixels(path, width, height, (options.max_pixels, bytes_per_pixel))?;
        check_plausible(path, bytes.len(), width, height)
    };
    let (mut image, own_orientation) = match reader.into_decoder() {
        Ok(mut decoder) => {
            let (width, height) = decoder.dimensions();
            check_size(width, height, u64::from(decoder.color_type().bytes_per_pixel()))?;
            let own_orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
            let image = DynamicImage::from_decoder(decoder).map_err(|e| fail(e.to_string()))?;
            // The image crate's JPEG decoder fills in what a cut-off file lacks. Pillow refuses
            // such a file ("image file is truncated"), even one that lacks only its end marker;
            // so does jpeg-decoder, which the scaled paths use. (A file with data after its end
            // marker, as some phones write, is whole: jpeg-decoder stops at the marker.)
            if format == Some(ImageFormat::Jpeg) && is_truncated(bytes) {
                jpeg_decoder::Decoder::new(Cursor::new(bytes)).decode().map_err(|e| fail(e.to_string()))?;
            }
            (image, own_orientation)
        }
        Err(ImageError::Unsupported(_)) if format == Some(ImageFormat::Tiff) => {
            measured_tiff::decode(bytes, path, check_size)?
        }
        Err(e) => return Err(fail(e.to_string())),
    };
    image.apply_orientation(orientation.unwrap_or(own_orientation));
    let original_size = (image.width(), image.height());
    Ok(DecodedImage::whole(to_rgb_like_pillow(image, options.alpha), original_size))
}

/// The format of a picture that has no magic number to tell it by: TGA, which is known by its
/// `.tga` name.
pub fn format_by_name_only(path: &Path) -> Option<ImageFormat> {
    path.extension().is_some_and(|e| e.eq_ignore_ascii_case("tga")).then_some(ImageFormat::Tga)
}

/// The PNG an icon holds as its largest picture, which the `image` crate decodes only when it is
/// RGBA (an RGB or grey one was refused). `None` when that picture is a bitmap (the `image`
/// crate's own ICO decoder reads those) or the directory does not hold together.
fn png_of_icon(bytes: &[u8]) -> Option<&[u8]> {
    let u16_at = |at: usize| Some(u16::from_le_bytes(bytes.get(at..at + 2)?.try_into().ok()?));
    let u32_at = |at: usize| Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?) as usize);
    let count = usize::from(u16_at(4)?);
    // Each 16-byte entry: width and height (0 means 256), …, bits per pixel, size, offset. The
    // largest, then the deepest, as the `image` crate picks.
    let entry = (0..count).map(|i| 6 + 16 * i).filter(|&at| bytes.len() >= at + 16).max_by_key(|&at| {
        let side = |at: usize| if bytes[at] == 0 { 256u32 } else { u32::from(bytes[at]) };
        (side(at) * side(at + 1), u16_at(at + 6))
    })?;
    let (size, offset) = (u32_at(entry + 8)?, u32_at(entry + 12)?);
    let picture = bytes.get(offset..offset.checked_add(size)?)?;
    picture.starts_with(b"\x89PNG\r\n\x1a\n").then_some(picture)
}

/// `Ok(None)` when this JPEG is better served by the exact path (small, or CMYK).
fn decode_jpeg_scaled(
    bytes: &[u8],
    path: &Path,
    (min_size, max_pixels): (MinSize, u64),
    orientation: Option<Orientation>,
) -> Result<Option<DecodedImage>> {
    let fail = |reason: String| Error::Decode { path: path.to_owned(), reason };
    let mut decoder = jpeg_decoder::Decoder::new(Cursor::new(bytes));
    decoder.read_info().map_err(|e| fail(e.to_string()))?;
    let Some(info) = decoder.info() else { return Ok(None) };
    let (width, height) = (info.width as u32, info.height as u32);
    check_pixels(path, width, height, (max_pixels, RGB_BYTES))?;
    let orientation = orientation
        .or_else(|| decoder.exif_data().and_then(Orientation::from_exif_chunk))
        .unwrap_or(Orientation::NoTransforms);
    let upright = |(w, h): (u32, u32)| if swaps_axes(orientation) { (h, w) } else { (w, h) };
    let Some(n) =
        [1u32, 2, 4].into_iter().find(|&n| min_size.is_met_by(upright((scaled_len(width, n), scaled_len(height, n)))))
    else {
        return Ok(None); // needs the full resolution anyway
    };
    if !matches!(info.pixel_format, jpeg_decoder::PixelFormat::RGB24 | jpeg_decoder::PixelFormat::L8) {
        return Ok(None);
    }
    // At 1/8 and 1/4 the lowest coefficients alone make the picture: far less work than any
    // full decoder.
    let rgb = match jpeg_reduced::decode_reduced(bytes, n as usize) {
        Some(rgb) => rgb,
        None => decode_jpeg_at_scale(bytes, decoder, n, (width, height)).map_err(fail)?,
    };
    let mut image = DynamicImage::ImageRgb8(rgb);
    image.apply_orientation(orientation);
    let (original_width, original_height) = if swaps_axes(orientation) { (height, width) } else { (width, height) };
    let region = covered_at_scale((width, height), n, orientation);
    Ok(Some(DecodedImage { rgb: image.into_rgb8(), original_width, original_height, region }))
}

/// Decodes a JPEG (RGB or grey, header already read by `decoder`) with its IDCT scaled by n/8,
/// into RGB: libjpeg-turbo's decoder when built with the `turbojpeg` feature.
#[cfg(feature = "turbojpeg")]
fn decode_jpeg_at_scale(
    bytes: &[u8],
    _decoder: jpeg_decoder::Decoder<Cursor<&[u8]>>,
    n: u32,
    _size: (u32, u32),
) -> std::result::Result<RgbImage, String> {
    /// Progressive JPEGs with absurd scan counts are a known way to burn CPU (libjpeg-turbo's
    /// own fuzzing advice); real cameras and encoders stay far below this.
    const SCAN_LIMIT: u32 = 500;
    let error = |e: turbojpeg::Error| e.to_string();
    let mut decompressor = turbojpeg::Decompressor::new().map_err(error)?;
    decompressor.set_scan_limit(SCAN_LIMIT).map_err(error)?;
    // libjpeg-turbo accepts only reduced fractions (1/8, 1/4, 1/2, 1/1).
    let factor = turbojpeg::ScalingFactor::new(1, 8 / n as usize);
    decompressor.set_scaling_factor(factor).map_err(error)?;
    let header = decompressor.read_header(bytes).map_err(error)?;
    let (w, h) = (factor.scale(header.width), factor.scale(header.height));
    let mut image = turbojpeg::Image {
        pixels: vec![0u8; 3 * w * h],
        width: w,
        pitch: 3 * w,
        height: h,
        format: turbojpeg::PixelFormat::RGB,
    };
    decompressor.decompress(bytes, image.as_deref_mut()).map_err(error)?;
    RgbImage::from_raw(w as u32, h as u32, image.pixels).ok_or_else(|| "truncated pixel data".to_string())
}

/// Decodes a JPEG (RGB or grey, header already read by `decoder`) with its IDCT scaled by n/8,
/// into RGB: the pure-Rust `jpeg-decoder` (the default build).
#[cfg(not(feature = "turbojpeg"))]
fn decode_jpeg_at_scale(
    _bytes: &[u8],
    mut decoder: jpeg_decoder::Decoder<Cursor<&[u8]>>,
    n: u32,
    (width, height): (u32, u32),
) -> std::result::Result<RgbImage, String> {
    let grey = matches!(decoder.info().map(|i| i.pixel_format), Some(jpeg_decoder::PixelFormat::L8));
    // Requesting exactly the scaled size forces that scale (jpeg-decoder picks the smallest
    // scale that reaches the request in *either* axis).
    let (sw, sh) =
        decoder.scale(scaled_len(width, n) as u16, scaled_len(height, n) as u16).map_err(|e| e.to_string())?;
    let pixels = decoder.decode().map_err(|e| e.to_string())?;
    let (sw, sh) = (sw as u32, sh as u32);
    let truncated = || "truncated pixel data".to_string();
    Ok(if grey {
        DynamicImage::ImageLuma8(image::GrayImage::from_raw(sw, sh, pixels).ok_or_else(truncated)?).to_rgb8()
    } else {
        RgbImage::from_raw(sw, sh, pixels).ok_or_else(truncated)?
    })
}

/// Where a picture of `size` (as stored) lies in its pixels decoded at n/8, once turned by
/// `orientation` (left, top, width, height): its sides are `size · n / 8`, which the decoded
/// pixels round up (see [`Coverage`]). As stored, the part left over is the last column and row;
/// the orientation takes them to other sides.
fn covered_at_scale((width, height): (u32, u32), n: u32, orientation: Orientation) -> (f64, f64, f64, f64) {
    let side = |len: u32| f64::from(len) * f64::from(n) / 8.0;
    let (w, h) = (side(width), side(height));
    // The parts of a pixel left over on the right and at the bottom, as stored.
    let (right, bottom) = (f64::from(scaled_len(width, n)) - w, f64::from(scaled_len(height, n)) - h);
    match orientation {
        Orientation::NoTransforms => (0.0, 0.0, w, h),
        Orientation::FlipHorizontal => (right, 0.0, w, h),
        Orientation::Rotate180 => (right, bottom, w, h),
        Orientation::FlipVertical => (0.0, bottom, w, h),
        Orientation::Rotate90 => (bottom, 0.0, h, w),
        Orientation::Rotate270 => (0.0, right, h, w),
        Orientation::Rotate90FlipH => (0.0, 0.0, h, w),
        Orientation::Rotate270FlipH => (bottom, right, h, w),
    }
}

/// libjpeg's rule for a side scaled by n/8: ceil(len * n / 8).
fn scaled_len(len: u32, n: u32) -> u32 {
    (len * n).div_ceil(8)
}

fn swaps_axes(orientation: Orientation) -> bool {
    matches!(
        orientation,
        Orientation::Rotate90 | Orientation::Rotate270 | Orientation::Rotate90FlipH | Orientation::Rotate270FlipH
    )
}

/// A pixel of 8-bit RGB, what `--max-pixels` counts.
const RGB_BYTES: u64 = 3;

/// The pixel limit for a picture stored with `bytes_per_pixel`. Decoding holds it as stored,
/// then as 8-bit RGB: 11 bytes a pixel for 16-bit RGBA where 8-bit RGB takes 6. The limit keeps
/// that within the memory `max_pixels` of 8-bit RGB take (a 1.7 MB PNG of 15000 × 15000 16-bit
/// RGBA pixels took 2.8 GB).
fn decode_limit(max_pixels: u64, bytes_per_pixel: u64) -> u64 {
    max_pixels.min(max_pixels.saturating_mul(2 * RGB_BYTES) / (bytes_per_pixel + RGB_BYTES))
}

/// Real encoders pack at most ~8,000 pixels into a byte (deflate expands at most 1,032-fold,
/// times eight 1-bit pixels a byte; LZW and JPEG far less), so a large picture claimed by far
/// fewer bytes is damaged or a decompression bomb, refused before its pixels are allocated (a
/// 69-byte PNG claiming 1 × 250,000,000 pixels took 850 MB and 7 s of CPU). Pictures under 16
/// MP are spared: a blank WebP may be that dense, and cannot take much memory.
fn check_plausible(path: &Path, file_len: usize, width: u32, height: u32) -> Result<()> {
    const MAX_PIXELS_PER_BYTE: u64 = 16_384;
    const CHECKED_FROM_PIXELS: u64 = 16_000_000;
    let pixels = u64::from(width) * u64::from(height);
    if pixels >= CHECKED_FROM_PIXELS && pixels / (file_len as u64).max(1) > MAX_PIXELS_PER_BYTE {
        return Err(Error::Decode {
            path: path.to_owned(),
            reason: format!(
                "its header claims {width}x{height} pixels, far more than its {file_len} bytes can hold: the file \
                 is damaged (or made to exhaust memory)"
            ),
        });
    }
    Ok(())
}

/// Refuses a picture of more pixels than `max_pixels` admits for its `bytes_per_pixel` (see
/// [`decode_limit`]), saying which `--max-pixels` would admit it.
fn check_pixels(path: &Path, width: u32, height: u32, (max_pixels, bytes_per_pixel): (u64, u64)) -> Result<()> {
    let pixels = width as u64 * height as u64;
    let limit = decode_limit(max_pixels, bytes_per_pixel);
    if pixels > limit {
        // The least `max_pixels` whose limit for this many bytes a pixel reaches `pixels`.
        let admitting = pixels.max(pixels.saturating_mul(bytes_per_pixel + 3).div_ceil(6));
        return Err(Error::TooLarge { path: path.to_owned(), width, height, pixels, limit, admitting });
    }
    if pixels == 0 {
        return Err(Error::Decode { path: path.to_owned(), reason: format!("the image is {width}x{height}") });
    }
    Ok(())
}

/// Picture bytes → a model's input: the one path indexing, reverse search and `embed` share
/// (scaled JPEG decoding allowed). Also returns the picture's upright size. `label` names the
/// picture in errors.
pub fn model_input(
    bytes: &[u8],
    label: &Path,
    preprocess: &PreprocessConfig,
    max_pixels: u64,
) -> Result<(PreprocessedImage, (u32, u32))> {
    let decoded = decode_bytes(bytes, label, &DecodeOptions::for_model(preprocess, max_pixels))?;
    Ok((preprocess.apply_covering(&decoded.rgb, decoded.coverage()), (decoded.original_width, decoded.original_height)))
}

/// A picture file → a model's input (see [`model_input`]).
pub fn model_input_file(path: &Path, preprocess: &PreprocessConfig, max_pixels: u64) -> Result<PreprocessedImage> {
    let bytes = std::fs::read(path).map_err(|source| Error::Io { path: path.to_owned(), source })?;
    Ok(model_input(&bytes, path, preprocess, max_pixels)?.0)
}

/// RGB conversion as the model's processor does it with Pillow: `transformers`' `convert_to_rgb`
/// composites pictures with an alpha channel onto white (Pillow's integer `alpha_composite`),
/// OpenCLIP drops the channel; grey is replicated.
fn to_rgb_like_pillow(image: DynamicImage, alpha: Alpha) -> RgbImage {
    if !image.color().has_alpha() || alpha == Alpha::Discard {
        return image.into_rgb8();
    }
    let rgba = image.into_rgba8();
    let (w, h) = rgba.dimensions();
    let mut out = RgbImage::new(w, h);
    for (dst, src) in out.pixels_mut().zip(rgba.pixels()) {
        let [r, g, b, a] = src.0;
        dst.0 = [over_white(r, a), over_white(g, a), over_white(b, a)];
    }
    out
}

/// Pillow's `ImagingAlphaComposite` for an opaque white destination, bit for bit.
fn over_white(channel: u8, alpha: u8) -> u8 {
    const PRECISION_BITS: u32 = 7;
    let a = alpha as u32;
    let blend = 255 * (255 - a);
    let out_a255 = a * 255 + blend;
    let coef1 = a * 255 * 255 * (1 << PRECISION_BITS) / out_a255;
    let coef2 = 255 * (1 << PRECISION_BITS) - coef1;
    let tmp = channel as u32 * coef1 + 255 * coef2 + (0x80 << PRECISION_BITS);
    ((((tmp >> 8) + tmp) >> 8) >> PRECISION_BITS) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The region each orientation gives holds exactly the pixels decoded from whole blocks, and
    /// the left-over ones stick out of it: checked against the image crate's own turning.
    #[test]
    fn the_covered_region_follows_the_orientation() {
        // 3 x 2 pixels at 1/8, of which the picture covers 2.25 x 1.625.
        let (width, height, n) = (18u32, 13u32, 1u32);
        let stored =
            RgbImage::from_fn(scaled_len(width, n), scaled_len(height, n), |x, y| image::Rgb([x as u8, y as u8, 0]));
        let whole_block = |x: u8, y: u8| u32::from(x) < width * n / 8 && u32::from(y) < height * n / 8;
        for exif in 1..=8 {
            let orientation = Orientation::from_exif(exif).unwrap();
            let mut turned = DynamicImage::ImageRgb8(stored.clone());
            turned.apply_orientation(orientation);
            let (left, top, w, h) = covered_at_scale((width, height), n, orientation);
            assert!(left >= 0.0 && top >= 0.0, "orientation {exif}");
            assert!(
                left + w <= f64::from(turned.width()) && top + h <= f64::from(turned.height()),
                "orientation {exif}"
            );
            for (x, y, pixel) in turned.to_rgb8().enumerate_pixels() {
                let (x, y) = (f64::from(x), f64::from(y));
                let inside = x >= left && x + 1.0 <= left + w && y >= top && y + 1.0 <= top + h;
                assert_eq!(inside, whole_block(pixel[0], pixel[1]), "orientation {exif}: pixel {x},{y} from {pixel:?}");
            }
        }
    }

    #[test]
    fn alpha_composite_matches_pillow_at_the_extremes() {
        assert_eq!(over_white(10, 255), 10);
        assert_eq!(over_white(10, 0), 255);
        // Pillow: Image.alpha_composite(white, (0,0,0,128)) -> 127
        assert_eq!(over_white(0, 128), 127);
        // Image.alpha_composite(white, (200, 37, 0, 77)) -> (238, 189, 178)
        assert_eq!([over_white(200, 77), over_white(37, 77), over_white(0, 77)], [238, 189, 178]);
    }
}
