//! Camera RAW files through the real binary: `index`, `search` and `embed` read each through the
//! JPEG the camera embedded in it, upright by the RAW's own orientation tag, with its camera and
//! date; a RAW without a picture inside is reported, not indexed.
//!
//! The files are built here the way cameras lay them out: TIFF structures (NEF, CR2, ARW, DNG,
//! PEF; ORF with Olympus' own magic number) whose preview sits behind a sub-IFD and whose sensor
//! data comes as lossless JPEG or raw bytes, a phone's DNG with only an RGB thumbnail, Canon's
//! CR3 (ISO boxes) and Fujifilm's RAF (a header, then a whole JPEG).

use std::path::Path;

use crate::common::cli::{embed_pictures, imgsearch, json};
use crate::common::{self, cosine, image_path, jpeg_with_exif, model_dir};
use serde_json::Value;

const MODEL: &str = "tiny-clip-b32-quickgelu";

/// One IFD entry: tag, TIFF type (2 ASCII, 3 SHORT, 4 LONG), count, and its value: inline when
/// it fits 4 bytes, else at an offset the builder fills in.
struct Entry(u16, u16, u32, Vec<u8>);

fn short(tag: u16, value: u16) -> Entry {
    Entry(tag, 3, 1, value.to_le_bytes().to_vec())
}

fn long(tag: u16, value: u32) -> Entry {
    Entry(tag, 4, 1, value.to_le_bytes().to_vec())
}

fn ascii(tag: u16, text: &str) -> Entry {
    let bytes = [text.as_bytes(), b"\0"].concat();
    Entry(tag, 2, bytes.len() as u32, bytes)
}

/// Appends an IFD (entries sorted by tag, no next IFD) at the end of `out`, its long values
/// after it; returns where it starts.
fn push_ifd(out: &mut Vec<u8>, entries: &[Entry]) -> u32 {
    let start = out.len();
    let mut values = start + 2 + 12 * entries.len() + 4;
    let mut tail = Vec::new();
    out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    for Entry(tag, kind, count, value) in entries {
        out.extend_from_slice(&tag.to_le_bytes());
        out.extend_from_slice(&kind.to_le_bytes());
        out.extend_from_slice(&count.to_le_bytes());
        if value.len() <= 4 {
            out.extend_from_slice(&[value.as_slice(), &[0; 4][value.len()..]].concat());
        } else {
            out.extend_from_slice(&(values as u32).to_le_bytes());
            tail.extend_from_slice(value);
            values += value.len();
        }
    }
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&tail);
    if out.len() % 2 == 1 {
        out.push(0); // TIFF keeps offsets on word boundaries
    }
    start as u32
}

/// A TIFF-structured RAW file: IFD0 with the camera, the orientation and a pointer to the EXIF
/// IFD (the date) and to a sub-IFD holding the preview JPEG (as NEF and DNG do); then the
/// sensor data. `preview` None: a RAW with no picture inside.
fn tiff_raw(magic: &[u8; 4], orientation: u16, preview: Option<&[u8]>) -> Vec<u8> {
    let sensor = sensor_data();
    let mut out = [magic.as_slice(), &0u32.to_le_bytes()].concat();
    // Blobs first, so that every IFD can point at them.
    let sensor_at = out.len() as u32;
    out.extend_from_slice(&sensor);
    let preview_at = out.len() as u32;
    out.extend_from_slice(preview.unwrap_or_default());
    if out.len() % 2 == 1 {
        out.push(0);
    }
    let exif = push_ifd(&mut out, &[ascii(0x9003, "2021:07:04 10:30:00")]);
    let mut sub = vec![short(0x0103, 1), long(0x0111, sensor_at), long(0x0117, sensor.len() as u32)];
    if let Some(preview) = preview {
        sub = vec![long(0x0201, preview_at), long(0x0202, preview.len() as u32)];
    }
    let sub = push_ifd(&mut out, &sub);
    let ifd0 = push_ifd(
        &mut out,
        &[
            ascii(0x010F, "NIKON CORPORATION"),
            ascii(0x0110, "NIKON D850"),
            short(0x0112, orientation),
            long(0x014A, sub),
            long(0x8769, exif),
        ],
    );
    out[4..8].copy_from_slice(&ifd0.to_le_bytes());
    out
}

/// What a RAW's sensor data can hold that is not a picture: a lossless JPEG frame (CR2's and
/// DNG's mosaic, larger than any preview), bytes that start like a huge baseline JPEG but are
/// not one, and noise.
fn sensor_data() -> Vec<u8> {
    // SOI, SOF3: 14 bits, 4000 × 6000, one component.
    let lossless = [0xFF, 0xD8, 0xFF, 0xC3, 0x00, 0x0B, 0x0E, 0x0F, 0xA0, 0x17, 0x70, 0x01, 0x01, 0x11, 0x00];
    // SOI, SOF0: 8 bits, 6000 × 8000, three components; then no tables and no scan.
    let fake = [
        0xFF, 0xD8, 0xFF, 0xC0, 0x00, 0x11, 0x08, 0x17, 0x70, 0x1F, 0x40, 0x03, 0x01, 0x22, 0x00, 0x02, 0x11, 0x01,
        0x03, 0x11, 0x01,
    ];
    let noise: Vec<u8> = (0u32..20_000).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    [lossless.as_slice(), &noise, &fake, &noise].concat()
}

/// A phone's DNG as Android's `DngCreator` writes it: no JPEG inside, an uncompressed RGB
/// thumbnail in IFD0 and the sensor data behind a sub-IFD.
fn phone_dng(thumbnail: &image::RgbImage) -> Vec<u8> {
    let (sensor, pixels) = (sensor_data(), thumbnail.as_raw());
    let mut out = b"II*\0\0\0\0\0".to_vec();
    let sensor_at = out.len() as u32;
    out.extend_from_slice(&sensor);
    let pixels_at = out.len() as u32;
    out.extend_from_slice(pixels);
    if out.len() % 2 == 1 {
        out.push(0);
    }
    let sub = push_ifd(&mut out, &[short(0x0103, 7), long(0x0111, sensor_at), long(0x0117, sensor.len() as u32)]);
    let (width, height) = thumbnail.dimensions();
    let ifd0 = push_ifd(
        &mut out,
        &[
            long(0x00FE, 1),
            long(0x0100, width),
            long(0x0101, height),
            Entry(0x0102, 3, 3, [8u16, 8, 8].iter().flat_map(|b| b.to_le_bytes()).collect()),
            short(0x0103, 1),
            short(0x0106, 2),
            ascii(0x010F, "Google"),
            ascii(0x0110, "Pixel 8"),
            long(0x0111, pixels_at),
            short(0x0112, 1),
            short(0x0115, 3),
            long(0x0116, height),
            long(0x0117, pixels.len() as u32),
            short(0x011C, 1),
            long(0x014A, sub),
            Entry(0xC612, 1, 4, vec![1, 4, 0, 0]),
        ],
    );
    out[4..8].copy_from_slice(&ifd0.to_le_bytes());
    out
}

/// A Fujifilm RAF: magic, format and camera ids, then the offset and length of the JPEG that
/// follows (with the camera's EXIF inside); the sensor data would come after it.
fn raf(jpeg: &[u8]) -> Vec<u8> {
    let mut out = b"FUJIFILMCCD-RAW 0201FF393401X-T3".to_vec();
    out.resize(84, 0);
    let at = 160u32;
    out.extend_from_slice(&at.to_be_bytes());
    out.extend_from_slice(&(jpeg.len() as u32).to_be_bytes());
    out.resize(at as usize, 0);
    out.extend_from_slice(jpeg);
    out.extend_from_slice(&sensor_data());
    out
}

/// A Canon CR3: an ISO base media file whose `moov` box holds Canon's metadata boxes (CMT1 the
/// main IFD, CMT2 the EXIF IFD, each a TIFF structure of its own), then the pictures in `mdat`.
fn cr3(jpeg: &[u8], orientation: u16) -> Vec<u8> {
    let tiff = |entries: &[Entry]| {
        let mut tiff = b"II*\0\x08\0\0\0".to_vec();
        push_ifd(&mut tiff, entries);
        tiff
    };
    let boxed = |name: &[u8], body: &[u8]| [&((body.len() + 8) as u32).to_be_bytes()[..], name, body].concat();
    let canon = [0x85, 0xC0, 0xB6, 0x87, 0x82, 0x0F, 0x11, 0xE0, 0x81, 0x11, 0xF4, 0xCE, 0x46, 0x2B, 0x6A, 0x48];
    let main = tiff(&[ascii(0x010F, "Canon"), ascii(0x0110, "Canon EOS R5"), short(0x0112, orientation)]);
    let metadata =
        [canon.as_slice(), &boxed(b"CMT1", &main), &boxed(b"CMT2", &tiff(&[ascii(0x9003, "2022:05:06 07:08:09")]))]
            .concat();
    [
        boxed(b"ftyp", b"crx \0\0\0\x01crx isom"),
        boxed(b"moov", &boxed(b"uuid", &metadata)),
        boxed(b"mdat", &[jpeg, &sensor_data()].concat()),
    ]
    .concat()
}

/// `jpeg` with an EXIF segment holding only an orientation tag.
fn with_orientation(jpeg: &[u8], orientation: u16) -> Vec<u8> {
    let mut tiff = b"II*\0\x08\0\0\0".to_vec();
    push_ifd(&mut tiff, &[short(0x0112, orientation)]);
    let payload = [b"Exif\0\0".as_slice(), &tiff].concat();
    let segment = [[0xFF, 0xE1].as_slice(), &((payload.len() + 2) as u16).to_be_bytes(), &payload].concat();
    [&jpeg[..2], &segment, &jpeg[2..]].concat()
}

fn hit<'a>(hits: &'a Value, name: &str) -> &'a Value {
    hits.as_array().unwrap().iter().find(|h| h["path"].as_str().unwrap().ends_with(name)).unwrap_or_else(|| {
        panic!("{name} not among the hits: {hits:#}");
    })
}

#[test]
fn raw_files_are_indexed_through_their_embedded_preview_upright_with_camera_and_date() {
    let tmp = tempfile::tempdir().unwrap();
    let (root, data) = (tmp.path().join("photos"), tmp.path().join("data"));
    std::fs::create_dir_all(&root).unwrap();
    let rocket = std::fs::read(image_path("rocket.jpg")).unwrap(); // 640 × 427
    let astronaut = std::fs::read(image_path("astronaut.jpg")).unwrap();
    std::fs::write(root.join("DSC_0001.NEF"), tiff_raw(b"II*\0", 1, Some(&rocket))).unwrap();
    // Shot in portrait: stored on its side, the RAW's tag says turn it 90° clockwise.
    std::fs::write(root.join("DSC_0002.nef"), tiff_raw(b"II*\0", 6, Some(&rocket))).unwrap();
    std::fs::write(root.join("P1000003.ORF"), tiff_raw(b"IIRO", 1, Some(&astronaut))).unwrap();
    let fuji_jpeg = tmp.path().join("fuji.jpg");
    jpeg_with_exif(
        "astronaut.jpg",
        &[
            (exif::Tag::Make, "FUJIFILM"),
            (exif::Tag::Model, "X-T3"),
            (exif::Tag::DateTimeOriginal, "2020:01:02 03:04:05"),
        ],
        &fuji_jpeg,
    );
    std::fs::write(root.join("DSCF0004.RAF"), raf(&std::fs::read(&fuji_jpeg).unwrap())).unwrap();
    std::fs::write(root.join("IMG_0005.CR2"), tiff_raw(b"II*\0", 1, None)).unwrap();
    let thumbnail =
        image::open(image_path("rocket.jpg")).unwrap().resize_exact(256, 171, image::imageops::Triangle).to_rgb8();
    std::fs::write(root.join("PXL_0007.dng"), phone_dng(&thumbnail)).unwrap();
    let thumbnail_png = tmp.path().join("thumbnail.png");
    thumbnail.save(&thumbnail_png).unwrap();
    // Shot in portrait the other way: turn 90° counter-clockwise.
    std::fs::write(root.join("IMG_0006.CR3"), cr3(&rocket, 8)).unwrap();

    let summary = json(imgsearch(&data).arg("index").arg(&root).args(["--json", "--model"]).arg(model_dir(MODEL)));
    assert_eq!(summary["indexed"], 6, "{summary:#}");
    let errors = summary["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{summary:#}");
    assert!(errors[0]["path"].as_str().unwrap().ends_with("IMG_0005.CR2"), "{summary:#}");
    let reason = errors[0]["reason"].as_str().unwrap();
    assert!(reason.contains("without an embedded JPEG preview") && reason.contains("Export a JPEG"), "{reason}");
    assert!(reason.contains("does not decode"), "the sensor data's look-alike was tried: {reason}");

    let hits = json(imgsearch(&data).args(["search", "--image"]).arg(image_path("rocket.jpg")).args(["--json"]));
    let (flat, portrait) = (hit(&hits, "DSC_0001.NEF"), hit(&hits, "DSC_0002.nef"));
    assert_eq!((flat["width"].as_u64(), flat["height"].as_u64()), (Some(640), Some(427)), "{flat:#}");
    assert_eq!((portrait["width"].as_u64(), portrait["height"].as_u64()), (Some(427), Some(640)), "{portrait:#}");
    assert!(flat["camera"].as_str().unwrap().contains("NIKON D850"), "{flat:#}");
    assert_eq!(flat["taken"].as_str(), Some("2021-07-04T10:30:00"), "the EXIF IFD's date: {flat:#}");
    assert!(hit(&hits, "P1000003.ORF")["camera"].as_str().unwrap().contains("NIKON D850"), "ORF's own TIFF magic");
    let fuji = hit(&hits, "DSCF0004.RAF");
    assert!(fuji["camera"].as_str().unwrap().contains("X-T3"), "RAF's EXIF is in its JPEG: {fuji:#}");
    assert_eq!(fuji["taken"].as_str(), Some("2020-01-02T03:04:05"), "{fuji:#}");

    let canon = hit(&hits, "IMG_0006.CR3");
    assert_eq!((canon["width"].as_u64(), canon["height"].as_u64()), (Some(427), Some(640)), "{canon:#}");
    assert!(canon["camera"].as_str().unwrap().contains("EOS R5"), "CR3's CMT1 box: {canon:#}");
    assert_eq!(canon["taken"].as_str(), Some("2022-05-06T07:08:09"), "CR3's CMT2 box: {canon:#}");

    let phone = hit(&hits, "PXL_0007.dng");
    assert_eq!((phone["width"].as_u64(), phone["height"].as_u64()), (Some(256), Some(171)), "{phone:#}");
    assert!(phone["camera"].as_str().unwrap().contains("Pixel 8"), "{phone:#}");

    // Each RAW's format is its own, so `type:` finds them.
    let nefs = json(imgsearch(&data).args(["search", "type:nef", "--json"]));
    assert_eq!(nefs.as_array().unwrap().len(), 2, "{nefs:#}");

    // The embedding is the preview's: the same as the JPEG's, and the portrait one the same as
    // that JPEG's with the EXIF tag a camera writes for a portrait shot.
    let turned = tmp.path().join("turned.jpg");
    std::fs::write(&turned, with_orientation(&rocket, 6)).unwrap();
    let pictures = [
        root.join("DSC_0001.NEF"),
        image_path("rocket.jpg"),
        root.join("DSC_0002.nef"),
        turned.clone(),
        root.join("PXL_0007.dng"),
        thumbnail_png.clone(),
    ];
    let embedded = embed_pictures(&model_dir(MODEL), &pictures);
    let vector = |path: &Path| &embedded[path];
    let same = cosine(vector(&root.join("DSC_0001.NEF")), vector(&image_path("rocket.jpg")));
    assert!(same > 0.99999, "the NEF embeds as its preview: cosine {same}");
    let upright = cosine(vector(&root.join("DSC_0002.nef")), vector(&turned));
    assert!(upright > 0.99999, "the portrait NEF embeds upright: cosine {upright}");
    let phone = cosine(vector(&root.join("PXL_0007.dng")), vector(&thumbnail_png));
    assert!(phone > 0.99999, "a DNG without a JPEG embeds as its RGB thumbnail: cosine {phone}");
}

#[test]
fn the_server_previews_any_picture_as_an_upright_jpeg_takes_raw_uploads_and_serves_originals_as_they_are() {
    let tmp = tempfile::tempdir().unwrap();
    let photos = tmp.path().join("photos");
    std::fs::create_dir_all(&photos).unwrap();
    let rocket = std::fs::read(image_path("rocket.jpg")).unwrap(); // 640 × 427
    let nef = tiff_raw(b"II*\0", 6, Some(&rocket));
    std::fs::write(photos.join("DSC_0002.NEF"), &nef).unwrap();
    // A wide TIFF: Chromium and Firefox show no TIFF at all.
    image::open(image_path("rocket.jpg"))
        .unwrap()
        .resize_exact(2400, 1000, image::imageops::Triangle)
        .save(photos.join("wide.tif"))
        .unwrap();
    let server = common::server::index_and_serve(&photos, &tmp.path().join("data"), &[]);

    let hits = common::http::get(&server.addr, "/api/search?q=a%20photo&k=10").json();
    let id_of = |name: &str| hit(&hits["hits"], name)["id"].as_u64().unwrap();
    let jpeg_size = |path: &str| {
        let response = common::http::get(&server.addr, path);
        assert_eq!(response.status, 200, "{path}: {}", String::from_utf8_lossy(&response.body));
        assert_eq!(response.header("content-type").as_deref(), Some("image/jpeg"), "{path}");
        let picture = image::load_from_memory_with_format(&response.body, image::ImageFormat::Jpeg).unwrap();
        (picture.width(), picture.height())
    };
    let (raw, wide) = (id_of("DSC_0002.NEF"), id_of("wide.tif"));
    // Upright, fit into 1,600 px, never enlarged; thumbnails into 320.
    assert_eq!(jpeg_size(&format!("/api/images/{raw}/preview")), (427, 640));
    assert_eq!(jpeg_size(&format!("/api/images/{raw}/thumbnail")), (214, 320));
    assert_eq!(jpeg_size(&format!("/api/images/{wide}/preview")), (1600, 667));
    assert_eq!(jpeg_size(&format!("/api/images/{wide}/thumbnail")), (320, 133));
    let info = common::http::get(&server.addr, &format!("/api/images/{raw}")).json();
    assert_eq!(info["preview"], format!("/api/images/{raw}/preview"), "{info:#}");
    // A RAW uploaded to search by is read as one by its file name (its content reads as a TIFF).
    let (content_type, body) = common::http::multipart("image", "DSC_0002.NEF", &nef);
    let found = common::http::request(&server.addr, "POST", "/api/search/image?k=1", Some(&content_type), &body);
    assert_eq!(found.status, 200, "{}", String::from_utf8_lossy(&found.body));
    let top = &found.json()["hits"][0];
    assert!(top["path"].as_str().unwrap().ends_with("DSC_0002.NEF"), "{top:#}");
    assert!(top["score"].as_f64().unwrap() > 0.9999, "{top:#}");
    // The original, byte for byte: a RAW is no picture type a browser knows.
    let original = common::http::get(&server.addr, &format!("/api/images/{raw}/file"));
    assert_eq!((original.status, original.body == nef), (200, true));
    assert_eq!(original.header("content-type").as_deref(), Some("application/octet-stream"));
}
