//! `imgsearch search`, `search --image`, `similar`, `optimize` and `bench` through the real binary.

use crate::common;

use std::path::Path;
use std::process::Command;

use crate::common::server::index_photos;
use crate::common::{image_path, jpeg_with_exif, jpeg_with_gps, model_dir};
use serde_json::Value;

fn imgsearch(data: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_imgsearch"));
    cmd.args(common::library_args(data)).args(["--device", "cpu"]);
    cmd
}

fn json(cmd: &mut Command) -> Value {
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn paths(hits: &Value) -> Vec<String> {
    hits.as_array().unwrap().iter().map(|h| h["path"].as_str().unwrap().to_string()).collect()
}

/// The file names of a search's hits, sorted.
fn sorted_names(data: &Path, query: &str) -> Vec<String> {
    let hits = json(imgsearch(data).args(["search", query, "--json"]));
    let mut names: Vec<String> = paths(&hits).iter().map(|p| p.rsplit('/').next().unwrap().to_string()).collect();
    names.sort();
    names
}

fn indexed() -> (tempfile::TempDir, std::path::PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let photos = tmp.path().join("photos");
    std::fs::create_dir_all(photos.join("rome")).unwrap();
    for name in ["astronaut.jpg", "coffee.png", "chelsea_progressive.jpg", "camera_gray.png"] {
        std::fs::copy(image_path(name), photos.join(name)).unwrap();
    }
    std::fs::copy(image_path("rocket.jpg"), photos.join("rome/rocket.jpg")).unwrap();
    let data = tmp.path().join("data");
    index_photos(&photos, &data, &[]);
    (tmp, data)
}

/// The camera from EXIF make and model: searchable with `camera:` and shown with each hit,
/// whichever of the two a photo has.
#[test]
fn camera_filter_and_hit_field_come_from_exif_make_and_model() {
    let tmp = tempfile::tempdir().unwrap();
    let photos = tmp.path().join("photos");
    std::fs::create_dir_all(&photos).unwrap();
    jpeg_with_exif(
        "astronaut.jpg",
        &[(exif::Tag::Make, "FUJIFILM"), (exif::Tag::Model, "X-T3")],
        &photos.join("a.jpg"),
    );
    jpeg_with_exif("rocket.jpg", &[(exif::Tag::Model, "iPhone 15")], &photos.join("b.jpg"));
    std::fs::copy(image_path("chelsea_progressive.jpg"), photos.join("c.jpg")).unwrap();
    let data = tmp.path().join("data");
    index_photos(&photos, &data, &[]);
    for (query, name, camera) in
        [("camera:fujifilm", "a.jpg", "FUJIFILM X-T3"), ("a photo camera:iphone", "b.jpg", "iPhone 15")]
    {
        let hits = json(imgsearch(&data).args(["search", query, "--json"]));
        assert_eq!(paths(&hits).len(), 1, "{query}: {hits}");
        assert!(paths(&hits)[0].ends_with(name), "{query}: {hits}");
        assert_eq!(hits[0]["camera"], camera, "{query}");
    }
    let all = json(imgsearch(&data).args(["search", "a photo", "--json"]));
    let without = all.as_array().unwrap().iter().find(|h| h["path"].as_str().unwrap().ends_with("c.jpg")).unwrap();
    assert!(without["camera"].is_null(), "{without}");
}

/// `--sort date` orders the best matches newest first, and pages through one and the same list
/// whether the filter is selective (exact scoring) or not (the graph).
#[test]
fn sort_by_date_orders_matches_newest_first_and_pages_consistently() {
    let tmp = tempfile::tempdir().unwrap();
    let photos = tmp.path().join("photos");
    std::fs::create_dir_all(&photos).unwrap();
    let dated = [
        ("astronaut.jpg", "2021:03:01 10:00:00"),
        ("rocket.jpg", "2024:07:15 09:30:00"),
        ("chelsea_progressive.jpg", "2019:12:24 18:00:00"),
    ];
    for (fixture, taken) in dated {
        jpeg_with_exif(fixture, &[(exif::Tag::DateTimeOriginal, taken)], &photos.join(fixture));
    }
    let data = tmp.path().join("data");
    index_photos(&photos, &data, &[]);
    let expected = ["rocket.jpg", "astronaut.jpg", "chelsea_progressive.jpg"];
    for query in ["a photo", "a photo type:jpeg"] {
        let all = paths(&json(imgsearch(&data).args(["search", query, "--sort", "date", "--json"])));
        let names: Vec<&str> = all.iter().map(|p| p.rsplit('/').next().unwrap()).collect();
        assert_eq!(names, expected, "{query}");
        for offset in 0..3 {
            let page = json(
                imgsearch(&data)
                    .args(["search", query, "--sort", "date", "-k", "1", "--json"])
                    .args(["--offset", &offset.to_string()]),
            );
            assert_eq!(paths(&page), all[offset..offset + 1].to_vec(), "{query}, offset {offset}");
        }
    }
}

/// Dates in words narrow by the date taken (EXIF), the rest of the text goes to the model, and
/// a quoted year stays text; times of day and hours narrow by the hour taken.
#[test]
fn dates_in_words_filter_by_the_date_taken() {
    let tmp = tempfile::tempdir().unwrap();
    let photos = tmp.path().join("photos");
    std::fs::create_dir_all(&photos).unwrap();
    for (fixture, taken) in [
        ("astronaut.jpg", "2021:12:25 10:00:00"),
        ("rocket.jpg", "2023:07:15 09:30:00"),
        ("chelsea_progressive.jpg", "2019:02:03 18:00:00"),
    ] {
        jpeg_with_exif(fixture, &[(exif::Tag::DateTimeOriginal, taken)], &photos.join(fixture));
    }
    let data = tmp.path().join("data");
    index_photos(&photos, &data, &[]);
    let names = |query: &str| -> Vec<String> {
        let hits = json(imgsearch(&data).args(["search", query, "--json"]));
        paths(&hits).iter().map(|p| p.rsplit('/').next().unwrap().to_string()).collect()
    };
    assert_eq!(names("a photo, July 2023"), ["rocket.jpg"]);
    assert_eq!(names("a photo christmas 2021"), ["astronaut.jpg"]);
    assert_eq!(names("a photo in 2019"), ["chelsea_progressive.jpg"]);
    assert_eq!(names("a photo winter 2018"), ["chelsea_progressive.jpg"], "winter 2018/2019");
    assert_eq!(names("a photo last year").len(), 0, "nothing was taken in the year before this one");
    assert_eq!(names(r#"a photo "2019""#).len(), 3, "a quoted year is text");
    // The hour of the day taken (10:00, 9:30 and 18:00), past midnight too.
    let sorted = |query: &str| {
        let mut found = names(query);
        found.sort();
        found
    };
    assert_eq!(sorted("a photo time:morning"), ["astronaut.jpg", "rocket.jpg"]);
    assert_eq!(sorted("a photo time:evening"), ["chelsea_progressive.jpg"]);
    assert_eq!(sorted("a photo hour:18"), ["chelsea_progressive.jpg"]);
    assert_eq!(sorted("a photo hour:17-09"), ["chelsea_progressive.jpg", "rocket.jpg"]);
    assert!(sorted("a photo time:night").is_empty());
    // Bounds far in the past or future hold every picture taken between them.
    assert_eq!(names("a photo after:1500").len(), 3);
    assert_eq!(names("a photo after:1000 before:3000").len(), 3);
}

/// `near:` finds what was taken within a radius of a place or a city named in any language
/// (exactly: not the box around the circle), `bbox:` inside a box (across the antimeridian too),
/// with text or alone; a place that is not one is refused with the syntax.
#[test]
fn near_and_bbox_filter_by_where_a_photo_was_taken() {
    let tmp = tempfile::tempdir().unwrap();
    let photos = tmp.path().join("photos");
    std::fs::create_dir_all(&photos).unwrap();
    let eiffel_tower = (48.8584, 2.2945);
    // 4 km north and 4 km east of the tower: inside the box around a 5 km circle, 5.66 km away.
    let places = [
        ("eiffel.jpg", eiffel_tower),
        ("notre_dame.jpg", (48.8530, 2.3499)), // 4.1 km from the tower
        (
            "corner.jpg",
            (48.8584 + 4_000.0 / 111_195.0, 2.2945 + 4_000.0 / (111_195.0 * 48.8764_f64.to_radians().cos())),
        ),
        ("sydney.jpg", (-33.8568, 151.2153)),
        ("fiji_east.jpg", (-17.7, 179.9)),
        ("fiji_west.jpg", (-17.7, -179.9)),
    ];
    for (i, (name, place)) in places.iter().enumerate() {
        let source = ["astronaut.jpg", "rocket.jpg", "chelsea_progressive.jpg"][i % 3];
        jpeg_with_gps(source, *place, &photos.join(name));
    }
    std::fs::copy(image_path("rocket.jpg"), photos.join("nowhere.jpg")).unwrap();
    let data = tmp.path().join("data");
    index_photos(&photos, &data, &[]);
    let names = |query: &str| sorted_names(&data, query);
    for (query, expected) in [
        ("a photo near:48.8584,2.2945", vec!["eiffel.jpg"]),
        ("near:48.8584,2.2945,5km", vec!["eiffel.jpg", "notre_dame.jpg"]),
        ("a photo near:48.8584,2.2945,5.7km", vec!["corner.jpg", "eiffel.jpg", "notre_dame.jpg"]),
        ("near:48.8584,2.2945,4000m", vec!["eiffel.jpg"]),
        ("a photo near:-33.8570,151.2150,100m", vec!["sydney.jpg"]),
        ("a photo bbox:2,48,3,49", vec!["corner.jpg", "eiffel.jpg", "notre_dame.jpg"]),
        ("bbox:177,-18,-179,-17", vec!["fiji_east.jpg", "fiji_west.jpg"]),
        ("a photo bbox:-179,-18,177,-17", vec![]),
        ("a photo near:-17.7,179.95,20km", vec!["fiji_east.jpg", "fiji_west.jpg"]),
        // Cities by name, in any language: Paris reaches 12 km from its centre (Notre-Dame).
        ("a photo near:paris", vec!["corner.jpg", "eiffel.jpg", "notre_dame.jpg"]),
        ("near:Parigi,1km", vec!["notre_dame.jpg"]),
        (r#"a photo "near:paris, united states""#, vec![]),
        ("near:sydney", vec!["sydney.jpg"]),
        // A city in words, capitalised as names are; lower case it stays text.
        ("a photo taken in Sydney", vec!["sydney.jpg"]),
    ] {
        assert_eq!(names(query), expected, "{query}");
    }
    assert_eq!(names("a photo taken in sydney").len(), 7, "lower case: text");
    for (query, says) in [
        ("a photo near:91,0", "latitude between -90 and 90"),
        ("a photo near:48.8,2.3,5", "radius without its unit"),
        ("a photo near:narnia", "names no city imgsearch knows"),
        ("a photo near:paris,atlantis", "names no country"),
        ("a photo bbox:3,48,2", "four numbers"),
        ("a photo bbox:2,49,3,48", "south above its north"),
        ("a photo -near:48.8,2.3", "cannot be negated"),
    ] {
        let out = imgsearch(&data).args(["search", query]).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && stderr.contains(says), "{query}: {stderr}");
    }
}

/// GeoTIFF tags of doubles (tag, values): the tie point, pixel scale or transformation.
type Georeference<'a> = &'a [(u16, &'a [f64])];
/// The GeoKey directory's (key, value) pairs.
type GeoKeys<'a> = &'a [(u16, u16)];

/// A GeoTIFF tile of `fixture`'s picture (64 × 48 pixels) with georeferencing tags, as GDAL
/// writes them.
fn geotiff(fixture: &str, georeference: Georeference, keys: GeoKeys, dest: &Path) {
    use tiff::encoder::{colortype::RGB8, TiffEncoder};
    use tiff::tags::Tag;
    let picture = image::open(image_path(fixture)).unwrap().resize_exact(64, 48, image::imageops::Triangle).to_rgb8();
    let mut encoder = TiffEncoder::new(std::fs::File::create(dest).unwrap()).unwrap();
    let mut tile = encoder.new_image::<RGB8>(64, 48).unwrap();
    for (tag, doubles) in georeference {
        tile.encoder().write_tag(Tag::Unknown(*tag), *doubles).unwrap();
    }
    let mut directory = vec![1, 1, 0, keys.len() as u16];
    for (key, value) in keys {
        directory.extend([*key, 0, 1, *value]);
    }
    tile.encoder().write_tag(Tag::Unknown(34735), &directory[..]).unwrap();
    tile.write_data(picture.as_raw()).unwrap();
}

/// Satellite and aerial tiles are placed by their GeoTIFF georeferencing (their centre): in UTM,
/// in degrees, in Web Mercator; a tile in a system imgsearch does not know gets no place.
#[test]
fn geotiff_tiles_are_found_by_where_they_lie() {
    let tmp = tempfile::tempdir().unwrap();
    let tiles = tmp.path().join("tiles");
    std::fs::create_dir_all(&tiles).unwrap();
    let (projected, geographic) = ((1024, 1), (1024, 2));
    let ten_metres: &[f64] = &[10.0, 10.0, 0.0];
    // Web Mercator by a transformation matrix (3 m pixels).
    let mercator: &[f64] =
        &[3.0, 0.0, 0.0, 255_422.0 - 96.0, 0.0, -3.0, 0.0, 6_250_950.0 + 72.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0];
    #[rustfmt::skip]
    let tiles_made: [(&str, &str, Georeference, GeoKeys); 5] = [
        // 10 m pixels in UTM zone 31N, centred on (448252, 5411944): 48.858302, 2.294501 (PROJ).
        ("paris_utm.tif", "rocket.jpg",
         &[(33922, &[0.0, 0.0, 0.0, 448_252.0 - 320.0, 5_411_944.0 + 240.0, 0.0]), (33550, ten_metres)],
         &[projected, (3072, 32631)]),
        // The same in UTM zone 56S: (334368.6, 6250948.3) is -33.868800, 151.209300 (PROJ).
        ("sydney_utm.tif", "astronaut.jpg",
         &[(33922, &[0.0, 0.0, 0.0, 334_368.6 - 320.0, 6_250_948.3 + 240.0, 0.0]), (33550, ten_metres)],
         &[projected, (3072, 32756)]),
        // Degrees (EPSG:4326), 0.0001° pixels from (151.2, -33.86): centred on -33.8624, 151.2032.
        ("sydney_degrees.tif", "coffee.png",
         &[(33922, &[0.0, 0.0, 0.0, 151.2, -33.86, 0.0]), (33550, &[0.0001, 0.0001, 0.0])],
         &[geographic, (2048, 4326)]),
        // Centred on (255422, 6250950): 48.858879, 2.294495 (PROJ).
        ("paris_mercator.tif", "chelsea_progressive.jpg", &[(34264, mercator)], &[projected, (3072, 3857)]),
        // Lambert-93 (France's own): not a system imgsearch converts.
        ("paris_lambert.tif", "camera_gray.png",
         &[(33922, &[0.0, 0.0, 0.0, 648_000.0, 6_862_000.0, 0.0]), (33550, ten_metres)],
         &[projected, (3072, 2154)]),
    ];
    for (name, fixture, georeference, keys) in tiles_made {
        geotiff(fixture, georeference, keys, &tiles.join(name));
    }
    let data = tmp.path().join("data");
    index_photos(&tiles, &data, &[]);
    let names = |query: &str| sorted_names(&data, query);
    assert_eq!(names("near:48.858302,2.294501,5m"), ["paris_utm.tif"]);
    assert_eq!(names("near:48.858879,2.294495,5m"), ["paris_mercator.tif"]);
    assert_eq!(names("near:-33.868800,151.209300,5m"), ["sydney_utm.tif"]);
    assert_eq!(names("near:-33.8624,151.2032,5m"), ["sydney_degrees.tif"]);
    assert_eq!(names("a satellite image bbox:2,48,3,49"), ["paris_mercator.tif", "paris_utm.tif"]);
    assert_eq!(names("bbox:-180,-90,180,90").len(), 4, "the Lambert-93 tile has no place");
    assert_eq!(names("a satellite image").len(), 5, "the Lambert-93 tile is indexed");
}

#[test]
fn search_by_text_with_filters_paging_and_plain_output() {
    let (_tmp, data) = indexed();
    let hits = json(imgsearch(&data).args(["search", "a photo of a cat", "-k", "3", "--json"]));
    assert_eq!(hits.as_array().unwrap().len(), 3);
    let scores: Vec<f64> = hits.as_array().unwrap().iter().map(|h| h["score"].as_f64().unwrap()).collect();
    assert!(scores.windows(2).all(|w| w[0] >= w[1]));
    let second = json(imgsearch(&data).args(["search", "a photo of a cat", "-k", "1", "--offset", "1", "--json"]));
    assert_eq!(paths(&second), paths(&hits)[1..2].to_vec());
    let rome = json(imgsearch(&data).args(["search", "a photo path:rome", "--json"]));
    assert_eq!(paths(&rome).len(), 1);
    assert!(paths(&rome)[0].ends_with("rome/rocket.jpg"));
    let pngs = json(imgsearch(&data).args(["search", "type:png", "--json"]));
    assert!(paths(&pngs).len() == 2 && paths(&pngs).iter().all(|p| p.ends_with(".png")));

    // Plain output: score, tab, path per line.
    let out = imgsearch(&data).args(["search", "a photo of a cat", "-k", "2"]).output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.lines().count(), 2);
    assert!(text.lines().all(|l| l.split('\t').next().unwrap().parse::<f32>().is_ok()));

    let bad = imgsearch(&data).args(["search", "after:someday"]).output().unwrap();
    assert_eq!(bad.status.code(), Some(1));
    for min_score in ["--min-score=5", "--min-score=NaN", "--min-score=-1.5"] {
        let out = imgsearch(&data).args(["search", "cat", min_score]).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{min_score}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("from -1 to 1"), "{min_score}");
    }
    assert!(String::from_utf8_lossy(&bad.stderr).contains("YYYY"));
}

/// A Mac writes "é" in file and folder names as "e" and a combining accent (NFD); people type
/// one letter (NFC). `name:`, `path:` and `folder:` find the file whichever form either side is in.
#[test]
fn name_path_and_folder_filters_match_accented_letters_in_either_unicode_form() {
    let tmp = tempfile::tempdir().unwrap();
    let photos = tmp.path().join("photos");
    let decomposed_folder = photos.join("E\u{301}te\u{301} a\u{300} Lyon");
    std::fs::create_dir_all(&decomposed_folder).unwrap();
    std::fs::copy(image_path("coffee.png"), decomposed_folder.join("Cafe\u{301} noir.png")).unwrap();
    std::fs::copy(image_path("astronaut.jpg"), photos.join("cafe.jpg")).unwrap();
    std::fs::copy(image_path("rocket.jpg"), photos.join("Crème brûlée.jpg")).unwrap();
    // A capital dotted I lower-cases to two characters; an accent with no composed letter, and
    // a virama, are parts of their words.
    std::fs::copy(image_path("rocket.jpg"), photos.join("İstanbul.jpg")).unwrap();
    std::fs::copy(image_path("rocket.jpg"), photos.join("x\u{304}ray.jpg")).unwrap();
    std::fs::copy(image_path("rocket.jpg"), photos.join("x.jpg")).unwrap();
    std::fs::copy(image_path("rocket.jpg"), photos.join("नमस्ते.jpg")).unwrap();
    let data = tmp.path().join("data");
    index_photos(&photos, &data, &[]);

    assert_eq!(sorted_names(&data, "name:café"), ["Cafe\u{301} noir.png"], "typed composed");
    assert_eq!(sorted_names(&data, "name:cafe\u{301}"), ["Cafe\u{301} noir.png"], "typed decomposed");
    assert_eq!(sorted_names(&data, "name:cafe"), ["cafe.jpg"], "no accent is another word");
    assert_eq!(sorted_names(&data, "name:cre\u{300}me"), ["Crème brûlée.jpg"]);
    assert_eq!(sorted_names(&data, "path:été"), ["Cafe\u{301} noir.png"]);
    assert_eq!(sorted_names(&data, "name:İstanbul"), ["İstanbul.jpg"]);
    assert_eq!(sorted_names(&data, "name:x"), ["x.jpg"]);
    assert_eq!(sorted_names(&data, "name:x\u{304}ray"), ["x\u{304}ray.jpg"]);
    assert_eq!(sorted_names(&data, "name:नमस"), Vec::<String>::new());
    assert_eq!(sorted_names(&data, "name:नमस्ते"), ["नमस्ते.jpg"]);
    let folder = format!("\"folder:{}/Été à Lyon\"", photos.display());
    assert_eq!(sorted_names(&data, &folder), ["Cafe\u{301} noir.png"]);
}

#[test]
fn reverse_search_and_more_like_this() {
    let (tmp, data) = indexed();
    // A re-encoded (not byte-identical) copy finds its original first.
    let copy = tmp.path().join("copy.png");
    image::open(image_path("astronaut.jpg")).unwrap().save(&copy).unwrap();
    let hits = json(imgsearch(&data).arg("search").arg("--image").arg(&copy).args(["-k", "2", "--json"]));
    assert!(paths(&hits)[0].ends_with("astronaut.jpg"), "{hits:#}");
    // A query beside the picture holds filters, which apply; a text there is refused.
    let pngs = json(imgsearch(&data).arg("search").arg("--image").arg(&copy).args(["type:png", "--json"]));
    assert!(!paths(&pngs).is_empty() && paths(&pngs).iter().all(|p| p.ends_with(".png")), "{pngs:#}");
    let text = imgsearch(&data).arg("search").arg("--image").arg(&copy).arg("a cat").output().unwrap();
    assert_eq!(text.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&text.stderr).contains("takes only filters"), "{text:?}");

    // similar on an indexed file leaves the file itself out.
    let indexed_file = tmp.path().join("photos/coffee.png");
    let similar = json(imgsearch(&data).arg("similar").arg(&indexed_file).args(["-k", "3", "--json"]));
    assert_eq!(paths(&similar).len(), 3);
    assert!(!paths(&similar).iter().any(|p| p.ends_with("coffee.png")));

    let missing = imgsearch(&data).args(["search", "--image", "/nonexistent.jpg"]).output().unwrap();
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("/nonexistent.jpg"));

    // A pipe is refused, not waited on; a vector file without end is not read to its end.
    let fifo = tmp.path().join("fifo.jpg");
    common::succeeds(std::process::Command::new("mkfifo").arg(&fifo));
    let queries: [&[&std::ffi::OsStr]; 4] = [
        &["search".as_ref(), "--image".as_ref(), fifo.as_os_str()],
        &["similar".as_ref(), fifo.as_os_str()],
        &["search".as_ref(), "--like".as_ref(), fifo.as_os_str(), "beach".as_ref()],
        &["search".as_ref(), "--vector".as_ref(), "/dev/zero".as_ref()],
    ];
    for query in queries {
        let out = imgsearch(&data).args(query).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{query:?}: {stderr}");
        assert!(stderr.contains("not a regular file"), "{query:?}: {stderr}");
    }
}

/// An OpenCLIP SigLIP library: `index` loads the image tower alone and `search` the text tower
/// alone (each reading only its own tensors), and every hit's score is the cosine of
/// open_clip's two embeddings, with SigLIP's probability beside it.
#[test]
fn an_openclip_siglip_library_scores_hits_as_open_clip_embeds_them() {
    let text = "A_CAT, on the BEACH!!";
    for model in ["tiny-openclip-siglip", "tiny-openclip-siglip2"] {
        assert_hits_score_as_the_reference(model, &["astronaut.jpg", "coffee.png", "chelsea_progressive.jpg"], text);
    }
}

/// A SigLIP 2 NaFlex library: square and landscape pictures (grids of their own sizes, a JPEG
/// decoded at a reduced scale among them) indexed together, searched with a text that only
/// lowercased matches the reference's tokens; every hit scores the cosine of transformers' two
/// embeddings, with its probability beside it.
#[test]
fn a_siglip2_naflex_library_scores_hits_as_siglip2_model_embeds_them() {
    let text = "café naïve résumé — ÜNÏCÖDÉ 日本語のテキスト 🐱📷";
    let pictures = ["astronaut_palette.png", "coffee.png", "chelsea_alpha.png", "camera_gray.png", "rocket.jpg"];
    for model in ["tiny-siglip2-naflex", "tiny-siglip2-naflex-p8"] {
        assert_hits_score_as_the_reference(model, &pictures, text);
    }
}

/// OpenCLIP libraries whose towers are not CLIPModel's: ResNets, EVA-CLIP's, MobileCLIP-B's and ConvNeXts (each
/// as a hub folder, and as a bare state dict as RemoteCLIP-RN50 ships), and CLIPA's
/// (average-pooled pictures, texts read padded to the context): every hit's score is the cosine
/// of open_clip's two embeddings.
#[test]
fn openclip_libraries_with_towers_of_their_own_score_hits_as_open_clip_embeds_them() {
    let text = "a photo of a cat";
    for model in [
        "tiny-openclip-rn-quickgelu",
        "tiny-openclip-rn-gelu",
        "tiny-openclip-eva02",
        "tiny-openclip-eva02-e",
        "tiny-openclip-clipa",
        "tiny-openclip-convnext",
        "tiny-openclip-convnext-mlp",
        "tiny-openclip-mobileclip-b",
    ] {
        // Lossless pictures: `index` reads large JPEGs at a reduced scale (as Pillow's draft
        // does), which a tower of 60 to 96 pixels tells from the full decode the reference had.
        let pictures = ["astronaut_palette.png", "coffee.png", "chelsea_alpha.png", "camera_gray.png"];
        assert_hits_score_as_the_reference(model, &pictures, text);
    }
}

/// An M-CLIP library (its image tower its CLIP's, named after `#`): a German query's hits score
/// the cosine of multilingual-clip's text embedding with that CLIP's picture embeddings.
#[test]
fn an_mclip_library_scores_hits_as_multilingual_clip_and_its_clip_embed_them() {
    let (model, text) = ("tiny-mclip", "ein Foto von einer Katze am Strand, über den Dächern");
    assert_hits_score_as_the_reference(model, &["astronaut_palette.png", "coffee.png", "chelsea_alpha.png"], text);
}

/// Indexes `pictures` with the fixture checkpoint `model` and searches `text`: every hit's score
/// is the cosine of the reference's two embeddings, and where the reference has SigLIP's
/// probabilities, the hit's `prob` is the reference model's.
fn assert_hits_score_as_the_reference(model: &str, pictures: &[&str], text: &str) {
    let reference = common::reference(model);
    for (name, hit) in search_a_fixture_library(model, pictures, text) {
        let cosine = common::cosine(&reference.text_embeds[text], &reference.image_embeds[&name]);
        let score = hit["score"].as_f64().unwrap() as f32;
        // The picture is decoded and resized here, by PIL there: embeddings at cosine 0.9999
        // move a cosine with another unit vector by up to sqrt(2 * 1e-4) = 0.014.
        assert!((score - cosine).abs() < 0.015, "{model}: {name} scored {score}, the reference's cosine {cosine}");
        if let Some(probs) = reference.probs.get(text) {
            let prob = hit["prob"].as_f64().unwrap_or_else(|| panic!("{model}: {name} has no prob: {hit}")) as f32;
            // sigmoid(cosine * exp(scale) + bias) moves by exp(scale) p (1 - p) per unit of
            // cosine, and the fixtures' exp(scale) is under 14.
            let expected = probs[&name];
            let slack = 0.015 * 14.0 * expected * (1.0 - expected) + 1e-6;
            assert!((prob - expected).abs() <= slack, "{model}: {name} p {prob} vs {expected}");
        }
    }
}

/// Indexes `pictures` (fixture photos) with the fixture checkpoint `model` and searches `text`:
/// each hit by its file name. Every picture must be a hit.
fn search_a_fixture_library(model: &str, pictures: &[&str], text: &str) -> Vec<(String, Value)> {
    let tmp = tempfile::tempdir().unwrap();
    let photos = tmp.path().join("photos");
    std::fs::create_dir_all(&photos).unwrap();
    for name in pictures {
        std::fs::copy(image_path(name), photos.join(name)).unwrap();
    }
    let data = tmp.path().join("data");
    json(imgsearch(&data).arg("index").arg(&photos).arg("--model").arg(common::model_arg(model)).arg("--json"));
    let hits = json(imgsearch(&data).args(["search", text, "--json"]));
    let hits = hits.as_array().unwrap();
    assert_eq!(hits.len(), pictures.len(), "{model}: {hits:?}");
    hits.iter()
        .map(|hit| (hit["path"].as_str().unwrap().rsplit('/').next().unwrap().to_string(), hit.clone()))
        .collect()
}

#[test]
fn search_before_indexing_says_what_to_do() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    // A library that is not there is not made by reading it: no data folder, no tables in the
    // database.
    for command in [&["search", "cat"][..], &["stats"], &["list"], &["export", "x.parquet"]] {
        let out = imgsearch(&data).args(command).output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{command:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("index PATH"), "{command:?}");
    }
    match common::on_postgres() {
        true => {
            let mut client = postgres::Client::connect(&common::database_for(&data), postgres::NoTls).unwrap();
            let tables: i64 = client
                .query_one(
                    "SELECT count(*) FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema')",
                    &[],
                )
                .unwrap()
                .get(0);
            assert_eq!(tables, 0, "reading a library made tables");
        }
        false => assert!(!data.exists(), "reading a library made a data folder"),
    }
}

#[test]
fn optimize_drops_tombstones_and_keeps_results() {
    let (tmp, data) = indexed();
    std::fs::remove_file(tmp.path().join("photos/coffee.png")).unwrap();
    index_photos(&tmp.path().join("photos"), &data, &[]);
    let before = json(imgsearch(&data).args(["stats", "--json"]));
    // The embedded graph keeps a deleted picture's node until optimized; PostgreSQL's index
    // drops it on the spot.
    assert_eq!(before["vectors_tombstoned"], if common::on_postgres() { 0 } else { 1 });
    let out = imgsearch(&data).arg("optimize").output().unwrap();
    assert!(out.status.success());
    let after = json(imgsearch(&data).args(["stats", "--json"]));
    assert_eq!((after["vectors_live"].as_u64(), after["vectors_tombstoned"].as_u64()), (Some(4), Some(0)));
    assert_eq!(json(imgsearch(&data).args(["search", "a photo", "-k", "10", "--json"])).as_array().unwrap().len(), 4);
}

/// sled never shrinks its files: after most pictures are gone, `optimize` copies the catalog's
/// live records into a new one, and the library goes on as before (its searches, its ids).
#[test]
fn optimize_gives_back_the_catalog_space_of_removed_pictures() {
    if common::on_postgres() {
        return; // PostgreSQL's VACUUM gives its space back itself.
    }
    let tmp = tempfile::tempdir().unwrap();
    let photos = tmp.path().join("photos");
    std::fs::create_dir_all(&photos).unwrap();
    let pictures = common::noise_photos(&photos, 1500);
    let data = tmp.path().join("data");
    index_photos(&photos, &data, &[]);
    let kept: Vec<_> = pictures.iter().step_by(100).collect();
    for picture in &pictures {
        if !kept.contains(&picture) {
            std::fs::remove_file(picture).unwrap();
        }
    }
    index_photos(&photos, &data, &[]);
    let catalog_size =
        || common::hub::files_under(&data.join("catalog")).iter().map(|f| f.metadata().unwrap().len()).sum::<u64>();
    let before = catalog_size();
    let searched = json(imgsearch(&data).args(["search", "a photo", "-k", "100", "--json"]));
    let out = imgsearch(&data).arg("optimize").output().unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && said.contains("catalog compacted"), "{said}");
    assert!(catalog_size() * 3 < before, "{} bytes, was {before}", catalog_size());
    let entries: Vec<String> =
        std::fs::read_dir(&data).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    assert!(!entries.iter().any(|name| name.starts_with("catalog.")), "left beside the catalog: {entries:?}");
    assert_eq!(json(imgsearch(&data).args(["search", "a photo", "-k", "100", "--json"])), searched);
    // New pictures get ids of their own, not those of pictures the copy holds.
    common::noise_photos(&photos.join("new"), 3);
    index_photos(&photos, &data, &[]);
    let listed = json(imgsearch(&data).args(["list", "--json"]));
    let mut ids: Vec<u64> = listed.as_array().unwrap().iter().map(|p| p["id"].as_u64().unwrap()).collect();
    assert_eq!(ids.len(), kept.len() + 3);
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), kept.len() + 3, "{listed:#}");
    // Compact already: nothing to copy.
    let out = imgsearch(&data).arg("optimize").output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("already compact"));
}

/// `bench`'s report, and the settings it shows: the kernel path (`IMGSEARCH_ISA`,
/// `IMGSEARCH_AMX`) and the threads (`IMGSEARCH_THREADS`, `--threads`).
#[test]
fn bench_reports_images_per_second_per_batch_the_query_latency_and_its_threads() {
    let report = json(
        Command::new(env!("CARGO_BIN_EXE_imgsearch"))
            .args(["--device", "cpu", "bench", "--model"])
            .arg(model_dir("tiny-clip-p14-gelu"))
            .args(["--batches", "1,4", "--iterations", "2", "--query", "a photo of a cat", "--query-runs", "3"]),
    );
    let rows = report["results"].as_array().unwrap();
    assert_eq!(rows.iter().map(|r| r["batch"].as_u64().unwrap()).collect::<Vec<_>>(), vec![1, 4]);
    assert!(rows.iter().all(|r| r["images_per_s"].as_f64().unwrap() > 0.0));
    // The query as the text tower runs it: start + 5 words + end.
    assert_eq!(report["query"]["tokens"], 7, "{report:#}");
    assert!(report["query"]["ms_median"].as_f64().unwrap() > 0.0, "{report:#}");
    // Which kernels ran: this machine's best, or the path IMGSEARCH_ISA forced.
    assert_eq!(report["cpu_kernels"], imgsearch::model::kernels::isa().name(), "{report:#}");
    // On how many threads: one per CPU unless told.
    assert_eq!(report["threads"], imgsearch::cpu_threads(), "{report:#}");
    let forced = json(
        Command::new(env!("CARGO_BIN_EXE_imgsearch"))
            .env("IMGSEARCH_ISA", "Portable")
            .env("IMGSEARCH_THREADS", "3")
            .args(["--device", "cpu", "bench", "--model"])
            .arg(model_dir("tiny-clip-p14-gelu"))
            .args(["--batches", "1", "--iterations", "1"]),
    );
    assert_eq!(forced["cpu_kernels"], "portable", "IMGSEARCH_ISA in any case: {forced:#}");
    assert_eq!(forced["threads"], 3, "IMGSEARCH_THREADS sets the threads: {forced:#}");
    assert!(forced["query"].is_null(), "no query asked for, none timed: {forced:#}");
    // IMGSEARCH_AMX: `off` turns AMX off (on a CPU without it, nothing changes); a value it does
    // not know leaves the best path and says so.
    let bench_with_amx = |value: &str| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_imgsearch"));
        command.env("IMGSEARCH_AMX", value).args(["--device", "cpu", "bench", "--model"]);
        command.arg(model_dir("tiny-clip-p14-gelu")).args(["--batches", "1", "--iterations", "1"]);
        command
    };
    let off = json(&mut bench_with_amx("Off"));
    assert_ne!(off["cpu_kernels"], "amx", "{off:#}");
    let unknown = bench_with_amx("maybe").output().unwrap();
    let stderr = String::from_utf8_lossy(&unknown.stderr);
    assert!(stderr.contains("IMGSEARCH_AMX=\"maybe\" ignored"), "{stderr}");
    let unknown: Value = serde_json::from_slice(&unknown.stdout).unwrap();
    assert_eq!(unknown["cpu_kernels"], imgsearch::model::kernels::isa().name(), "{unknown:#}");
    let one = json(
        Command::new(env!("CARGO_BIN_EXE_imgsearch"))
            .args(["--device", "cpu", "--threads", "1", "bench", "--model"])
            .arg(model_dir("tiny-clip-p14-gelu"))
            .args(["--batches", "2", "--iterations", "1"]),
    );
    assert_eq!(one["threads"], 1, "{one:#}");
    let none = Command::new(env!("CARGO_BIN_EXE_imgsearch")).args(["--threads", "0", "bench"]).output().unwrap();
    assert!(!none.status.success());
    assert!(String::from_utf8_lossy(&none.stderr).contains("--threads"), "{}", String::from_utf8_lossy(&none.stderr));
}

fn write_npy(path: &Path, values: &[f32]) {
    let data: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(path, common::npy::npy_bytes("<f4", &[1, values.len()], &data)).unwrap();
}

#[test]
fn search_by_vector_from_json_or_npy_matches_the_text_search_without_loading_a_model() {
    let (tmp, data) = indexed();
    let embed = imgsearch(&data)
        .args(["embed", "--json", "--text", "a photo of a rocket", "--model"])
        .arg(model_dir("tiny-clip-b32-quickgelu"))
        .output()
        .unwrap();
    // A library whose model is not on this machine (its folder removed after indexing).
    let model_copy = tmp.path().join("model");
    std::fs::create_dir_all(&model_copy).unwrap();
    for file in std::fs::read_dir(model_dir("tiny-clip-b32-quickgelu")).unwrap() {
        let file = file.unwrap().path();
        std::fs::copy(&file, model_copy.join(file.file_name().unwrap())).unwrap();
    }
    let elsewhere = tmp.path().join("data-elsewhere");
    let indexed_elsewhere = imgsearch(&elsewhere)
        .arg("index")
        .arg(tmp.path().join("photos"))
        .arg("--model")
        .arg(&model_copy)
        .arg("--quiet")
        .status()
        .unwrap();
    assert!(indexed_elsewhere.success());
    std::fs::remove_dir_all(&model_copy).unwrap();
    assert!(embed.status.success());
    let embed_json = tmp.path().join("query.json");
    std::fs::write(&embed_json, &embed.stdout).unwrap();
    let by_text = json(imgsearch(&data).args(["search", "a photo of a rocket", "-k", "3", "--json"]));

    // embed's own output, a bare JSON list, and a .npy file all give the text search's hits.
    let vector: Vec<f32> = serde_json::from_slice::<Value>(&embed.stdout).unwrap()["texts"]["a photo of a rocket"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap() as f32)
        .collect();
    let list = tmp.path().join("query-list.json");
    std::fs::write(&list, serde_json::to_vec(&vector).unwrap()).unwrap();
    let npy = tmp.path().join("query.npy");
    write_npy(&npy, &vector);
    for file in [&embed_json, &list, &npy] {
        let by_vector = json(imgsearch(&elsewhere).arg("search").arg("--vector").arg(file).args(["-k", "3", "--json"]));
        assert_eq!(paths(&by_vector), paths(&by_text), "{}", file.display());
        for (a, b) in by_vector.as_array().unwrap().iter().zip(by_text.as_array().unwrap()) {
            assert!((a["score"].as_f64().unwrap() - b["score"].as_f64().unwrap()).abs() < 1e-5);
        }
    }

    // A vector of another length is refused with what the library expects.
    write_npy(&npy, &vector[1..]);
    let out = imgsearch(&data).arg("search").arg("--vector").arg(&npy).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&format!("makes embeddings of {}", vector.len())), "{stderr}");
}

/// The unit vector along `Σ weight · vector`.
fn weighted_sum(parts: &[(f64, &[f32])]) -> Vec<f32> {
    let mut sum = vec![0f64; parts[0].1.len()];
    for (weight, vector) in parts {
        for (s, v) in sum.iter_mut().zip(*vector) {
            *s += weight * f64::from(*v);
        }
    }
    let norm = sum.iter().map(|x| x * x).sum::<f64>().sqrt();
    sum.iter().map(|x| (x / norm) as f32).collect()
}

/// The composition arithmetic checked against vectors computed here from `embed`'s output: a
/// weighted text with a text to move away from, and a text with an example picture, rank and
/// score the whole library exactly as a search by the composed vector does.
#[test]
fn composed_queries_score_as_the_weighted_sum_of_their_parts() {
    let (tmp, data) = indexed();
    let coffee = tmp.path().join("photos/coffee.png");
    let embed = json(
        imgsearch(&data)
            .args(["embed", "--json", "--text", "rocket launch", "--text", "red car", "--text", "at night", "--image"])
            .arg(&coffee)
            .arg("--model")
            .arg(model_dir("tiny-clip-b32-quickgelu")),
    );
    let vector = |v: &Value| -> Vec<f32> { v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect() };
    let text = |t: &str| vector(&embed["texts"][t]);
    let picture = vector(embed["images"].as_object().unwrap().values().next().unwrap());
    let by_vector = |v: Vec<f32>| -> Value {
        let file = tmp.path().join("composed.json");
        std::fs::write(&file, serde_json::to_vec(&v).unwrap()).unwrap();
        json(imgsearch(&data).arg("search").arg("--vector").arg(&file).args(["-k", "5", "--json"]))
    };
    let same = |composed: &Value, expected: &Value| {
        assert_eq!(paths(composed), paths(expected));
        for (a, b) in composed.as_array().unwrap().iter().zip(expected.as_array().unwrap()) {
            assert!((a["score"].as_f64().unwrap() - b["score"].as_f64().unwrap()).abs() < 1e-5, "{a} {b}");
        }
    };

    let expected = by_vector(weighted_sum(&[(2.0, &text("rocket launch")), (-1.0, &text("red car"))]));
    let in_the_query = json(imgsearch(&data).args(["search", r#"2:rocket launch -"red car""#, "-k", "5", "--json"]));
    same(&in_the_query, &expected);
    let with_flags =
        json(imgsearch(&data).args(["search", "2:rocket launch", "--not", "red car", "-k", "5", "--json"]));
    same(&with_flags, &expected);
    // The negative really moved the ranking: the plain text query scores differently.
    let plain = json(imgsearch(&data).args(["search", "rocket launch", "-k", "5", "--json"]));
    assert_ne!(plain[0]["score"], in_the_query[0]["score"]);

    // "Like this picture, but at night": an indexed picture's stored embedding plus the text.
    let expected = by_vector(weighted_sum(&[(1.0, &text("at night")), (1.0, &picture)]));
    let like = json(imgsearch(&data).args(["search", "at night", "--like"]).arg(&coffee).args(["-k", "5", "--json"]));
    same(&like, &expected);

    // Parts that cancel out, or nothing to look for, are refused with what to do.
    for args in [&["search", "beach -beach"][..], &["search", "-people"][..], &["search", "2:"][..]] {
        let out = imgsearch(&data).args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("cancel") || stderr.contains("something to look for") || stderr.contains("no text after"),
            "{args:?}: {stderr}"
        );
    }
}

#[test]
fn the_files_of_one_shot_are_one_result_that_names_the_others() {
    let tmp = tempfile::tempdir().unwrap();
    let (photos, data) = (tmp.path().join("photos"), tmp.path().join("data"));
    std::fs::create_dir_all(photos.join("other")).unwrap();
    // A shot written twice, as a camera writes RAW + JPEG: the same picture, another format.
    let rocket = image::open(image_path("rocket.jpg")).unwrap();
    rocket.save(photos.join("IMG_0001.JPG")).unwrap();
    rocket.save(photos.join("IMG_0001.png")).unwrap();
    // Another picture of the same name in another folder is another shot.
    std::fs::copy(image_path("coffee.png"), photos.join("other/IMG_0001.png")).unwrap();
    std::fs::copy(image_path("astronaut.jpg"), photos.join("IMG_0002.jpg")).unwrap();
    index_photos(&photos, &data, &[]);

    let hits = json(imgsearch(&data).args(["search", "--image"]).arg(image_path("rocket.jpg")).arg("--json"));
    let hits = hits.as_array().unwrap();
    assert_eq!(hits.len(), 3, "four files, three shots: {hits:#?}");
    let names = |hit: &Value| {
        let mut files: Vec<String> = std::iter::once(&hit["path"])
            .chain(hit["also"].as_array().into_iter().flatten().map(|file| &file["path"]))
            .map(|path| path.as_str().unwrap().strip_prefix(photos.to_str().unwrap()).unwrap().to_string())
            .collect();
        files.sort();
        files
    };
    assert_eq!(names(&hits[0]), ["/IMG_0001.JPG", "/IMG_0001.png"], "{hits:#?}");
    assert!(hits[0]["also"][0]["id"].as_u64().is_some(), "{hits:#?}");
    assert!(hits[1..].iter().all(|hit| hit.get("also").is_none()), "{hits:#?}");

    // Pages count shots: three pages of one, then none.
    let mut paged = Vec::new();
    for offset in ["0", "1", "2", "3"] {
        let page = json(imgsearch(&data).args(["search", "a photo", "-k", "1", "--offset", offset, "--json"]));
        paged.extend(page.as_array().unwrap().iter().map(names));
    }
    paged.sort();
    assert_eq!(paged, [vec!["/IMG_0001.JPG", "/IMG_0001.png"], vec!["/IMG_0002.jpg"], vec!["/other/IMG_0001.png"]],);
    let by_date = json(imgsearch(&data).args(["search", "a photo", "--sort", "date", "--json"]));
    assert_eq!(by_date.as_array().unwrap().len(), 3, "sorted by date, still three shots: {by_date:#}");
    // Listings without a text fold the same way; a filter that keeps one file keeps it alone.
    assert_eq!(json(imgsearch(&data).args(["search", "name:IMG_0001", "--json"])).as_array().unwrap().len(), 2);
    let pngs = json(imgsearch(&data).args(["search", "type:png name:IMG_0001", "--json"]));
    assert!(pngs.as_array().unwrap().iter().all(|hit| hit.get("also").is_none()), "{pngs:#}");
    assert_eq!(pngs.as_array().unwrap().len(), 2, "{pngs:#}");
    // More like one file of the shot leaves out the shot, not only that file.
    let similar = json(imgsearch(&data).arg("similar").arg(photos.join("IMG_0001.png")).args(["--json"]));
    let similar: Vec<Vec<String>> = similar.as_array().unwrap().iter().map(names).collect();
    assert_eq!(similar.len(), 2, "{similar:?}");
    assert!(!similar.iter().flatten().any(|name| name.starts_with("/IMG_0001.")), "{similar:?}");
}

/// Output piped into a reader that stops early (`imgsearch list | head -1`) ends the command
/// quietly, as with other command-line tools: no panic about a broken pipe.
#[test]
fn a_reader_that_stops_early_ends_a_listing_quietly() {
    let (_tmp, data) = indexed();
    for args in [&["list"][..], &["search", "a photo", "-k", "5"], &["stats"]] {
        let mut child = imgsearch(&data)
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take()); // the reader is gone before the command writes
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked") && !stderr.contains("Broken pipe"), "{args:?}: {stderr}");
    }
}
