//! `imgsearch duplicates` and `GET /api/duplicates` on planted cases: an exact copy, a copy
//! re-encoded at quality 60 and half the size (a near duplicate of its original, which is the
//! copy to keep), and two different shots of one scene taken a second apart (a burst, never a
//! duplicate, however alike); and the web UI's view of them in headless Chromium.

use crate::common;

use std::path::Path;
use std::process::Command;

use crate::common::http::get;
use crate::common::server::{index_photos, serve};
use crate::common::{image_path, jpeg_with_exif};
use serde_json::Value;

fn planted(photos: &Path) {
    std::fs::create_dir_all(photos).unwrap();
    std::fs::copy(image_path("astronaut.jpg"), photos.join("astronaut.jpg")).unwrap();
    let small =
        image::open(image_path("astronaut.jpg")).unwrap().resize(256, 256, image::imageops::FilterType::Triangle);
    let mut jpeg = std::fs::File::create(photos.join("astronaut_small.jpg")).unwrap();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 60).encode_image(&small).unwrap();
    std::fs::copy(image_path("coffee.png"), photos.join("coffee.png")).unwrap();
    std::fs::copy(image_path("coffee.png"), photos.join("coffee copy.png")).unwrap();
    // The burst: the scene, then the same scene shifted a little, one second later.
    let shifted = photos.join("shifted.jpg");
    let cat = image::open(image_path("chelsea_progressive.jpg")).unwrap();
    let (w, h) = (cat.width(), cat.height());
    cat.crop_imm(8, 4, w - 12, h - 12).save(&shifted).unwrap();
    jpeg_with_exif(
        "chelsea_progressive.jpg",
        &[(exif::Tag::DateTimeOriginal, "2024:05:01 10:00:00")],
        &photos.join("burst_1.jpg"),
    );
    jpeg_with_exif(
        shifted.to_str().unwrap(),
        &[(exif::Tag::DateTimeOriginal, "2024:05:01 10:00:01")],
        &photos.join("burst_2.jpg"),
    );
    std::fs::remove_file(shifted).unwrap();
    std::fs::copy(image_path("rocket.jpg"), photos.join("rocket.jpg")).unwrap();
}

/// A library of the planted pictures (in a temporary folder, returned with it).
fn planted_library() -> (tempfile::TempDir, std::path::PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let photos = tmp.path().join("photos");
    planted(&photos);
    let data = tmp.path().join("data");
    index_photos(&photos, &data, &[]);
    (tmp, data)
}

fn names(group: &Value, key: &str) -> Vec<String> {
    let mut names: Vec<String> = group[key]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| Path::new(p.as_str().unwrap()).file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn groups_by_kind(json: &Value) -> Vec<(String, Vec<String>, String)> {
    json["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            let best = g["ids"].as_array().unwrap().iter().position(|id| *id == g["best"]).unwrap();
            let best =
                Path::new(g["paths"][best].as_str().unwrap()).file_name().unwrap().to_string_lossy().into_owned();
            (g["kind"].as_str().unwrap().to_string(), names(g, "paths"), best)
        })
        .collect()
}

fn duplicates(data: &Path, extra: &[&str]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_imgsearch"))
        .args(common::library_args(data))
        .args(["duplicates", "--json"])
        .args(extra)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn exact_copies_near_duplicates_and_bursts_are_told_apart() {
    let (_tmp, data) = planted_library();

    let got = groups_by_kind(&duplicates(&data, &[]));
    let kinds_and_names: Vec<(&str, Vec<&str>)> =
        got.iter().map(|(kind, names, _)| (kind.as_str(), names.iter().map(String::as_str).collect())).collect();
    assert_eq!(
        kinds_and_names,
        [
            ("exact", vec!["coffee copy.png", "coffee.png"]),
            ("near", vec!["astronaut.jpg", "astronaut_small.jpg"]),
            ("burst", vec!["burst_1.jpg", "burst_2.jpg"]),
        ]
    );
    // The copy to keep: the larger original over its small re-encode; the bigger file of the
    // burst (the uncropped shot); for two equal files, one of them.
    assert!(got[0].1.contains(&got[0].2));
    assert_eq!(got[1].2, "astronaut.jpg");
    assert_eq!(got[2].2, "burst_1.jpg");

    // Shots a second apart are never duplicates: without the burst window they are nothing.
    let got = groups_by_kind(&duplicates(&data, &["--burst-seconds", "0"]));
    assert!(
        got.iter().all(|(kind, names, _)| kind != "burst" && !names.contains(&"burst_1.jpg".to_string())),
        "{got:?}"
    );

    // The API answers the same groups, and refuses a bad threshold with a JSON 400.
    let server = serve(&data, &[]);
    let api = get(&server.addr, "/api/duplicates").json();
    assert_eq!(api["groups"].as_array().unwrap().len(), 3, "{api}");
    let bad = get(&server.addr, "/api/duplicates?near=2");
    assert_eq!(bad.status, 400);
    assert_eq!(bad.json()["error"]["code"], "bad_threshold");
}

#[test]
fn the_duplicates_view_lists_the_re_encode_and_keeps_the_burst_apart() {
    let (_tmp, data) = planted_library();
    let server = serve(&data, &[]);
    common::browser_script("duplicates.mjs", &[&format!("http://{}", server.addr)]);
}
