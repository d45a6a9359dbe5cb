//! What people wrote about their pictures — titles, descriptions, keywords and the names of the
//! people in them — read from XMP (in the file or a sidecar), IPTC and EXIF, searched with
//! `caption:` and `keyword:`, given by the API, and kept up to date when a sidecar changes or the
//! library was indexed before captions were read.

use std::path::Path;

use serde_json::Value;

use crate::common::cli::{imgsearch, json};
use crate::common::http::get;
use crate::common::server::serve;
use crate::common::{self, jpeg_with_segment, model_dir};

const MODEL: &str = "tiny-clip-b32-quickgelu";

/// An XMP packet as Lightroom writes it: a language alternative for the title ("Tram 28 in
/// Alfama"), five stars, keywords, a keyword hierarchy and a face region named Anna Silva.
const LIGHTROOM_XMP: &str = include_str!("../fixtures/captions/lightroom.xmp");

/// A sidecar as darktable writes one: keywords as an attribute-free bag.
fn darktable_sidecar(keywords: &[&str]) -> String {
    let items: String = keywords.iter().map(|k| format!("<rdf:li>{k}</rdf:li>")).collect();
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<x:xmpmeta xmlns:x="adobe:ns:meta/" x:xmptk="XMP Core 4.4.0-Exiv2">
 <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
  <rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:darktable="http://darktable.sf.net/">
   <dc:subject><rdf:Bag>{items}</rdf:Bag></dc:subject>
   <dc:description><rdf:Alt><rdf:li xml:lang="x-default">Morning coffee on the terrace</rdf:li></rdf:Alt></dc:description>
  </rdf:Description>
 </rdf:RDF>
</x:xmpmeta>"#
    )
}

/// Photoshop's image resources with an IPTC-IIM block: UTF-8 declared, an object name, a caption
/// and two keywords.
fn photoshop_iptc() -> Vec<u8> {
    let dataset = |record: u8, number: u8, value: &str| {
        let mut bytes = vec![0x1C, record, number];
        bytes.extend(u16::try_from(value.len()).unwrap().to_be_bytes());
        bytes.extend(value.as_bytes());
        bytes
    };
    let iim = [
        dataset(1, 90, "\x1b%G"),
        dataset(2, 5, "Liftoff"),
        dataset(2, 120, "Launch day at the Cape"),
        dataset(2, 25, "rocket"),
        dataset(2, 25, "Flórida"),
    ]
    .concat();
    let mut block = b"Photoshop 3.0\0".to_vec();
    block.extend(b"8BIM\x04\x04\0\0");
    block.extend(u32::try_from(iim.len()).unwrap().to_be_bytes());
    block.extend(&iim);
    block
}

/// A PNG with an XMP packet in an iTXt chunk after its header (what GIMP and exiftool write).
fn png_with_xmp(source: &str, xmp: &str, dest: &Path) {
    let png = std::fs::read(common::image_path(source)).unwrap();
    let data = [b"XML:com.adobe.xmp\0\0\0\0\0".as_slice(), xmp.as_bytes()].concat();
    let out = common::png_with_chunk_after_header(&png, &common::png_chunk(b"iTXt", &data));
    std::fs::write(dest, out).unwrap();
}

/// A JPEG with what Windows Explorer writes (title and keywords in UCS-2, three stars), and the
/// description an Olympus camera puts into every picture.
fn windows_jpeg(source: &str, dest: &Path) {
    let ucs2 = |text: &str| exif::Value::Byte(text.encode_utf16().chain([0]).flat_map(u16::to_le_bytes).collect());
    let field = |tag, value| exif::Field { tag, ifd_num: exif::In::PRIMARY, value };
    let fields = [
        field(exif::Tag::ImageDescription, exif::Value::Ascii(vec![b"OLYMPUS DIGITAL CAMERA".to_vec()])),
        field(exif::Tag(exif::Context::Tiff, 0x9C9B), ucs2("Ski trip")),
        field(exif::Tag(exif::Context::Tiff, 0x9C9E), ucs2("holiday;snow")),
        field(exif::Tag(exif::Context::Tiff, 0x4746), exif::Value::Short(vec![3])),
    ];
    common::jpeg_with_exif_fields(source, &fields, dest);
}

/// A folder of pictures with captions from each source, and one without any.
fn captioned_library(photos: &Path) {
    std::fs::create_dir_all(photos.join("raw")).unwrap();
    let xmp_segment = [b"http://ns.adobe.com/xap/1.0/\0".as_slice(), LIGHTROOM_XMP.as_bytes()].concat();
    jpeg_with_segment("astronaut.jpg", 0xE1, &xmp_segment, &photos.join("tram.jpg"));
    jpeg_with_segment("rocket.jpg", 0xED, &photoshop_iptc(), &photos.join("launch.jpg"));
    windows_jpeg("chelsea_progressive.jpg", &photos.join("ski.jpg"));
    png_with_xmp("astronaut_palette.png", &darktable_sidecar(&["palette"]), &photos.join("palette.png"));
    // A sidecar named after the whole file name (darktable's way).
    std::fs::copy(common::image_path("coffee.png"), photos.join("raw/coffee.png")).unwrap();
    std::fs::write(photos.join("raw/coffee.png.xmp"), darktable_sidecar(&["espresso", "terrace"])).unwrap();
    std::fs::copy(common::image_path("camera_gray.jpg"), photos.join("plain.jpg")).unwrap();
}

fn index(data: &Path, photos: &Path) -> Value {
    json(imgsearch(data).arg("index").arg(photos).args(["--json", "--model"]).arg(model_dir(MODEL)))
}

fn found(data: &Path, query: &str) -> Vec<String> {
    let hits = json(imgsearch(data).args(["search", query, "--json", "-k", "50"]));
    let name =
        |hit: &Value| Path::new(hit["path"].as_str().unwrap()).file_name().unwrap().to_string_lossy().into_owned();
    let mut names: Vec<String> = hits.as_array().unwrap().iter().map(name).collect();
    names.sort();
    names
}

#[test]
fn captions_keywords_and_names_from_xmp_iptc_exif_and_sidecars_are_searched_and_served() {
    let tmp = tempfile::tempdir().unwrap();
    let (photos, data) = (tmp.path().join("photos"), tmp.path().join("data"));
    captioned_library(&photos);
    let summary = index(&data, &photos);
    assert_eq!((summary["indexed"].as_u64(), summary["skipped"].as_u64()), (Some(6), Some(0)), "{summary:#}");

    // XMP in a JPEG: the title, the description, keywords, every level of a hierarchy, a face.
    assert_eq!(found(&data, "keyword:anna"), ["tram.jpg"]);
    assert_eq!(found(&data, "\"keyword:anna silva\""), ["tram.jpg"]);
    assert_eq!(found(&data, "keyword:portugal"), ["tram.jpg"]);
    assert_eq!(found(&data, "keyword:tram"), ["tram.jpg"]);
    assert_eq!(found(&data, "caption:birthday"), ["tram.jpg"]);
    assert_eq!(found(&data, "caption:alfama"), ["tram.jpg"], "the title is part of the caption");
    // IPTC in Photoshop's block, UTF-8 declared.
    assert_eq!(found(&data, "caption:launch"), ["launch.jpg"]);
    assert_eq!(found(&data, "keyword:flórida"), ["launch.jpg"]);
    // What Windows writes; a camera's own description is not a caption.
    assert_eq!(found(&data, "keyword:snow"), ["ski.jpg"]);
    assert_eq!(found(&data, "caption:ski"), ["ski.jpg"]);
    assert!(found(&data, "caption:olympus").is_empty());
    // XMP in a PNG's text chunk, and a sidecar beside a picture.
    assert_eq!(found(&data, "keyword:palette"), ["palette.png"]);
    assert_eq!(found(&data, "keyword:espresso"), ["coffee.png"]);
    assert_eq!(found(&data, "caption:terrace"), ["coffee.png", "palette.png"]);
    // Filters combine with each other and with the rest of the query language.
    assert_eq!(found(&data, "keyword:terrace caption:coffee type:png"), ["coffee.png"]);
    assert!(found(&data, "keyword:anna type:png").is_empty());
    // Stars: XMP's and Windows'; rating:N is N or more.
    assert_eq!(found(&data, "rating:4"), ["tram.jpg"]);
    assert_eq!(found(&data, "rating:3"), ["ski.jpg", "tram.jpg"]);
    let refused = imgsearch(&data).args(["search", "rating:6"]).output().unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("rating:1 to rating:5"), "{refused:?}");

    // A hit carries its title; the API gives all of it.
    let hits = json(imgsearch(&data).args(["search", "astronaut in space", "--json", "-k", "10"]));
    let tram = hits.as_array().unwrap().iter().find(|h| h["path"].as_str().unwrap().ends_with("tram.jpg")).unwrap();
    assert_eq!(tram["title"], "Tram 28 in Alfama");
    assert_eq!(tram["rating"], 5);
    let plain = hits.as_array().unwrap().iter().find(|h| h["path"].as_str().unwrap().ends_with("plain.jpg")).unwrap();
    assert!(plain.get("title").is_none(), "no title, no field: {plain:#}");
    let server = serve(&data, &[]);
    let info = get(&server.addr, &format!("/api/images/{}", tram["id"])).json();
    assert_eq!(info["title"], "Tram 28 in Alfama");
    assert_eq!(info["description"], "Grandma's birthday outing & cake");
    assert_eq!(info["rating"], 5);
    assert_eq!(info["keywords"], serde_json::json!(["tram", "family", "Lisbon", "Places", "Portugal", "Anna Silva"]));
    let understood = get(&server.addr, "/api/search?q=keyword:anna%20rating:4").json();
    assert_eq!(understood["understood"]["filters"], serde_json::json!(["keyword:anna", "rating:4"]), "{understood:#}");
    let refused = get(&server.addr, "/api/search?q=rating:0");
    assert_eq!(refused.status, 400, "{}", refused.json());
}

#[test]
fn a_new_changed_or_deleted_sidecar_updates_its_pictures_without_embedding_them_again() {
    let tmp = tempfile::tempdir().unwrap();
    let (photos, data) = (tmp.path().join("photos"), tmp.path().join("data"));
    std::fs::create_dir_all(&photos).unwrap();
    // A RAW workflow's pair: one sidecar named after the shot describes both files.
    std::fs::copy(common::image_path("coffee.png"), photos.join("IMG_1.png")).unwrap();
    std::fs::copy(common::image_path("rocket.jpg"), photos.join("IMG_1.jpg")).unwrap();
    std::fs::copy(common::image_path("astronaut.jpg"), photos.join("IMG_2.jpg")).unwrap();
    let first = index(&data, &photos);
    assert_eq!(first["indexed"], 3, "{first:#}");
    assert!(found(&data, "keyword:espresso").is_empty());

    // Lightroom writes a sidecar for the shot; the files themselves do not change.
    std::fs::write(photos.join("IMG_1.xmp"), darktable_sidecar(&["espresso"])).unwrap();
    let second = index(&data, &photos);
    assert_eq!(
        (second["indexed"].as_u64(), second["reused"].as_u64(), second["unchanged"].as_u64()),
        (Some(0), Some(0), Some(3)),
        "read again (the keyword below), not embedded again, and not moved or copied: {second:#}"
    );
    // Both files of the shot are one result (the stack), found by the sidecar's keyword.
    let hits = json(imgsearch(&data).args(["search", "keyword:espresso", "--json"]));
    let hits = hits.as_array().unwrap();
    assert_eq!(hits.len(), 1, "{hits:#?}");
    assert_eq!(hits[0]["also"].as_array().map(Vec::len), Some(1), "{hits:#?}");

    // A keyword changed in it.
    std::thread::sleep(std::time::Duration::from_millis(20));
    std::fs::write(photos.join("IMG_1.xmp"), darktable_sidecar(&["ristretto"])).unwrap();
    let third = index(&data, &photos);
    assert_eq!((third["indexed"].as_u64(), third["unchanged"].as_u64()), (Some(0), Some(3)), "{third:#}");
    assert!(found(&data, "keyword:espresso").is_empty());
    assert_eq!(found(&data, "keyword:ristretto").len(), 1);

    // Nothing changed: nothing is read.
    let fourth = index(&data, &photos);
    assert_eq!((fourth["reused"].as_u64(), fourth["unchanged"].as_u64()), (Some(0), Some(3)), "{fourth:#}");

    // The sidecar deleted: what it said goes with it.
    std::fs::remove_file(photos.join("IMG_1.xmp")).unwrap();
    let fifth = index(&data, &photos);
    assert_eq!((fifth["indexed"].as_u64(), fifth["unchanged"].as_u64()), (Some(0), Some(3)), "{fifth:#}");
    assert!(found(&data, "keyword:ristretto").is_empty());
    let sixth = index(&data, &photos);
    assert_eq!(sixth["unchanged"], 3, "{sixth:#}");
}

#[test]
fn pictures_indexed_before_captions_were_read_are_read_again_keeping_their_embeddings() {
    use imgsearch::store::{Change, Location};
    let tmp = tempfile::tempdir().unwrap();
    let (photos, data) = (tmp.path().join("photos"), tmp.path().join("data"));
    captioned_library(&photos);
    index(&data, &photos);
    let location = || {
        let store = common::on_postgres().then(|| common::database_for(&data));
        Location::new(data.clone(), store, None).unwrap()
    };
    // The records as an imgsearch before captions wrote them: no captions, facts version 0.
    let before: Vec<_> = {
        let mut library = imgsearch::store::open(&location()).unwrap();
        let records: Vec<_> = library.images().map(Result::unwrap).collect();
        let old: Vec<Change> = records
            .iter()
            .map(|record| {
                let mut old = record.clone();
                (old.facts.title, old.facts.description, old.facts.keywords) = (None, None, Vec::new());
                old.facts_version = 0;
                Change::Upsert(old)
            })
            .collect();
        library.apply(&old).unwrap();
        library.close().unwrap();
        records
    };
    assert!(found(&data, "keyword:anna").is_empty(), "the captions are gone");

    let summary = index(&data, &photos);
    assert_eq!(
        (summary["indexed"].as_u64(), summary["reused"].as_u64(), summary["unchanged"].as_u64()),
        (Some(0), Some(0), Some(6)),
        "every picture read again (the keywords below), none embedded again: {summary:#}"
    );
    assert_eq!(found(&data, "keyword:anna"), ["tram.jpg"]);
    assert_eq!(found(&data, "keyword:espresso"), ["coffee.png"]);
    let library = imgsearch::store::open(&location()).unwrap();
    for record in &before {
        let now = library.image_at(&imgsearch::store::catalog::stored_bytes(&record.path)).unwrap().unwrap();
        assert_eq!(now.facts, record.facts, "{}", record.path.display());
        let embedding = library.image_with_hash(&record.hash).unwrap().unwrap().embedding;
        assert_eq!(embedding, record.embedding, "{}: the same embedding", record.path.display());
    }
    library.close().unwrap();
    let again = index(&data, &photos);
    assert_eq!(again["unchanged"], 6, "read once: {again:#}");
}

#[test]
fn a_text_query_ranks_pictures_described_with_its_words_above_their_visual_match() {
    let tmp = tempfile::tempdir().unwrap();
    let (photos, data) = (tmp.path().join("photos"), tmp.path().join("data"));
    captioned_library(&photos);
    common::noise_photos(&photos.join("noise"), 6);
    index(&data, &photos);
    let search = |query: &str, extra: &[&str]| -> Vec<Value> {
        let hits = json(imgsearch(&data).args(["search", query, "--json", "-k", "20"]).args(extra));
        hits.as_array().unwrap().clone()
    };
    let name =
        |hit: &Value| Path::new(hit["path"].as_str().unwrap()).file_name().unwrap().to_string_lossy().into_owned();
    let scores_descend = |hits: &[Value]| {
        let scores: Vec<f64> = hits.iter().map(|h| h["score"].as_f64().unwrap()).collect();
        scores.windows(2).all(|pair| pair[0] >= pair[1])
    };

    // A name CLIP knows nothing of: the picture of Anna (a face region's name) comes first.
    let hits = search("anna", &[]);
    assert_eq!(hits.len(), 12, "every picture is still a result");
    assert_eq!(name(&hits[0]), "tram.jpg", "{hits:#?}");
    assert_eq!(hits[0]["described"], serde_json::json!(["anna"]));
    assert!(hits[1..].iter().all(|h| h.get("described").is_none()), "{hits:#?}");
    assert!(scores_descend(&hits[1..]), "the others keep their order: {hits:#?}");
    // Its score is still its cosine similarity to the query.
    let alone = search("anna keyword:anna", &[]);
    assert_eq!(alone[0]["score"], hits[0]["score"]);
    // A composed query looks for the words of the texts it looks for, not of those it moves away from.
    let composed = search("2:anna -tram", &[]);
    assert_eq!((name(&composed[0]), &composed[0]["described"]), ("tram.jpg".to_string(), &serde_json::json!(["anna"])));

    // Function words are not looked for; each word that describes something counts.
    let hits = search("a photo of the launch of a rocket", &[]);
    assert_eq!(name(&hits[0]), "launch.jpg", "{hits:#?}");
    assert_eq!(hits[0]["described"], serde_json::json!(["launch", "rocket"]));
    let hits = search("terrace", &[]);
    let described: Vec<String> = hits.iter().filter(|h| h.get("described").is_some()).map(name).collect();
    assert_eq!(described.len(), 2, "{hits:#?}");
    assert!(hits[..2].iter().all(|h| h["described"] == serde_json::json!(["terrace"])), "{hits:#?}");

    // A threshold above every cosine keeps the described picture only; a filter still filters.
    let hits = search("anna", &["--min-score", "0.99"]);
    assert_eq!(hits.iter().map(name).collect::<Vec<_>>(), ["tram.jpg"]);
    assert!(search("anna type:png", &[]).iter().all(|h| h.get("described").is_none()));

    // Words nothing is described with leave the ranking to the pictures alone.
    let hits = search("zebra crossing", &[]);
    assert!(hits.iter().all(|h| h.get("described").is_none()) && scores_descend(&hits), "{hits:#?}");
}

/// The keywords of a library with their counts (`imgsearch keywords`, `GET /api/keywords`), the
/// most frequent first; spellings that differ only in case are one keyword, under the spelling
/// most pictures have, as `keyword:` finds them.
#[test]
fn keywords_and_people_are_listed_with_their_counts() {
    let tmp = tempfile::tempdir().unwrap();
    let (photos, data) = (tmp.path().join("photos"), tmp.path().join("data"));
    std::fs::create_dir_all(&photos).unwrap();
    let keywords_of: [(&str, &[&str]); 4] = [
        ("a.png", &["Beach", "Anna Silva"]),
        ("b.png", &["beach", "Anna Silva"]),
        ("c.png", &["beach", "dunes"]),
        ("d.png", &[]),
    ];
    for (name, keywords) in keywords_of {
        std::fs::copy(common::image_path("coffee.png"), photos.join(name)).unwrap();
        std::fs::write(photos.join(format!("{name}.xmp")), darktable_sidecar(keywords)).unwrap();
    }
    let listed = |data: &Path| json(imgsearch(data).args(["keywords", "--json"]));
    let (empty, nothing) = (tmp.path().join("empty"), tmp.path().join("nothing-here"));
    std::fs::create_dir_all(&nothing).unwrap();
    index(&empty, &nothing);
    assert_eq!(listed(&empty), serde_json::json!({"keywords": []}));
    let plain = imgsearch(&empty).arg("keywords").output().unwrap();
    assert!(String::from_utf8_lossy(&plain.stdout).contains("no picture has keywords"), "{plain:?}");

    index(&data, &photos);
    let expected = serde_json::json!({"keywords": [
        {"keyword": "beach", "count": 3},
        {"keyword": "Anna Silva", "count": 2},
        {"keyword": "dunes", "count": 1},
    ]});
    assert_eq!(listed(&data), expected);
    let text = imgsearch(&data).arg("keywords").output().unwrap();
    assert_eq!(String::from_utf8_lossy(&text.stdout), "3\tbeach\n2\tAnna Silva\n1\tdunes\n");
    assert_eq!(found(&data, "keyword:beach"), ["a.png", "b.png", "c.png"], "the count is what the filter finds");
    let server = serve(&data, &[]);
    assert_eq!(get(&server.addr, "/api/keywords").json(), expected);
}

#[test]
fn the_web_ui_shows_captions_and_searches_a_keyword_chip() {
    let tmp = tempfile::tempdir().unwrap();
    let (photos, data) = (tmp.path().join("photos"), tmp.path().join("data"));
    captioned_library(&photos);
    index(&data, &photos);
    let server = serve(&data, &[]);
    let tram = std::fs::canonicalize(photos.join("tram.jpg")).unwrap();
    let base = format!("http://{}", server.addr);
    common::browser_script("captions.mjs", &[&base, "anna", tram.to_str().unwrap(), "Tram 28 in Alfama", "Anna Silva"]);
}

#[test]
fn an_export_carries_captions_keywords_and_stars_to_another_library() {
    let tmp = tempfile::tempdir().unwrap();
    let (photos, data, copy) = (tmp.path().join("photos"), tmp.path().join("data"), tmp.path().join("copy"));
    captioned_library(&photos);
    index(&data, &photos);
    let file = tmp.path().join("library.parquet");
    common::cli::run(imgsearch(&data).arg("export").arg(&file).arg("--quiet"));
    common::cli::run(imgsearch(&copy).arg("import").arg(&file).args(["--quiet", "--model"]).arg(model_dir(MODEL)));
    for query in ["keyword:anna", "caption:launch", "keyword:espresso", "rating:3"] {
        assert_eq!(found(&copy, query), found(&data, query), "{query}");
    }
    let hits = json(imgsearch(&copy).args(["search", "keyword:anna", "--json"]));
    assert_eq!((hits[0]["title"].as_str(), hits[0]["rating"].as_i64()), (Some("Tram 28 in Alfama"), Some(5)));
}

#[test]
fn google_takeout_json_gives_description_people_date_and_place() {
    let tmp = tempfile::tempdir().unwrap();
    let (takeout, data) = (tmp.path().join("Takeout/Google Photos/Photos from 2023"), tmp.path().join("data"));
    std::fs::create_dir_all(&takeout).unwrap();
    let google_json = |description: &str, people: &[&str], taken: i64, place: (f64, f64)| {
        let people: Vec<Value> = people.iter().map(|name| serde_json::json!({ "name": name })).collect();
        serde_json::json!({
            "title": "ignored: the file's name", "description": description,
            "creationTime": { "timestamp": "1700000000" }, "photoTakenTime": { "timestamp": taken.to_string() },
            "geoData": { "latitude": place.0, "longitude": place.1, "altitude": 0.0 }, "people": people,
        })
        .to_string()
    };
    let add = |fixture: &str, name: &str, json_name: &str, json: String| {
        std::fs::copy(common::image_path(fixture), takeout.join(name)).unwrap();
        std::fs::write(takeout.join(json_name), json).unwrap();
    };
    // 2023-07-15 12:00 UTC, in Lisbon; the newer name of the JSON.
    add(
        "rocket.jpg",
        "IMG_1.jpg",
        "IMG_1.jpg.supplemental-metadata.json",
        google_json("Launch party", &["Anna Silva"], 1_689_422_400, (38.7223, -9.1393)),
    );
    // A long name: its JSON's is cut to 51 characters; 0, 0 is no place.
    add(
        "astronaut.jpg",
        "PXL_20230518_175342346.MP.jpg",
        "PXL_20230518_175342346.MP.jpg.supplemental-met.json",
        google_json("Space museum", &[], 1_684_432_422, (0.0, 0.0)),
    );
    // The second picture of that name in the download, with the older name of the JSON.
    add(
        "coffee_cmyk.jpg",
        "IMG_2(1).jpg",
        "IMG_2.jpg(1).json",
        google_json("Second cup", &[], 1_600_000_000, (0.0, 0.0)),
    );
    // Any other JSON beside a picture says nothing.
    add("camera_gray.jpg", "IMG_3.jpg", "IMG_3.jpg.json", r#"{"description": "not Google's"}"#.to_string());

    let summary = index(&data, &takeout);
    assert_eq!((summary["indexed"].as_u64(), summary["skipped"].as_u64()), (Some(4), Some(0)), "{summary:#}");
    assert_eq!(found(&data, "caption:launch"), ["IMG_1.jpg"]);
    assert_eq!(found(&data, "keyword:anna"), ["IMG_1.jpg"]);
    assert_eq!(found(&data, "near:lisbon"), ["IMG_1.jpg"]);
    assert_eq!(found(&data, "after:2023-07-15 before:2023-07-16"), ["IMG_1.jpg"]);
    assert_eq!(found(&data, "caption:museum"), ["PXL_20230518_175342346.MP.jpg"]);
    assert_eq!(found(&data, "after:2023-05-18 before:2023-05-19"), ["PXL_20230518_175342346.MP.jpg"]);
    assert_eq!(found(&data, "caption:cup"), ["IMG_2(1).jpg"]);
    assert!(found(&data, "caption:google").is_empty());
}

/// Pictures with many long keywords (as a batch-tagging tool writes them) leave the results in
/// view on a phone: the header keeps to half the screen, the keyword chips to one row.
#[test]
fn the_web_ui_keeps_the_results_in_view_whatever_the_keywords() {
    let tmp = tempfile::tempdir().unwrap();
    let (photos, data) = (tmp.path().join("photos"), tmp.path().join("data"));
    std::fs::create_dir_all(&photos).unwrap();
    let long: Vec<String> = (0..15).map(|i| format!("keyword {i} {}", "very long words ".repeat(12))).collect();
    let long: Vec<&str> = long.iter().map(|k| k.trim()).collect();
    for name in ["a.png", "b.png", "c.png"] {
        std::fs::copy(common::image_path("coffee.png"), photos.join(name)).unwrap();
        std::fs::write(photos.join(format!("{name}.xmp")), darktable_sidecar(&long)).unwrap();
    }
    index(&data, &photos);
    let server = serve(&data, &[]);
    common::browser_script("header.mjs", &[&format!("http://{}", server.addr), long[0]]);
}
