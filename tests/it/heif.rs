//! HEIC and AVIF pictures (what phones save) through libheif: decoded as the reference reader
//! decodes them, upright by the container's rotation and not a second time by the EXIF tag an
//! iPhone also writes; indexed with their camera, date and place; previewed and searched by
//! upload over HTTP. Without libheif they are reported with what to install, and indexed by the
//! first run after it is there.
//!
//! The fixtures (`tests/fixtures/images/heif/`, from `scripts/make_heif_fixtures.py`) were
//! written by pillow-heif and Pillow, each beside the reference reader's decode of it (a PNG).

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::common::cli::{embed_pictures, imgsearch, json};
use crate::common::{self, cosine, model_arg, model_dir, PARITY_MODELS};
use imgsearch::ingest::decode::{decode_file, DecodeOptions, MinSize};
use imgsearch::model::config::Alpha;
use imgsearch::Clip;

const MODEL: &str = "tiny-clip-b32-quickgelu";

fn heif_fixture(name: &str) -> PathBuf {
    common::image_path("heif").join(name)
}

/// A fixture, the reference reader's decode of it, its upright size, and how far imgsearch's
/// decode may be from the reference's (the mean and the largest difference of a channel value).
struct Fixture {
    name: &'static str,
    reference: &'static str,
    upright: (u32, u32),
    mean_difference: f64,
    max_difference: u32,
}

const PICTURES: [Fixture; 4] = [
    // Stored 427 × 640 with a 90° turn in the container and EXIF orientation 6. The reference
    // is pillow-heif: libheif too, maybe in another version.
    Fixture {
        name: "iphone.heic",
        reference: "iphone.png",
        upright: (640, 427),
        mean_difference: 0.1,
        max_difference: 1,
    },
    Fixture {
        name: "alpha.heic",
        reference: "alpha.png",
        upright: (451, 300),
        mean_difference: 0.1,
        max_difference: 1,
    },
    // 10 bits come down to 8 rounded in one libheif version and truncated in another.
    Fixture {
        name: "tenbit.heic",
        reference: "tenbit.png",
        upright: (256, 192),
        mean_difference: 0.6,
        max_difference: 2,
    },
    // The reference is Pillow's libavif, which upsamples chroma bilinearly where libheif before
    // 1.16 repeats it: sharp colour edges differ, little else.
    Fixture {
        name: "astronaut.avif",
        reference: "astronaut_avif.png",
        upright: (320, 240),
        mean_difference: 1.0,
        max_difference: 40,
    },
];

#[test]
fn heic_and_avif_decode_upright_as_the_reference_reader_decodes_them() {
    for Fixture { name, reference, upright, mean_difference, max_difference } in PICTURES {
        // Alpha discarded: the reference keeps it, and the compositing is tested elsewhere.
        let options = DecodeOptions { alpha: Alpha::Discard, ..Default::default() };
        let decoded = decode_file(&heif_fixture(name), &options).unwrap_or_else(|e| panic!("{name}: {e}"));
        let expected = image::open(heif_fixture(reference)).unwrap().into_rgb8();
        assert_eq!(decoded.rgb.dimensions(), upright, "{name}: not upright, or turned twice");
        assert_eq!((decoded.original_width, decoded.original_height), upright, "{name}");
        let differences: Vec<u32> =
            decoded.rgb.as_raw().iter().zip(expected.as_raw()).map(|(a, b)| a.abs_diff(*b) as u32).collect();
        let mean = differences.iter().sum::<u32>() as f64 / differences.len() as f64;
        let max = differences.iter().max().copied().unwrap_or(0);
        eprintln!("{name}: mean difference {mean:.4}, largest {max}");
        assert!(mean < mean_difference && max <= max_difference, "{name}: mean difference {mean}, largest {max}");
    }
}

#[test]
fn a_heic_thumbnail_stands_in_for_the_picture_where_it_covers_the_models_input() {
    let iphone = heif_fixture("iphone.heic");
    let whole = decode_file(&iphone, &DecodeOptions::default()).unwrap();
    // The CoCa fixtures preprocess as the OpenCLIP ones do; their random pooler moves 2-3x as far
    // as those for the same small change of a picture (open_clip itself: cosine 0.988-0.996 where
    // tiny-openclip-p16-gelu gives 0.996-0.999, for a 320-pixel JPEG of a 640-pixel picture), so
    // they would measure the fixture rather than the thumbnail. So would the ConvNeXt fixtures,
    // whose random 4-pixel stem answers the fine detail a half-size picture lacks (0.992-0.993;
    // their towers equal open_clip's to cosine 0.9999999, so open_clip's move as far), and the
    // MobileCLIP-B fixture's 4-pixel conv stem (0.984; open_clip's own embedding of the fixture
    // rocket.jpg moves to 0.990 at half its size).
    let fixture_bound = |model: &&&str| {
        !["tiny-coca", "tiny-openclip-convnext", "tiny-openclip-mobileclip"].iter().any(|kind| model.starts_with(kind))
    };
    for model in PARITY_MODELS.iter().filter(fixture_bound) {
        let clip = Clip::load(&model_arg(model), &candle_core::Device::Cpu).unwrap();
        let preprocess = clip.preprocess_config();
        let fast = decode_file(&iphone, &DecodeOptions::for_model(preprocess, u64::MAX)).unwrap();
        // The 320-pixel thumbnail, upright as the picture, which keeps its own size.
        assert_eq!(fast.rgb.dimensions(), (320, 212), "{model}: the thumbnail was not taken");
        assert_eq!((fast.original_width, fast.original_height), (640, 427), "{model}");
        let embeddings = clip.embed_images(&[preprocess.apply(&whole.rgb), preprocess.apply(&fast.rgb)]).unwrap();
        let similarity = cosine(&embeddings[0], &embeddings[1]);
        eprintln!("{model}: the thumbnail's embedding against the whole picture's: cosine {similarity:.5}");
        // The bound the reduced-size JPEG decoding keeps (tests/it/preprocess.rs).
        assert!(similarity >= 0.995, "{model}: cosine {similarity}");
    }
    // A box the thumbnail fills takes it; a larger box (the viewer's preview) the whole picture.
    let fit = |side| DecodeOptions { min_size: Some(MinSize::LongSide(side)), ..Default::default() };
    assert_eq!(decode_file(&iphone, &fit(320)).unwrap().rgb.dimensions(), (320, 212));
    assert_eq!(decode_file(&iphone, &fit(321)).unwrap().rgb.dimensions(), (640, 427));
}

fn copy_fixtures(photos: &Path) {
    std::fs::create_dir_all(photos).unwrap();
    for Fixture { name, .. } in PICTURES {
        std::fs::copy(heif_fixture(name), photos.join(name)).unwrap();
    }
}

fn index(data: &Path, photos: &Path, libheif: Option<&str>) -> Value {
    let mut command = imgsearch(data);
    command.arg("index").arg(photos).args(["--json", "--model"]).arg(model_dir(MODEL));
    if let Some(file) = libheif {
        command.env("IMGSEARCH_LIBHEIF", file);
    }
    json(&mut command)
}

fn names(hits: &Value) -> Vec<String> {
    let mut names: Vec<String> = hits
        .as_array()
        .unwrap()
        .iter()
        .map(|hit| Path::new(hit["path"].as_str().unwrap()).file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn heic_and_avif_photos_are_indexed_with_camera_date_and_place_and_bad_ones_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let (photos, data) = (tmp.path().join("photos"), tmp.path().join("data"));
    copy_fixtures(&photos);
    let heic = std::fs::read(heif_fixture("iphone.heic")).unwrap();
    std::fs::write(photos.join("cut_short.heic"), &heic[..heic.len() / 2]).unwrap();
    std::fs::write(photos.join("garbage.heic"), [&heic[..32], &[0xAB; 400][..]].concat()).unwrap();

    let summary = index(&data, &photos, None);
    assert_eq!(summary["indexed"], 4, "{summary:#}");
    let errors = summary["errors"].as_array().unwrap();
    let mut failed: Vec<&str> =
        errors.iter().map(|e| Path::new(e["path"].as_str().unwrap()).file_name().unwrap().to_str().unwrap()).collect();
    failed.sort();
    assert_eq!(failed, ["cut_short.heic", "garbage.heic"], "{summary:#}");
    for error in errors {
        let reason = error["reason"].as_str().unwrap();
        assert!(reason.contains("libheif cannot read it"), "{reason}");
    }

    let hits = json(imgsearch(&data).args(["search", "--image"]).arg(heif_fixture("iphone.png")).arg("--json"));
    let top = &hits[0];
    assert!(top["path"].as_str().unwrap().ends_with("iphone.heic"), "{hits:#}");
    assert!(top["score"].as_f64().unwrap() > 0.995, "embedded through its thumbnail: {top:#}");
    assert_eq!((top["width"].as_u64(), top["height"].as_u64()), (Some(640), Some(427)), "{top:#}");
    assert!(top["camera"].as_str().unwrap().contains("iPhone 15 Pro"), "{top:#}");
    assert_eq!(top["taken"].as_str(), Some("2024-07-14T18:30:00"), "{top:#}");

    let search = |query: &str| names(&json(imgsearch(&data).args(["search", query, "--json"])));
    assert_eq!(search("near:lisbon"), ["iphone.heic"]);
    assert_eq!(search("type:heic"), ["alpha.heic", "iphone.heic", "tenbit.heic"]);
    assert_eq!(search("type:avif"), ["astronaut.avif"]);
    assert_eq!(search("camera:iphone after:2024-07"), ["iphone.heic"]);
}

#[test]
fn without_libheif_heif_photos_are_reported_with_what_to_do_and_indexed_once_it_is_there() {
    let tmp = tempfile::tempdir().unwrap();
    let (photos, data) = (tmp.path().join("photos"), tmp.path().join("data"));
    copy_fixtures(&photos);
    std::fs::copy(common::image_path("rocket.jpg"), photos.join("rocket.jpg")).unwrap();
    let missing = tmp.path().join("no/libheif.so.1");

    let summary = index(&data, &photos, Some(missing.to_str().unwrap()));
    assert_eq!(summary["indexed"], 1, "only the JPEG: {summary:#}");
    let errors = summary["errors"].as_array().unwrap();
    assert_eq!(errors.len(), PICTURES.len(), "{summary:#}");
    for error in errors {
        let reason = error["reason"].as_str().unwrap();
        assert!(
            reason.contains("libheif")
                && reason.contains("IMGSEARCH_LIBHEIF")
                && reason.contains("run `imgsearch index` again"),
            "{reason}"
        );
    }
    let stats = json(imgsearch(&data).args(["stats", "--json"]).env("IMGSEARCH_LIBHEIF", &missing));
    assert!(stats["heif_decoder"].is_null(), "{stats:#}");

    // The files have not changed, but the machine has: they are read this time.
    let again = index(&data, &photos, None);
    assert_eq!((again["indexed"].as_u64(), again["unchanged"].as_u64()), (Some(4), Some(1)), "{again:#}");
    assert!(again["errors"].as_array().unwrap().is_empty(), "{again:#}");
    let stats = json(imgsearch(&data).args(["stats", "--json"]));
    assert!(stats["heif_decoder"].as_str().unwrap().starts_with("libheif 1."), "{stats:#}");
    let all = names(&json(imgsearch(&data).args(["search", "type:heic", "--json"])));
    assert_eq!(all.len(), 3, "{all:?}");
}

#[test]
fn the_server_previews_heic_as_an_upright_jpeg_searches_by_an_uploaded_one_and_serves_the_original() {
    let tmp = tempfile::tempdir().unwrap();
    let photos = tmp.path().join("photos");
    copy_fixtures(&photos);
    let server = common::server::index_and_serve(&photos, &tmp.path().join("data"), &[]);
    let hits = common::http::get(&server.addr, "/api/search?q=type:heic%20name:iphone").json();
    let id = hits["hits"][0]["id"].as_u64().unwrap_or_else(|| panic!("{hits:#}"));

    let jpeg_size = |rendition: &str| {
        let response = common::http::get(&server.addr, &format!("/api/images/{id}/{rendition}"));
        assert_eq!(response.status, 200, "{}", String::from_utf8_lossy(&response.body));
        assert_eq!(response.header("content-type").as_deref(), Some("image/jpeg"));
        let picture = image::load_from_memory_with_format(&response.body, image::ImageFormat::Jpeg).unwrap();
        (picture.width(), picture.height())
    };
    assert_eq!(jpeg_size("preview"), (640, 427), "upright, never enlarged");
    // A result tile is the thumbnail stored in the file (320 × 212), not the whole picture
    // decoded and scaled (320 × 214).
    assert_eq!(jpeg_size("thumbnail"), (320, 212));

    let heic = std::fs::read(heif_fixture("iphone.heic")).unwrap();
    let (content_type, body) = common::http::multipart("image", "IMG_0001.HEIC", &heic);
    let found = common::http::request(&server.addr, "POST", "/api/search/image?k=1", Some(&content_type), &body);
    assert_eq!(found.status, 200, "{}", String::from_utf8_lossy(&found.body));
    let top = &found.json()["hits"][0];
    assert_eq!(top["id"].as_u64(), Some(id), "{top:#}");
    assert!(top["score"].as_f64().unwrap() > 0.9999, "{top:#}");

    let original = common::http::get(&server.addr, &format!("/api/images/{id}/file"));
    assert_eq!((original.status, original.body == heic), (200, true));
    assert_eq!(original.header("content-type").as_deref(), Some("image/heic"));
}

#[test]
fn heic_and_avif_embed_as_their_reference_decodes_do() {
    // iphone.heic embeds through its thumbnail (the test above).
    let whole = || PICTURES.iter().filter(|fixture| fixture.name != "iphone.heic");
    let pictures: Vec<PathBuf> =
        whole().flat_map(|Fixture { name, reference, .. }| [heif_fixture(name), heif_fixture(reference)]).collect();
    let embedded = embed_pictures(&model_dir(MODEL), &pictures);
    for Fixture { name, reference, .. } in whole() {
        let similarity = cosine(&embedded[&heif_fixture(name)], &embedded[&heif_fixture(reference)]);
        assert!(similarity > 0.9999, "{name}: cosine {similarity} to its reference decode");
    }
}
