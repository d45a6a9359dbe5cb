//! Decoding and preprocessing behaviour that the reference does not cover: the fast scaled-JPEG
//! path stays close to the exact one, and EXIF orientation is applied.

use crate::common::{cosine, image_path, model_dir, MODELS};
use image::codecs::jpeg::JpegEncoder;
use image::imageops::FilterType;
use imgsearch::ingest::decode::{decode_bytes, decode_file, model_input, model_input_file, DecodeOptions, MinSize};
use imgsearch::Clip;
use std::path::Path;

#[test]
fn scaled_jpeg_decoding_keeps_embeddings_within_0_995_of_the_exact_path() {
    for model in MODELS {
        let clip = Clip::load(model_dir(model).to_str().unwrap(), &candle_core::Device::Cpu).unwrap();
        let pre = clip.preprocess_config();
        let mut scaled_any = false;
        for name in ["astronaut.jpg", "rocket.jpg", "chelsea_progressive.jpg", "camera_gray.jpg"] {
            let path = image_path(name);
            let exact = decode_file(&path, &DecodeOptions::default()).unwrap();
            let fast = model_input_file(&path, pre, u64::MAX).unwrap();
            let fast_decoded = decode_file(&path, &DecodeOptions::for_model(pre, u64::MAX)).unwrap();
            scaled_any |= fast_decoded.rgb.width() < exact.rgb.width();
            assert!(
                fast_decoded.rgb.width().min(fast_decoded.rgb.height()) >= pre.shortest_edge,
                "{name}: scaled below the resize target"
            );
            assert_eq!(
                (fast_decoded.original_width, fast_decoded.original_height),
                (exact.original_width, exact.original_height)
            );
            let e = clip.embed_images(&[pre.apply(&exact.rgb), fast]).unwrap();
            let c = cosine(&e[0], &e[1]);
            eprintln!(
                "{model}: {name}: decoded {}x{} instead of {}x{}, cosine {c:.5}",
                fast_decoded.rgb.width(),
                fast_decoded.rgb.height(),
                exact.rgb.width(),
                exact.rgb.height()
            );
            assert!(c >= 0.995, "{model}: {name}: fast path cosine {c}");
        }
        assert!(scaled_any, "{model}: the fast path was never taken");
    }
}

#[test]
fn camera_size_jpegs_decode_from_dc_coefficients_within_0_995_of_the_exact_path() {
    // A camera-size picture: 8x the model's input and more on both sides, so 1/8 scale is taken.
    let photo = image::open(image_path("astronaut.jpg")).unwrap().resize_exact(2016, 1800, FilterType::Triangle);
    let mut jpeg = Vec::new();
    photo.to_rgb8().write_with_encoder(JpegEncoder::new_with_quality(&mut jpeg, 90)).unwrap();
    let dc_only = imgsearch::ingest::jpeg_reduced::decode_reduced(&jpeg, 1).expect("a baseline JPEG");
    let path = Path::new("camera.jpg");
    let exact = decode_bytes(&jpeg, path, &DecodeOptions::default()).unwrap();
    for model in MODELS {
        let clip = Clip::load(model_dir(model).to_str().unwrap(), &candle_core::Device::Cpu).unwrap();
        let pre = clip.preprocess_config();
        let fast = decode_bytes(&jpeg, path, &DecodeOptions::for_model(pre, u64::MAX)).unwrap();
        assert_eq!(fast.rgb.dimensions(), (252, 225), "{model}: not decoded at 1/8");
        assert!(fast.rgb == dc_only, "{model}: the 1/8 decode did not come from the DC coefficients");
        let e = clip.embed_images(&[pre.apply(&exact.rgb), pre.apply_covering(&fast.rgb, fast.coverage())]).unwrap();
        let c = cosine(&e[0], &e[1]);
        eprintln!("{model}: camera-size JPEG from DC coefficients: cosine {c:.5}");
        assert!(c >= 0.995, "{model}: DC-only decode cosine {c}");
    }
}

#[test]
fn progressive_jpegs_take_the_dc_scans_path_when_one_eighth_covers_the_model_input() {
    let bytes = std::fs::read(image_path("jpeg_layouts/progressive_420.jpg")).unwrap(); // 203x157
    let options = DecodeOptions { min_size: Some(MinSize::Covering(16, 16)), ..Default::default() };
    let decoded = decode_bytes(&bytes, Path::new("progressive.jpg"), &options).unwrap();
    assert_eq!(decoded.rgb.dimensions(), (26, 20), "not decoded at 1/8");
    let dc_scans = imgsearch::ingest::jpeg_reduced::decode_reduced(&bytes, 1).expect("a progressive JPEG");
    assert!(decoded.rgb == dc_scans, "the 1/8 decode did not come from the DC scans");
    // At 1/4 the full decoder takes it, and still gives a picture.
    let options = DecodeOptions { min_size: Some(MinSize::Covering(30, 30)), ..Default::default() };
    let quarter = decode_bytes(&bytes, Path::new("progressive.jpg"), &options).unwrap();
    assert_eq!(quarter.rgb.dimensions(), (51, 40));
}

/// Inserts an EXIF APP1 segment holding only an Orientation tag right after the JPEG SOI marker.
fn with_exif_orientation(jpeg: &[u8], orientation: u16) -> Vec<u8> {
    let mut tiff = Vec::new();
    tiff.extend_from_slice(b"II*\0");
    tiff.extend_from_slice(&8u32.to_le_bytes()); // IFD0 offset
    tiff.extend_from_slice(&1u16.to_le_bytes()); // one entry
    tiff.extend_from_slice(&0x0112u16.to_le_bytes()); // Orientation
    tiff.extend_from_slice(&3u16.to_le_bytes()); // SHORT
    tiff.extend_from_slice(&1u32.to_le_bytes());
    tiff.extend_from_slice(&orientation.to_le_bytes());
    tiff.extend_from_slice(&[0, 0]);
    tiff.extend_from_slice(&0u32.to_le_bytes()); // no next IFD
    let mut app1 = b"Exif\0\0".to_vec();
    app1.extend_from_slice(&tiff);
    let mut out = jpeg[..2].to_vec();
    out.extend_from_slice(&[0xFF, 0xE1]);
    out.extend_from_slice(&((app1.len() + 2) as u16).to_be_bytes());
    out.extend_from_slice(&app1);
    out.extend_from_slice(&jpeg[2..]);
    out
}

#[test]
fn exif_orientation_is_applied_on_both_decode_paths() {
    let original = std::fs::read(image_path("rocket.jpg")).unwrap(); // 640 wide, 427 high
    let rotated = with_exif_orientation(&original, 6); // "rotate 90° clockwise to display"
                                                       // Full size, 1/4 (jpeg-decoder or libjpeg-turbo) and 1/8 (DC coefficients only).
    for min_size in [None, Some(MinSize::Covering(64, 64)), Some(MinSize::Covering(48, 48))] {
        let options = DecodeOptions { min_size, ..Default::default() };
        let upright = decode_bytes(&original, Path::new("rocket.jpg"), &options).unwrap();
        let turned = decode_bytes(&rotated, Path::new("rocket-exif6.jpg"), &options).unwrap();
        assert_eq!((turned.original_width, turned.original_height), (427, 640), "{min_size:?}");
        let expected = image::imageops::rotate90(&upright.rgb);
        assert_eq!(turned.rgb.dimensions(), expected.dimensions(), "{min_size:?}");
        assert!(turned.rgb == expected, "{min_size:?}: pixels are not the upright picture rotated 90° clockwise");
    }
}

/// A JPEG whose sides are not multiples of 8, decoded at 1/8, gives the model a picture as close
/// to the exact path's as one whose sides are, in every EXIF orientation: the last block column
/// and row are read for the part of a pixel they cover, on whichever sides the orientation turned
/// them to, and the resize takes its size from the full picture (1007 × 777 goes to 124 × 96 for
/// a 96-pixel model; its 126 × 98 pixels at 1/8 would give 123 × 96).
#[test]
fn jpegs_of_any_size_decode_at_one_eighth_as_closely_in_every_orientation() {
    let photo = image::open(image_path("astronaut.jpg")).unwrap();
    for model in MODELS {
        let clip = Clip::load(model_dir(model).to_str().unwrap(), &candle_core::Device::Cpu).unwrap();
        let pre = clip.preprocess_config();
        let worst_cosine = |(width, height): (u32, u32)| {
            let mut jpeg = Vec::new();
            let picture = photo.resize_exact(width, height, FilterType::Triangle).to_rgb8();
            picture.write_with_encoder(JpegEncoder::new_with_quality(&mut jpeg, 95)).unwrap();
            (1..=8)
                .map(|orientation| {
                    let turned = with_exif_orientation(&jpeg, orientation);
                    let path = Path::new("photo.jpg");
                    let exact = decode_bytes(&turned, path, &DecodeOptions::default()).unwrap();
                    let (fast, _) = model_input(&turned, path, pre, u64::MAX).unwrap();
                    let e = clip.embed_images(&[pre.apply(&exact.rgb), fast]).unwrap();
                    cosine(&e[0], &e[1])
                })
                .fold(1.0f32, f32::min)
        };
        let (aligned, ragged) = (worst_cosine((1008, 776)), worst_cosine((1007, 777)));
        eprintln!(
            "{model}: worst cosine to the exact path at 1/8: {aligned:.5} at 1008 x 776, {ragged:.5} at 1007 x 777"
        );
        assert!(ragged >= aligned - 0.001, "{model}: {ragged} at 1007 x 777 against {aligned} at 1008 x 776");
    }
}
