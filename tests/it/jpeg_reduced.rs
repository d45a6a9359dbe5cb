//! The reduced-size JPEG decoder (1/8 and 1/4 from the lowest coefficients) against
//! `jpeg-decoder`'s own decode at the same scale, on every layout it takes, and its refusals:
//! files it does not handle, and damaged ones, go back to the full decoder instead of decoding
//! wrongly or panicking.

use crate::common::image_path;
use imgsearch::ingest::jpeg_reduced::decode_reduced;
use std::io::Cursor;

/// `jpeg-decoder` at `eighths`/8 (its IDCT scaled to 1 or 2×2 samples a block), as RGB.
fn reference(bytes: &[u8], eighths: u16) -> (u32, u32, Vec<u8>) {
    let mut decoder = jpeg_decoder::Decoder::new(Cursor::new(bytes));
    decoder.read_info().unwrap();
    let info = decoder.info().unwrap();
    let (w, h) = decoder.scale((info.width * eighths).div_ceil(8), (info.height * eighths).div_ceil(8)).unwrap();
    let pixels = decoder.decode().unwrap();
    let rgb = match info.pixel_format {
        jpeg_decoder::PixelFormat::L8 => pixels.iter().flat_map(|&v| [v, v, v]).collect(),
        _ => pixels,
    };
    (w as u32, h as u32, rgb)
}

fn layouts() -> Vec<(String, Vec<u8>)> {
    let dir = image_path("jpeg_layouts");
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    let mut named: Vec<_> = files
        .iter()
        .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(p).unwrap()))
        .collect();
    for name in ["astronaut.jpg", "rocket.jpg", "camera_gray.jpg", "chelsea_progressive.jpg"] {
        named.push((name.to_string(), std::fs::read(image_path(name)).unwrap()));
    }
    named
}

#[test]
fn matches_jpeg_decoder_at_one_eighth_and_one_quarter_in_every_layout() {
    let layouts = layouts();
    assert!(layouts.len() >= 10, "fixtures missing: run scripts/make_jpeg_fixtures.py");
    for (name, bytes) in layouts {
        // Progressive files only at 1/8: at 1/4 their AC scans are needed, the full decoder's work.
        let progressive = name.contains("progressive");
        assert!(!progressive || decode_reduced(&bytes, 2).is_none(), "{name}: progressive at 1/4");
        for eighths in if progressive { vec![1] } else { vec![1, 2] } {
            let ours = decode_reduced(&bytes, eighths).unwrap_or_else(|| panic!("{name} at {eighths}/8: not decoded"));
            let (w, h, theirs) = reference(&bytes, eighths as u16);
            assert_eq!(ours.dimensions(), (w, h), "{name} at {eighths}/8");
            // Samples and chroma upsampling are the same computation; jpeg-decoder converts
            // colour with a 16-bit SIMD approximation of the formula, so RGB may differ by one.
            // At 1/8 its block means are truncated where ours are rounded: a level more in each
            // plane, up to three in RGB.
            let grey = name.contains("grey") || name.contains("gray");
            let tolerance = match (eighths, grey) {
                (2, true) => 0,
                (2, false) | (1, true) => 1,
                _ => 3,
            };
            let worst = ours.as_raw().iter().zip(&theirs).map(|(a, b)| a.abs_diff(*b)).max().unwrap();
            assert!(worst <= tolerance, "{name} at {eighths}/8: differs by up to {worst}");
        }
    }
}

/// At 1/8 a pixel is its block's mean, rounded to nearest as libjpeg rounds it. On a quality-95
/// picture (a DC step of 2, where truncating, as jpeg-decoder does, loses 3/8 of a level on
/// average) the pixels lie within a level of the full decode's block means, with no bias.
#[test]
fn one_eighth_pixels_are_the_full_decodes_block_means() {
    let (width, height) = (512, 384);
    let grey = image::open(image_path("astronaut.jpg"))
        .unwrap()
        .resize_exact(width, height, image::imageops::FilterType::Triangle)
        .to_luma8();
    let mut jpeg = Vec::new();
    grey.write_with_encoder(image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 95)).unwrap();
    let full = jpeg_decoder::Decoder::new(Cursor::new(&jpeg)).decode().unwrap();
    let ours = decode_reduced(&jpeg, 1).unwrap();
    let (mut bias, mut worst) = (0.0f64, 0.0f64);
    for (x, y, pixel) in ours.enumerate_pixels() {
        let block = (0..64).map(|i| f64::from(full[((8 * y + i / 8) * width + 8 * x + i % 8) as usize]));
        let difference = f64::from(pixel[0]) - block.sum::<f64>() / 64.0;
        bias += difference / f64::from(ours.width() * ours.height());
        worst = worst.max(difference.abs());
    }
    assert!(bias.abs() < 0.25 && worst < 1.0, "off the block means by {bias:.3} on average, {worst:.3} at worst");
}

#[test]
fn leaves_other_kinds_of_file_to_the_full_decoder() {
    for name in ["coffee_cmyk.jpg", "coffee.png"] {
        assert!(decode_reduced(&std::fs::read(image_path(name)).unwrap(), 1).is_none(), "{name}");
    }
    assert!(decode_reduced(&[], 1).is_none());
    assert!(decode_reduced(&[0xFF, 0xD8, 0xFF], 1).is_none());
    // Other scales are the full decoder's.
    assert!(decode_reduced(&std::fs::read(image_path("rocket.jpg")).unwrap(), 4).is_none());
}

/// Offset of the first byte after the (first) SOS segment.
fn scan_start(bytes: &[u8]) -> usize {
    let sos = bytes.windows(2).position(|w| w == [0xFF, 0xDA]).unwrap();
    sos + 2 + u16::from_be_bytes([bytes[sos + 2], bytes[sos + 3]]) as usize
}

#[test]
fn truncated_files_are_refused_not_padded() {
    for (name, bytes) in layouts() {
        let start = scan_start(&bytes);
        // Every cut inside the entropy-coded data, up to the last two bytes of padding and EOI.
        for end in (start..bytes.len() - 4).step_by(97) {
            for eighths in [1, 2] {
                let decoded = decode_reduced(&bytes[..end], eighths);
                assert!(decoded.is_none(), "{name}: cut at {end} of {} decoded at {eighths}/8", bytes.len());
            }
        }
    }
}

#[test]
fn damaged_files_never_panic() {
    // The layouts with most structure: restart markers, long codes, unsubsampled chroma.
    let layouts =
        layouts().into_iter().filter(|(name, _)| ["restarts", "optimised", "444"].iter().any(|k| name.contains(k)));
    for (name, bytes) in layouts {
        // Every other header byte, then every 29th byte of the scan; each set to 0x00 and 0xFF.
        let positions = (0..scan_start(&bytes)).step_by(2).chain((scan_start(&bytes)..bytes.len()).step_by(29));
        for position in positions {
            for value in [0x00, 0xFF] {
                let mut damaged = bytes.clone();
                damaged[position] = value;
                let result = std::panic::catch_unwind(|| (decode_reduced(&damaged, 1), decode_reduced(&damaged, 2)));
                assert!(result.is_ok(), "{name}: panicked with byte {position} set to {value:#x}");
            }
        }
    }
}
