//! The web UI in a real headless Chromium (Debian's `chromium`, driven by playwright-core from
//! tests/browser/; scripts/test.sh installs both): type a query and see result tiles, the address
//! follows the search, upload a picture (a HEIC) and see its original first, open a result (a
//! TIFF, shown through its preview), similar images, the photos taken near one; the files of one
//! shot as one tile; and signing in and out.

use crate::common;

use crate::common::server::index_and_serve;
use crate::common::{image_path, jpeg_with_gps};

#[test]
fn the_web_ui_searches_by_text_and_by_uploaded_picture() {
    let tmp = tempfile::tempdir().unwrap();
    let photos = tmp.path().join("photos");
    std::fs::create_dir_all(&photos).unwrap();
    for name in ["coffee.png", "camera_gray.png"] {
        std::fs::copy(image_path(name), photos.join(name)).unwrap();
    }
    // Two photos 180 m apart at the Eiffel Tower; the others have no position.
    jpeg_with_gps("astronaut.jpg", (48.8584, 2.2945), &photos.join("astronaut.jpg"));
    jpeg_with_gps("chelsea_progressive.jpg", (48.8600, 2.2950), &photos.join("chelsea_progressive.jpg"));
    // A TIFF, which Chromium cannot show: the viewer must show its preview.
    image::open(image_path("rocket.jpg")).unwrap().save(photos.join("rocket.tif")).unwrap();
    let server = index_and_serve(&photos, &tmp.path().join("data"), &[]);
    // Upload an iPhone's HEIC of an indexed photo (recompressed: not byte-identical).
    let copy = tmp.path().join("IMG_0001.HEIC");
    std::fs::copy(image_path("heif/iphone.heic"), &copy).unwrap();
    common::browser_script(
        "ui.mjs",
        &[
            &format!("http://{}", server.addr),
            copy.to_str().unwrap(),
            "rocket.tif",
            "astronaut.jpg",
            "Paris, France",
            "astronaut.jpg,chelsea_progressive.jpg",
        ],
    );
}

#[test]
fn the_web_ui_signs_in_searches_and_signs_out() {
    let (_tmp, data) = common::server::indexed_fixtures(&["astronaut.jpg", "coffee.png"]);
    common::server::add_user(&data, "dana", "dana's long password");
    let server = common::server::serve(&data, &[]);
    common::browser_script("signin.mjs", &[&format!("http://{}", server.addr), "dana", "dana's long password"]);
}

#[test]
fn the_web_ui_shows_the_files_of_one_shot_as_one_tile_that_links_the_others() {
    let tmp = tempfile::tempdir().unwrap();
    let photos = tmp.path().join("photos");
    std::fs::create_dir_all(&photos).unwrap();
    let rocket = image::open(image_path("rocket.jpg")).unwrap();
    rocket.save(photos.join("IMG_0001.jpg")).unwrap();
    rocket.save(photos.join("IMG_0001.png")).unwrap();
    std::fs::copy(image_path("astronaut.jpg"), photos.join("IMG_0002.jpg")).unwrap();
    let server = index_and_serve(&photos, &tmp.path().join("data"), &[]);
    // The tile shows whichever of the two files the listing gives first; the other marks it.
    let first = common::http::get(&server.addr, "/api/search?q=name:IMG_0001").json();
    let shown = first["hits"][0]["path"].as_str().unwrap().to_string();
    let other = if shown.ends_with(".jpg") { "PNG" } else { "JPG" };
    common::browser_script("stacks.mjs", &[&format!("http://{}", server.addr), "name:IMG", "IMG_0001", other]);
}

#[test]
fn the_web_ui_plays_a_found_video_from_its_moment() {
    let tmp = tempfile::tempdir().unwrap();
    let videos = tmp.path().join("videos");
    std::fs::create_dir_all(&videos).unwrap();
    // VP9 in WebM: what every Chromium build plays (H.264 needs a build with its codec).
    std::fs::copy(common::fixtures().join("videos/scenes.webm"), videos.join("scenes.webm")).unwrap();
    let server = index_and_serve(&videos, &tmp.path().join("data"), &[]);
    common::browser_script("video.mjs", &[&format!("http://{}", server.addr), "type:webm"]);
}

#[test]
fn the_web_ui_shows_the_frame_of_a_video_the_browser_cannot_play() {
    let tmp = tempfile::tempdir().unwrap();
    let videos = tmp.path().join("videos");
    std::fs::create_dir_all(&videos).unwrap();
    // MPEG-1 in an MPEG program stream: ffmpeg reads it, no browser plays it.
    let mpeg1 = ["-c:v", "mpeg1video", "-r", "25", "-q:v", "4"];
    let scenes = common::fixtures().join("videos/scenes.mp4");
    common::succeeds(common::ffmpeg().arg("-i").arg(scenes).args(mpeg1).arg(videos.join("old camera.mpg")));
    let server = index_and_serve(&videos, &tmp.path().join("data"), &[]);
    common::browser_script("video.mjs", &[&format!("http://{}", server.addr), "type:mpg", "unplayable"]);
}
