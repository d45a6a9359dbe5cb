//! Videos as moments: a frame every two seconds embedded like a picture, so that a picture (or a
//! text) finds the moment inside a video; the video's date, place and camera from its container;
//! moments of a video that changed or went away removed; damaged videos reported; without ffmpeg,
//! videos reported with what to do and indexed by the first run after it is there; over HTTP, a
//! moment's thumbnail is its frame and the video is served with byte ranges for the player.
//!
//! The fixtures (`tests/fixtures/videos/`, from `scripts/make_video_fixtures.sh`) show three
//! pictures of `tests/fixtures/images/` for two seconds each; the reference frames they are
//! compared with are ffmpeg's own decode at a time inside each scene.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::common::cli::{imgsearch, json};
use crate::common::{self, ffmpeg, model_dir, succeeds};

const MODEL: &str = "tiny-clip-b32-quickgelu";

/// The scenes of every fixture video: the picture shown, and from when (seconds).
const SCENES: [(&str, f64); 3] = [("astronaut.jpg", 0.0), ("coffee.png", 2.0), ("rocket.jpg", 4.0)];

fn video_fixture(name: &str) -> PathBuf {
    common::fixtures().join("videos").join(name)
}

/// ffmpeg's decode of the frame `seconds` into `video`, upright, as a PNG in `folder`.
fn reference_frame(video: &Path, seconds: f64, folder: &Path) -> PathBuf {
    let name = format!("{}-{seconds}.png", video.file_name().unwrap().to_string_lossy());
    let png = folder.join(name);
    succeeds(ffmpeg().args(["-ss", &seconds.to_string(), "-i"]).arg(video).args(["-frames:v", "1"]).arg(&png));
    png
}

fn index(data: &Path, folder: &Path, ffmpeg: Option<&Path>) -> Value {
    let mut command = imgsearch(data);
    command.arg("index").arg(folder).args(["--json", "--model"]).arg(model_dir(MODEL));
    if let Some(program) = ffmpeg {
        command.env("IMGSEARCH_FFMPEG", program);
    }
    json(&mut command)
}

fn search_by_picture(data: &Path, picture: &Path) -> Vec<Value> {
    let hits = json(imgsearch(data).args(["search", "--json", "-k", "5", "--image"]).arg(picture));
    hits.as_array().unwrap().clone()
}

fn file_name(hit: &Value) -> String {
    Path::new(hit["path"].as_str().unwrap()).file_name().unwrap().to_string_lossy().into_owned()
}

/// Pictures and moments in the library.
fn records(data: &Path) -> u64 {
    json(imgsearch(data).args(["stats", "--json"]))["images"].as_u64().unwrap()
}

#[test]
fn each_scene_of_a_video_is_found_by_its_frame_at_its_moment_with_the_videos_date_place_and_camera() {
    let tmp = tempfile::tempdir().unwrap();
    let (videos, data, frames) = (tmp.path().join("videos"), tmp.path().join("data"), tmp.path().join("frames"));
    std::fs::create_dir_all(&frames).unwrap();
    std::fs::create_dir_all(videos.join("portrait")).unwrap();
    std::fs::copy(video_fixture("scenes.mp4"), videos.join("scenes.mp4")).unwrap();
    // Filmed sideways with a rotation in the container: its frames are turned upright.
    std::fs::copy(video_fixture("upright.mov"), videos.join("portrait/upright.mov")).unwrap();
    std::fs::write(videos.join("notes.txt"), "not a video").unwrap();

    let summary = index(&data, &videos, None);
    assert_eq!((summary["indexed"].as_u64(), summary["skipped"].as_u64()), (Some(2), Some(0)), "{summary:#}");
    assert_eq!(summary["video_moments"], 6, "a moment every 2 s of each 6 s video: {summary:#}");

    for video in ["scenes.mp4", "upright.mov"] {
        for (picture, from) in SCENES {
            // A frame from the middle of the scene, decoded by ffmpeg itself.
            let frame = reference_frame(&video_fixture(video), from + 1.0, &frames);
            let hits = search_by_picture(&data, &frame);
            // Both videos show the scene; each is one result, at the scene's moment.
            let top = hits.iter().find(|hit| file_name(hit) == video).unwrap_or_else(|| panic!("{hits:#?}"));
            assert!(hits[..2].contains(top), "{picture} in {video}: {hits:#?}");
            assert_eq!(top["at_seconds"].as_f64(), Some(from), "{picture} in {video}: {top:#}");
            // The same frame (the moment is the scene's key frame, scaled by ffmpeg): the
            // embedding is the reference decode's.
            let score = top["score"].as_f64().unwrap();
            assert!(score > 0.99, "{picture} in {video}: cosine {score}");
            assert_eq!((top["width"].as_u64(), top["height"].as_u64()), (Some(320), Some(240)), "upright: {top:#}");
            // One result per video: its other moments are folded into it.
            assert_eq!(hits.iter().filter(|hit| file_name(hit) == video).count(), 1, "{hits:#?}");
            assert_eq!(top["also"].as_array().unwrap().len(), 2, "{top:#}");
        }
    }

    // What the phone wrote into the container: date, place, camera.
    let found = |query: &str| {
        let hits = json(imgsearch(&data).args(["search", query, "--json"]));
        hits.as_array().unwrap().iter().map(file_name).collect::<Vec<_>>()
    };
    assert_eq!(found("camera:apple"), ["scenes.mp4"]);
    assert_eq!(found("near:lisbon"), ["scenes.mp4"]);
    assert_eq!(found("after:2024-07-01 before:2024-08-01"), ["scenes.mp4"]);
    assert_eq!(found("type:mov"), ["upright.mov"]);

    // The text output names the moment.
    let frame = reference_frame(&video_fixture("scenes.mp4"), 5.0, &frames);
    let out = common::cli::run(imgsearch(&data).args(["search", "-k", "5", "--image"]).arg(&frame));
    let lines = String::from_utf8(out.stdout).unwrap();
    let line = lines.lines().find(|line| line.contains("scenes.mp4")).unwrap_or_else(|| panic!("{lines}"));
    assert!(line.contains("scenes.mp4 @0:04\t@0:0"), "{line:?}");

    // Unchanged videos are not decoded again.
    let again = index(&data, &videos, None);
    assert_eq!((again["unchanged"].as_u64(), again["video_moments"].as_u64()), (Some(2), Some(0)), "{again:#}");
}

#[test]
fn a_changed_or_deleted_video_leaves_no_moment_of_its_old_self() {
    let tmp = tempfile::tempdir().unwrap();
    let (videos, data, frames) = (tmp.path().join("videos"), tmp.path().join("data"), tmp.path().join("frames"));
    std::fs::create_dir_all(&frames).unwrap();
    std::fs::create_dir_all(&videos).unwrap();
    let video = videos.join("clip.mp4");
    std::fs::copy(video_fixture("scenes.mp4"), &video).unwrap();
    std::fs::copy(common::image_path("coffee.png"), videos.join("coffee.png")).unwrap();
    index(&data, &videos, None);
    assert_eq!(records(&data), 4, "a picture and three moments");

    // Cut to its first two seconds: the moments at 2 s and 4 s are gone with the scenes.
    succeeds(ffmpeg().arg("-i").arg(video_fixture("scenes.mp4")).args(["-t", "2", "-c", "copy"]).arg(&video));
    let summary = index(&data, &videos, None);
    assert_eq!((summary["indexed"].as_u64(), summary["removed"].as_u64()), (Some(1), Some(0)), "{summary:#}");
    let moments = summary["video_moments"].as_u64().unwrap();
    assert!((1..=2).contains(&moments), "{summary:#}");
    assert_eq!(records(&data), 1 + moments, "a picture and the moments of the video as it is now");
    let rocket = reference_frame(&video_fixture("scenes.mp4"), 5.0, &frames);
    let hits = search_by_picture(&data, &rocket);
    assert!(hits.iter().all(|hit| hit["at_seconds"].as_f64().unwrap_or(0.0) < 4.0), "{hits:#?}");

    std::fs::remove_file(&video).unwrap();
    let summary = index(&data, &videos, None);
    assert_eq!(summary["removed"], 1, "one file, however many moments: {summary:#}");
    assert_eq!(records(&data), 1);
}

#[test]
fn damaged_videos_are_reported_and_the_rest_is_indexed() {
    let tmp = tempfile::tempdir().unwrap();
    let (videos, data) = (tmp.path().join("videos"), tmp.path().join("data"));
    std::fs::create_dir_all(&videos).unwrap();
    let whole = std::fs::read(video_fixture("scenes.mp4")).unwrap();
    std::fs::write(videos.join("cut.mp4"), &whole[..whole.len() / 2]).unwrap();
    // Its index at the front (as phones and web videos have it): ffmpeg reads the first half and
    // ends without failing, but the video is not the 6 s it declares.
    let streamable = tmp.path().join("streamable.mp4");
    succeeds(
        ffmpeg()
            .arg("-i")
            .arg(video_fixture("scenes.mp4"))
            .args(["-c", "copy", "-movflags", "+faststart"])
            .arg(&streamable),
    );
    let streamable = std::fs::read(&streamable).unwrap();
    std::fs::write(videos.join("cut-streamable.mp4"), &streamable[..streamable.len() / 2]).unwrap();
    std::fs::write(videos.join("garbage.mov"), b"\x00\x00\x00\x18ftypqt  this is not a movie at all").unwrap();
    std::fs::write(videos.join("empty.webm"), b"").unwrap();
    std::fs::copy(video_fixture("scenes.webm"), videos.join("fine.webm")).unwrap();

    let summary = index(&data, &videos, None);
    assert_eq!(summary["indexed"], 1, "{summary:#}");
    let mut reported: Vec<&str> = summary["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| Path::new(e["path"].as_str().unwrap()).file_name().unwrap().to_str().unwrap())
        .collect();
    reported.sort();
    assert_eq!(reported, ["cut-streamable.mp4", "cut.mp4", "empty.webm", "garbage.mov"], "{summary:#}");
    // No moment of a video that failed half-way stays behind.
    assert_eq!(records(&data), 3, "the three moments of fine.webm");
}

#[test]
fn without_ffmpeg_videos_are_reported_with_what_to_do_and_indexed_once_it_is_there() {
    let tmp = tempfile::tempdir().unwrap();
    let (videos, data) = (tmp.path().join("videos"), tmp.path().join("data"));
    std::fs::create_dir_all(&videos).unwrap();
    std::fs::copy(video_fixture("scenes.mp4"), videos.join("scenes.mp4")).unwrap();
    std::fs::copy(common::image_path("rocket.jpg"), videos.join("rocket.jpg")).unwrap();
    let missing = tmp.path().join("no/ffmpeg");

    let summary = index(&data, &videos, Some(&missing));
    assert_eq!(summary["indexed"], 1, "only the picture: {summary:#}");
    let reason = summary["errors"][0]["reason"].as_str().unwrap();
    assert!(reason.contains("install ffmpeg") && reason.contains("IMGSEARCH_FFMPEG"), "{reason}");
    let stats = json(imgsearch(&data).args(["stats", "--json"]).env("IMGSEARCH_FFMPEG", &missing));
    assert!(stats["video_decoder"].is_null(), "{stats:#}");

    let again = index(&data, &videos, None);
    assert_eq!((again["indexed"].as_u64(), again["video_moments"].as_u64()), (Some(1), Some(3)), "{again:#}");
    let stats = json(imgsearch(&data).args(["stats", "--json"]));
    assert!(stats["video_decoder"].as_str().unwrap().starts_with("ffmpeg "), "{stats:#}");
}

#[test]
fn the_server_shows_a_moment_as_its_frame_and_serves_the_video_in_byte_ranges() {
    let tmp = tempfile::tempdir().unwrap();
    let videos = tmp.path().join("videos");
    std::fs::create_dir_all(&videos).unwrap();
    std::fs::copy(video_fixture("scenes.mp4"), videos.join("scenes.mp4")).unwrap();
    let server = common::server::index_and_serve(&videos, &tmp.path().join("data"), &[]);
    let hits = common::http::get(&server.addr, "/api/search?q=type:mp4&k=10").json();
    let hit = &hits["hits"][0];
    let moments: Vec<(u64, f64)> = std::iter::once(hit)
        .chain(hit["also"].as_array().unwrap())
        .map(|m| (m["id"].as_u64().unwrap(), m["at_seconds"].as_f64().unwrap()))
        .collect();
    assert_eq!(moments.len(), 3, "{hits:#}");

    // Each moment's thumbnail is the frame of its scene.
    for (id, seconds) in moments {
        let response = common::http::get(&server.addr, &format!("/api/images/{id}/thumbnail"));
        assert_eq!(response.status, 200, "{}", String::from_utf8_lossy(&response.body));
        let thumbnail = image::load_from_memory(&response.body).unwrap().to_rgb8();
        assert_eq!(thumbnail.dimensions(), (320, 240));
        let scene = SCENES.iter().find(|(_, from)| *from == seconds).unwrap().0;
        let frame = image::open(reference_frame(&video_fixture("scenes.mp4"), seconds + 0.5, tmp.path())).unwrap();
        let difference = mean_difference(&thumbnail, &frame.to_rgb8());
        assert!(difference < 6.0, "{scene} at {seconds} s: mean difference {difference}");
        let info = common::http::get(&server.addr, &format!("/api/images/{id}")).json();
        assert_eq!(
            (info["at_seconds"].as_f64(), info["path"].as_str().map(|p| p.ends_with("/scenes.mp4"))),
            (Some(seconds), Some(true))
        );
    }

    // The video itself, whole and in ranges (a player seeks with them).
    let whole = std::fs::read(video_fixture("scenes.mp4")).unwrap();
    let id = hit["id"].as_u64().unwrap();
    let file = |range: Option<&str>| {
        let headers: Vec<(&str, &str)> = range.map(|r| ("Range", r)).into_iter().collect();
        common::http::request_with_headers(&server.addr, "GET", &format!("/api/images/{id}/file"), &headers, b"")
    };
    let response = file(None);
    assert_eq!((response.status, response.body == whole), (200, true));
    assert_eq!(response.header("content-type").as_deref(), Some("video/mp4"));
    assert_eq!(response.header("accept-ranges").as_deref(), Some("bytes"));
    let size = whole.len();
    for (range, first, last) in [
        ("bytes=100-199", 100, 199),
        ("bytes=-10", size - 10, size - 1),
        ("bytes=1000-", 1000, size - 1),
        // An end past the file (past u64, even) is the file's end (RFC 9110).
        ("bytes=0-99999999999999999999", 0, size - 1),
    ] {
        let response = file(Some(range));
        assert_eq!(response.status, 206, "{range}");
        assert_eq!(response.body, whole[first..=last], "{range}");
        assert_eq!(response.header("content-range"), Some(format!("bytes {first}-{last}/{size}")), "{range}");
    }
    let response = file(Some(&format!("bytes={size}-")));
    assert_eq!(response.status, 416);
    assert_eq!(response.json()["error"]["code"], "bad_range");
    assert_eq!(response.header("content-range"), Some(format!("bytes */{size}")));
    assert_eq!(file(Some("bytes=5-2")).status, 416);
    // Several ranges at once are answered with the whole file, which RFC 9110 allows.
    assert_eq!(file(Some("bytes=0-1,5-6")).status, 200);
}

fn mean_difference(a: &image::RgbImage, b: &image::RgbImage) -> f64 {
    assert_eq!(a.dimensions(), b.dimensions());
    let sum: u64 = a.as_raw().iter().zip(b.as_raw()).map(|(x, y)| x.abs_diff(*y) as u64).sum();
    sum as f64 / a.as_raw().len() as f64
}

#[test]
fn a_copied_video_is_one_exact_duplicate_and_its_moments_are_not_duplicates() {
    let tmp = tempfile::tempdir().unwrap();
    let (videos, data) = (tmp.path().join("videos"), tmp.path().join("data"));
    std::fs::create_dir_all(videos.join("backup")).unwrap();
    std::fs::copy(video_fixture("scenes.mp4"), videos.join("scenes.mp4")).unwrap();
    std::fs::copy(video_fixture("scenes.mp4"), videos.join("backup/scenes.mp4")).unwrap();
    // The same scenes re-encoded: alike moment for moment, yet a video is a duplicate only as an
    // exact copy of its file (the copy's moments are not three more exact duplicates either).
    std::fs::copy(video_fixture("scenes.webm"), videos.join("scenes.webm")).unwrap();
    index(&data, &videos, None);

    let found = json(imgsearch(&data).args(["duplicates", "--json"]));
    let groups = found["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 1, "{groups:#?}");
    assert_eq!(groups[0]["kind"], "exact");
    let mut paths: Vec<&str> = groups[0]["paths"].as_array().unwrap().iter().map(|p| p.as_str().unwrap()).collect();
    paths.sort();
    assert!(
        paths.len() == 2 && paths[0].ends_with("backup/scenes.mp4") && paths[1].ends_with("videos/scenes.mp4"),
        "{paths:?}"
    );
}

#[test]
fn kill_9_while_a_video_is_indexed_then_rerun_gives_the_moments_of_a_clean_run() {
    let tmp = tempfile::tempdir().unwrap();
    let (videos, data, clean) = (tmp.path().join("videos"), tmp.path().join("data"), tmp.path().join("clean"));
    std::fs::create_dir_all(&videos).unwrap();
    // Two minutes of changing noise, a key frame a second: 60 moments, none alike.
    let noise = "testsrc2=size=96x64:rate=10,noise=alls=40:allf=t";
    succeeds(
        ffmpeg()
            .args(["-f", "lavfi", "-i", noise, "-t", "120", "-c:v", "libx264", "-g", "10", "-pix_fmt", "yuv420p"])
            .arg(videos.join("long.mp4")),
    );
    std::fs::copy(video_fixture("scenes.webm"), videos.join("short.webm")).unwrap();
    for delay_ms in [150u64, 400, 700, 1000] {
        let mut child = imgsearch(&data)
            .arg("index")
            .arg(&videos)
            .arg("--model")
            .arg(model_dir(MODEL))
            .args(["--quiet", "--batch-size", "4"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
    }
    let resumed = index(&data, &videos, None);
    assert_eq!(resumed["skipped"], 0, "{resumed:#}");
    let expected = index(&clean, &videos, None)["video_moments"].as_u64().unwrap();
    assert!(expected >= 60, "{expected}");
    let stats = json(imgsearch(&data).args(["stats", "--json"]));
    for count in ["images", "vectors_live", "text_documents"] {
        assert_eq!(stats[count].as_u64(), Some(expected), "{count}, against a clean run's moments: {stats:#}");
    }
}

#[test]
fn a_video_whose_container_declares_no_length_is_read_to_its_end() {
    let tmp = tempfile::tempdir().unwrap();
    let (videos, data) = (tmp.path().join("videos"), tmp.path().join("data"));
    std::fs::create_dir_all(&videos).unwrap();
    // Written to a pipe, as a browser's MediaRecorder writes WebM: no duration, no index.
    let recording = std::fs::File::create(videos.join("recording.webm")).unwrap();
    let vp9 = ["-c:v", "libvpx-vp9", "-deadline", "realtime", "-g", "10", "-f", "webm", "pipe:1"];
    succeeds(ffmpeg().arg("-i").arg(video_fixture("scenes.mp4")).args(vp9).stdout(recording));
    let summary = index(&data, &videos, None);
    assert_eq!((summary["indexed"].as_u64(), summary["video_moments"].as_u64()), (Some(1), Some(3)), "{summary:#}");
}
