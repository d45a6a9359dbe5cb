//! TIFFs that hold measurements rather than light levels: bands of 32- or 64-bit floats, or of
//! signed or 32/64-bit integers (elevation models, satellite reflectance, scientific images). The
//! `image` crate refuses their sample formats, and no viewer shows such values as they are:
//! QGIS, by default, stretches a band between the 2nd and 98th percentile of its values, so an
//! outlier or a no-data value (-9999) does not wash the picture out. imgsearch does the same:
//! one band (or two) as grey, three or more as red, green and blue from the first three, under
//! one stretch so that their balance holds. NaN and infinite samples are black.

use std::io::Cursor;
use std::path::Path;

use image::metadata::Orientation;
use image::{DynamicImage, RgbImage};
use tiff::decoder::{Decoder, DecodingResult, Limits};
use tiff::tags::Tag;
use tiff::ColorType;

use crate::error::{Error, Result};

/// The share of values clipped at each end of the stretch.
const CLIPPED_EACH_END: f64 = 0.02;
/// Percentiles are read from an even sample of this many values at most: a 100 MP band gives the
/// same cut as from all of it, well within one grey level, at a fraction of the sorting.
const STRETCH_SAMPLE: usize = 1 << 20;

/// The picture of a TIFF of measured values, with its orientation tag; `check_size(width,
/// height, bytes_per_pixel)` rules on its size before its samples are read.
pub fn decode(
    bytes: &[u8],
    path: &Path,
    check_size: impl FnOnce(u32, u32, u64) -> Result<()>,
) -> Result<(DynamicImage, Orientation)> {
    let fail = |e: tiff::TiffError| Error::Decode {
        path: path.to_owned(),
        reason: format!("a TIFF of measured values that does not read ({e}): the file is damaged or cut short"),
    };
    let mut decoder = Decoder::new(Cursor::new(bytes)).map_err(fail)?;
    let (width, height) = decoder.dimensions().map_err(fail)?;
    let (bands, bits) = match decoder.colortype().map_err(fail)? {
        ColorType::Gray(bits) => (1, bits),
        ColorType::GrayA(bits) => (2, bits),
        ColorType::RGB(bits) => (3, bits),
        ColorType::RGBA(bits) => (4, bits),
        ColorType::Multiband { bit_depth, num_samples } => (usize::from(num_samples), bit_depth),
        other => return Err(Error::Decode { path: path.to_owned(), reason: format!("TIFF samples of {other:?}") }),
    };
    if bands == 0 {
        return Err(Error::Decode { path: path.to_owned(), reason: "the TIFF claims pixels of no samples".into() });
    }
    let bytes_per_pixel = (bands as u64 * u64::from(bits)).div_ceil(8);
    check_size(width, height, bytes_per_pixel)?;
    let mut limits = Limits::default();
    limits.decoding_buffer_size = (u64::from(width) * u64::from(height) * bytes_per_pixel) as usize;
    let mut decoder = decoder.with_limits(limits);
    let orientation = decoder
        .find_tag_unsigned::<u8>(Tag::Orientation)
        .ok()
        .flatten()
        .and_then(Orientation::from_exif)
        .unwrap_or(Orientation::NoTransforms);
    let pixels = width as usize * height as usize;
    // The bands shown: red, green and blue from the first three, or the first as grey. Only
    // those become f32 (a picture of many bands would take 4 bytes a sample otherwise).
    let shown: &[usize] = if bands >= 3 { &[0, 1, 2] } else { &[0] };
    let samples = shown_as_f32(decoder.read_image().map_err(fail)?, bands, shown);
    if samples.len() < pixels * shown.len() {
        return Err(Error::Decode { path: path.to_owned(), reason: "the TIFF holds fewer samples than pixels".into() });
    }
    let (low, high) = stretch(&samples);
    let scale = if high > low { 255.0 / (high - low) } else { 0.0 };
    let level =
        |value: f32| if value.is_finite() { ((value - low) * scale).clamp(0.0, 255.0).round() as u8 } else { 0 };
    let mut rgb = RgbImage::new(width, height);
    for (pixel, samples) in rgb.pixels_mut().zip(samples.chunks_exact(shown.len())) {
        pixel.0 = [0, 1, 2].map(|channel| level(samples[channel % shown.len()]));
    }
    Ok((DynamicImage::ImageRgb8(rgb), orientation))
}

/// The values at the 2nd and 98th percentile of the finite samples.
fn stretch(samples: &[f32]) -> (f32, f32) {
    let step = samples.len().div_ceil(STRETCH_SAMPLE).max(1);
    let mut values: Vec<f32> = samples.iter().step_by(step).copied().filter(|v| v.is_finite()).collect();
    if values.is_empty() {
        return (0.0, 0.0);
    }
    let at = |values: &mut Vec<f32>, share: f64| {
        let rank = ((values.len() - 1) as f64 * share).round() as usize;
        *values.select_nth_unstable_by(rank, f32::total_cmp).1
    };
    (at(&mut values, CLIPPED_EACH_END), at(&mut values, 1.0 - CLIPPED_EACH_END))
}

/// The `shown` bands of interleaved samples of `bands` bands, as f32: ample for a picture's 256
/// levels, whatever the source precision.
fn shown_as_f32(result: DecodingResult, bands: usize, shown: &[usize]) -> Vec<f32> {
    fn pick<T: Copy>(samples: &[T], bands: usize, shown: &[usize], to_f32: impl Fn(T) -> f32) -> Vec<f32> {
        samples.chunks_exact(bands).flat_map(|pixel| shown.iter().map(|&band| to_f32(pixel[band]))).collect()
    }
    match result {
        DecodingResult::U8(v) => pick(&v, bands, shown, f32::from),
        DecodingResult::U16(v) => pick(&v, bands, shown, f32::from),
        DecodingResult::U32(v) => pick(&v, bands, shown, |x| x as f32),
        DecodingResult::U64(v) => pick(&v, bands, shown, |x| x as f32),
        DecodingResult::F16(v) => pick(&v, bands, shown, f32::from),
        DecodingResult::F32(v) => pick(&v, bands, shown, |x| x),
        DecodingResult::F64(v) => pick(&v, bands, shown, |x| x as f32),
        DecodingResult::I8(v) => pick(&v, bands, shown, f32::from),
        DecodingResult::I16(v) => pick(&v, bands, shown, f32::from),
        DecodingResult::I32(v) => pick(&v, bands, shown, |x| x as f32),
        DecodingResult::I64(v) => pick(&v, bands, shown, |x| x as f32),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stretch_clips_two_percent_at_each_end_and_skips_what_is_not_a_number() {
        // 0..=99 with a no-data value and NaNs: the cut lies at 1 and 97 (ranks 2 and 98 of the
        // 101 finite values), not at -9999.
        let mut samples: Vec<f32> = (0..100).map(|v| v as f32).collect();
        samples.extend([-9999.0, f32::NAN, f32::INFINITY]);
        samples.rotate_left(37);
        assert_eq!(stretch(&samples), (1.0, 97.0));
        assert_eq!(stretch(&[f32::NAN; 4]), (0.0, 0.0));
    }

    #[test]
    fn only_the_shown_bands_are_kept() {
        let rgbn = DecodingResult::I16([[-1, 2, 3, 1000]; 5].concat());
        assert_eq!(shown_as_f32(rgbn, 4, &[0, 1, 2]), [[-1.0, 2.0, 3.0]; 5].concat());
        let grey_alpha = DecodingResult::F64(vec![0.5, 1.0, 0.25, 1.0]);
        assert_eq!(shown_as_f32(grey_alpha, 2, &[0]), vec![0.5, 0.25]);
    }
}
