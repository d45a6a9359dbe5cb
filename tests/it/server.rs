//! The REST API over real HTTP on 127.0.0.1: searches, reverse search of an altered copy,
//! filters, files and thumbnails, and every kind of bad request answered with a JSON 4xx.

use crate::common;

use std::io::Cursor;
use std::path::Path;
use std::process::Command;

use crate::common::http::{get, multipart, request, request_with_headers};
use crate::common::server::{index_and_serve, index_photos, serve, RunningServer};
use crate::common::{image_path, jpeg_with_gps};
use image::{ImageFormat, RgbImage};

/// Five distinct photos (no near-duplicates among them).
fn photo_tree(dir: &Path) {
    std::fs::create_dir_all(dir.join("trips/2023 rome")).unwrap();
    std::fs::copy(image_path("astronaut.jpg"), dir.join("astronaut.jpg")).unwrap();
    std::fs::copy(image_path("rocket.jpg"), dir.join("trips/2023 rome/rocket.jpg")).unwrap();
    std::fs::copy(image_path("coffee.png"), dir.join("coffee.png")).unwrap();
    std::fs::copy(image_path("chelsea_progressive.jpg"), dir.join("trips/cat.jpg")).unwrap();
    std::fs::copy(image_path("camera_gray.png"), dir.join("camera.png")).unwrap();
}

fn start(extra: &[&str]) -> (tempfile::TempDir, RunningServer) {
    let tmp = tempfile::tempdir().unwrap();
    photo_tree(&tmp.path().join("photos"));
    let server = index_and_serve(&tmp.path().join("photos"), &tmp.path().join("data"), extra);
    (tmp, server)
}

fn hit_paths(json: &serde_json::Value) -> Vec<String> {
    json["hits"].as_array().unwrap().iter().map(|h| h["path"].as_str().unwrap().to_string()).collect()
}

#[test]
fn text_search_returns_scored_hits_with_thumbnails_that_load() {
    let (_tmp, server) = start(&[]);
    let response = get(&server.addr, "/api/search?q=a%20photo%20of%20a%20cat&k=3");
    assert_eq!(response.status, 200);
    let json = response.json();
    let hits = json["hits"].as_array().unwrap();
    assert_eq!(hits.len(), 3);
    assert!(json["took_ms"].as_f64().is_some());
    let scores: Vec<f64> = hits.iter().map(|h| h["score"].as_f64().unwrap()).collect();
    assert!(scores.windows(2).all(|w| w[0] >= w[1]), "sorted by score: {scores:?}");
    let thumb = get(&server.addr, hits[0]["thumbnail"].as_str().unwrap());
    assert_eq!(thumb.status, 200);
    assert_eq!(thumb.header("content-type").as_deref(), Some("image/jpeg"));
    let decoded = image::load_from_memory(&thumb.body).unwrap();
    assert!(decoded.width().max(decoded.height()) <= 320);
    // Kept privately and checked on each use: an unchanged picture is not sent again.
    assert_eq!(thumb.header("cache-control").as_deref(), Some("private, no-cache"));
    let etag = thumb.header("etag").expect("an ETag");
    let url = hits[0]["thumbnail"].as_str().unwrap();
    let again = request_with_headers(&server.addr, "GET", url, &[("If-None-Match", &etag)], b"");
    assert_eq!((again.status, again.body.len()), (304, 0));
    let other = request_with_headers(&server.addr, "GET", url, &[("If-None-Match", "\"another\"")], b"");
    assert_eq!(other.status, 200);

    // Paging: offset 1 continues where k=1 stopped.
    let first = hit_paths(&get(&server.addr, "/api/search?q=a%20photo%20of%20a%20cat&k=1").json());
    let second = hit_paths(&get(&server.addr, "/api/search?q=a%20photo%20of%20a%20cat&k=1&offset=1").json());
    assert_eq!([first, second].concat(), hit_paths(&json)[..2].to_vec());

    // min_score cuts the tail.
    let cut =
        get(&server.addr, &format!("/api/search?q=a%20photo%20of%20a%20cat&k=5&min_score={}", scores[0] - 1e-4)).json();
    assert_eq!(cut["hits"].as_array().unwrap().len(), 1);
}

#[test]
fn an_altered_copy_of_an_indexed_photo_finds_the_original_first() {
    let (tmp, server) = start(&[]);
    // Slightly cropped, resized to 80 %, recompressed harder: a "found on the web" copy.
    let original = image::open(image_path("astronaut.jpg")).unwrap().to_rgb8();
    let (w, h) = original.dimensions();
    let cropped = image::imageops::crop_imm(&original, w / 20, h / 20, w - w / 10, h - h / 10).to_image();
    let small = image::imageops::resize(
        &cropped,
        cropped.width() * 4 / 5,
        cropped.height() * 4 / 5,
        image::imageops::FilterType::Triangle,
    );
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(Cursor::new(&mut jpeg), 60).encode_image(&small).unwrap();

    let (content_type, body) = multipart("image", "copy.jpg", &jpeg);
    let response = request(&server.addr, "POST", "/api/search/image?k=3", Some(&content_type), &body);
    assert_eq!(response.status, 200, "{}", String::from_utf8_lossy(&response.body));
    let paths = hit_paths(&response.json());
    assert!(paths[0].ends_with("astronaut.jpg"), "top hit should be the original: {paths:?}");

    // The raw body works too, and an exact copy comes first with score 1.
    let exact = std::fs::read(tmp.path().join("photos/trips/cat.jpg")).unwrap();
    let response = request(&server.addr, "POST", "/api/search/image?k=2", Some("image/jpeg"), &exact);
    let json = response.json();
    assert!(hit_paths(&json)[0].ends_with("trips/cat.jpg"));
    assert!((json["hits"][0]["score"].as_f64().unwrap() - 1.0).abs() < 1e-6);
}

#[test]
fn filters_restrict_results_and_filter_only_queries_list_pictures() {
    let (_tmp, server) = start(&[]);
    let pngs = hit_paths(&get(&server.addr, "/api/search?q=type:png&k=10").json());
    assert_eq!(pngs.len(), 2, "{pngs:?}");
    assert!(pngs.iter().all(|p| p.ends_with(".png")));
    let rome = hit_paths(&get(&server.addr, "/api/search?q=a%20photo%20path:rome&k=10").json());
    assert_eq!(rome.len(), 1);
    assert!(rome[0].ends_with("rocket.jpg"));
    let folder = hit_paths(&get(&server.addr, "/api/search?q=cat%20name:cat&k=10").json());
    assert_eq!(folder.len(), 1);
    let none = hit_paths(&get(&server.addr, "/api/search?q=cat%20camera:leica&k=10").json());
    assert!(none.is_empty());
    // Every local path lies below the root folder.
    let everything = get(&server.addr, "/api/stats").json()["images"].as_u64().unwrap();
    assert_eq!(hit_paths(&get(&server.addr, "/api/search?q=folder:/&k=100").json()).len() as u64, everything);
    // Texts in the query count towards the most a composed query may embed.
    let many: String = (0..65).map(|i| format!("-w{i}%20")).collect();
    let response = get(&server.addr, &format!("/api/search?q=cat%20{many}"));
    assert_eq!((response.status, response.json()["error"]["code"].clone()), (400, "bad_query".into()));
}

/// A picture's details name the city it was taken in (the largest that reaches it, as `near:`
/// does) or near; a position far from any city, or none, names none.
#[test]
fn a_pictures_details_name_the_city_it_was_taken_in() {
    let tmp = tempfile::tempdir().unwrap();
    let photos = tmp.path().join("photos");
    std::fs::create_dir_all(&photos).unwrap();
    // Belém, 6.5 km from Lisbon's centre (and 2 km from Algés, a smaller town).
    jpeg_with_gps("rocket.jpg", (38.6916, -9.2160), &photos.join("belem.jpg"));
    jpeg_with_gps("astronaut.jpg", (30.0, -40.0), &photos.join("atlantic.jpg"));
    std::fs::copy(image_path("coffee.png"), photos.join("coffee.png")).unwrap();
    let server = index_and_serve(&photos, &tmp.path().join("data"), &[]);
    for (name, place) in [("belem", Some("Lisbon, Portugal")), ("atlantic", None), ("coffee", None)] {
        let hit = get(&server.addr, &format!("/api/search?q=name:{name}")).json()["hits"][0].clone();
        let details = get(&server.addr, &format!("/api/images/{}", hit["id"])).json();
        assert_eq!(details["place"].as_str(), place, "{details}");
        assert_eq!(details["gps"].is_null(), name == "coffee", "{details}");
    }
    let near = get(&server.addr, "/api/search?q=near:lisbon").json();
    assert_eq!(hit_paths(&near).len(), 1, "the picture named after Lisbon is near:lisbon: {near}");
}

/// The cached renditions (thumbnails and previews) in a test's folder: under the data folder,
/// wherever the backend keeps its cache.
fn cached_renditions(tmp: &Path) -> usize {
    walkdir::WalkDir::new(tmp.join("data"))
        .into_iter()
        .filter_map(Result::ok)
        .filter(|entry| entry.path().parent().is_some_and(|folder| folder.ends_with("thumbnails")))
        .filter(|entry| entry.path().extension().is_some_and(|extension| extension == "jpg"))
        .count()
}

#[test]
fn optimize_deletes_the_cached_renditions_of_pictures_gone_or_changed() {
    let (tmp, server) = start(&[]);
    let hits = get(&server.addr, "/api/search?q=a%20photo&k=10").json();
    assert_eq!(hits["hits"].as_array().unwrap().len(), 5, "{hits}");
    for hit in hits["hits"].as_array().unwrap() {
        for rendition in ["thumbnail", "preview"] {
            let response = get(&server.addr, &format!("/api/images/{}/{rendition}", hit["id"]));
            assert_eq!(response.status, 200, "{}", String::from_utf8_lossy(&response.body));
        }
    }
    drop(server);
    assert_eq!(cached_renditions(tmp.path()), 10);

    let photos = tmp.path().join("photos");
    std::fs::remove_file(photos.join("coffee.png")).unwrap();
    image::open(image_path("rocket.jpg")).unwrap().grayscale().save(photos.join("camera.png")).unwrap();
    let data = tmp.path().join("data");
    index_photos(&photos, &data, &[]);
    let out = common::cli::run(common::cli::imgsearch(&data).arg("optimize"));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("4 cached thumbnails and previews of pictures gone or changed deleted"), "{said}");
    assert_eq!(cached_renditions(tmp.path()), 6, "the three unchanged pictures' renditions stay");
    let again = common::cli::run(common::cli::imgsearch(&data).arg("optimize"));
    assert!(String::from_utf8_lossy(&again.stdout).contains("0 cached thumbnails"));
}

/// A picture whose name is not UTF-8 is shown with those bytes as `\xNN` and given exactly as
/// `path_bytes`, in search hits and in `/api/images/ID`; its original downloads under its name.
#[cfg(unix)]
#[test]
fn a_name_that_is_not_utf8_is_given_exactly_over_http() {
    use std::os::unix::ffi::OsStrExt;
    let tmp = tempfile::tempdir().unwrap();
    let photos = tmp.path().join("photos");
    std::fs::create_dir_all(&photos).unwrap();
    std::fs::copy(image_path("coffee.png"), photos.join(std::ffi::OsStr::from_bytes(b"caf\xe9.png"))).unwrap();
    let server = index_and_serve(&photos, &tmp.path().join("data"), &[]);
    let hits = get(&server.addr, "/api/search?q=coffee&k=1").json();
    let hit = &hits["hits"][0];
    assert!(hit["path"].as_str().unwrap().ends_with("/caf\\xE9.png"), "{hit}");
    let bytes: Vec<u8> = hit["path_bytes"].as_array().unwrap().iter().map(|b| b.as_u64().unwrap() as u8).collect();
    assert!(bytes.ends_with(b"/caf\xe9.png"), "{hit}");
    let info = get(&server.addr, &format!("/api/images/{}", hit["id"])).json();
    assert_eq!((&info["path"], &info["path_bytes"]), (&hit["path"], &hit["path_bytes"]));
    let file = get(&server.addr, &format!("/api/images/{}/file", hit["id"]));
    // RFC 8187 carries UTF-8: the byte that is not becomes U+FFFD.
    assert_eq!(file.header("content-disposition").as_deref(), Some("inline; filename*=UTF-8''caf%EF%BF%BD%2Epng"));
}

#[test]
fn images_are_served_by_id_only() {
    let (tmp, server) = start(&[]);
    let json = get(&server.addr, "/api/search?q=name:coffee&k=1").json();
    let id = json["hits"][0]["id"].as_u64().unwrap();
    let file = get(&server.addr, &format!("/api/images/{id}/file"));
    assert_eq!(file.status, 200);
    assert_eq!(file.body, std::fs::read(tmp.path().join("photos/coffee.png")).unwrap());
    assert_eq!(file.header("content-type").as_deref(), Some("image/png"));
    assert_eq!(file.header("content-length"), Some(file.body.len().to_string()));
    // Saved under its own name.
    assert_eq!(file.header("content-disposition").as_deref(), Some("inline; filename*=UTF-8''coffee%2Epng"));
    let info = get(&server.addr, &format!("/api/images/{id}")).json();
    assert_eq!(info["width"], 600);
    let similar = get(&server.addr, &format!("/api/images/{id}/similar?k=2")).json();
    assert!(!hit_paths(&similar).iter().any(|p| p.ends_with("coffee.png")), "more-like-this leaves the picture out");
    for traversal in
        ["/api/images/..%2F..%2Fetc%2Fpasswd/file", "/api/images/%2Fetc%2Fpasswd/file", "/../../etc/passwd"]
    {
        let response = get(&server.addr, traversal);
        assert!((400..500).contains(&response.status), "{traversal}: {}", response.status);
        assert!(!String::from_utf8_lossy(&response.body).contains("root:"));
    }
}

/// A named root's pictures are served through this host's mount of it (`--mount`), however
/// the host that indexed it mounted it; without the mount they are gone, never guessed.
#[test]
fn a_named_root_is_served_through_this_hosts_mount() {
    let tmp = tempfile::tempdir().unwrap();
    let (indexed_at, mounted_at) = (tmp.path().join("nas/photos"), tmp.path().join("here/photos"));
    photo_tree(&indexed_at);
    let data = tmp.path().join("data");
    index_photos(Path::new(&format!("photos={}", indexed_at.display())), &data, &[]);
    std::fs::create_dir_all(mounted_at.parent().unwrap()).unwrap();
    std::fs::rename(&indexed_at, &mounted_at).unwrap();

    let mount = format!("photos={}", mounted_at.display());
    let server = serve(&data, &["--mount", &mount]);
    let hit = get(&server.addr, "/api/search?q=name:coffee&k=1").json()["hits"][0].clone();
    assert_eq!(hit["path"], "photos:/coffee.png");
    let id = hit["id"].as_u64().unwrap();
    let file = get(&server.addr, &format!("/api/images/{id}/file"));
    assert_eq!(file.status, 200);
    assert_eq!(file.body, std::fs::read(mounted_at.join("coffee.png")).unwrap());
    assert_eq!(get(&server.addr, &format!("/api/images/{id}/thumbnail")).status, 200);
    drop(server);

    // Without --mount the root is looked for where it was indexed, and is not there.
    let server = serve(&data, &[]);
    let file = get(&server.addr, &format!("/api/images/{id}/file"));
    assert_eq!(file.status, 410, "{}", String::from_utf8_lossy(&file.body));
    assert_eq!(file.json()["error"]["code"], "file_gone");
}

/// A file replaced after indexing (here by a symlink to a file outside the library) is not
/// served, neither its bytes nor a thumbnail made from it; put back as indexed, it is again.
#[cfg(unix)]
#[test]
fn a_file_replaced_since_indexing_is_not_served() {
    let (tmp, server) = start(&[]);
    let json = get(&server.addr, "/api/search?q=name:coffee&k=1").json();
    let id = json["hits"][0]["id"].as_u64().unwrap();
    let indexed = tmp.path().join("photos/coffee.png");
    let indexed_mtime = std::fs::metadata(&indexed).unwrap().modified().unwrap();
    let outside = tmp.path().join("private.txt");
    std::fs::write(&outside, "not for the web").unwrap();
    std::fs::remove_file(&indexed).unwrap();
    std::os::unix::fs::symlink(&outside, &indexed).unwrap();
    // Even given the indexed file's size and modification time.
    let mut same_size = b"not for the web".to_vec();
    same_size.resize(std::fs::metadata(image_path("coffee.png")).unwrap().len() as usize, b' ');
    let imposter = tmp.path().join("imposter.txt");
    std::fs::write(&imposter, &same_size).unwrap();
    std::fs::File::options().write(true).open(&imposter).unwrap().set_modified(indexed_mtime).unwrap();
    for (target, route) in [(&outside, "file"), (&outside, "thumbnail"), (&imposter, "file"), (&imposter, "thumbnail")]
    {
        std::fs::remove_file(&indexed).unwrap();
        std::os::unix::fs::symlink(target, &indexed).unwrap();
        let response = get(&server.addr, &format!("/api/images/{id}/{route}"));
        assert_eq!(response.status, 409, "{route}");
        assert_eq!(response.json()["error"]["code"], "file_changed", "{route}");
        assert!(!String::from_utf8_lossy(&response.body).contains("not for the web"), "{route}");
        // Under the indexed size and time, indexing sees no change: the message says to touch it.
        let message = response.json()["error"]["message"].as_str().unwrap_or_default().to_string();
        assert_eq!(message.contains("`touch` it"), target == &imposter, "{route}: {message}");
    }
    // A pipe in its place is not opened (its `open` would wait for a writer, holding a thread).
    std::fs::remove_file(&indexed).unwrap();
    common::succeeds(Command::new("mkfifo").arg(&indexed));
    for route in ["file", "thumbnail"] {
        let response = get(&server.addr, &format!("/api/images/{id}/{route}"));
        assert_eq!(response.status, 409, "{route}");
    }
    std::fs::remove_file(&indexed).unwrap();
    std::fs::copy(image_path("coffee.png"), &indexed).unwrap();
    std::fs::File::options().write(true).open(&indexed).unwrap().set_modified(indexed_mtime).unwrap();
    let file = get(&server.addr, &format!("/api/images/{id}/file"));
    assert_eq!(file.status, 200);
    assert_eq!(file.body, std::fs::read(image_path("coffee.png")).unwrap());
    assert_eq!(get(&server.addr, &format!("/api/images/{id}/thumbnail")).status, 200);
    // A folder on its path replaced by a file: the picture is gone (410), not a server failure.
    let cat = get(&server.addr, "/api/search?q=name:cat&k=1").json()["hits"][0]["id"].as_u64().unwrap();
    let trips = tmp.path().join("photos/trips");
    std::fs::rename(&trips, tmp.path().join("trips_elsewhere")).unwrap();
    std::fs::write(&trips, b"a file where the folder was").unwrap();
    let gone = get(&server.addr, &format!("/api/images/{cat}/file"));
    assert_eq!((gone.status, gone.json()["error"]["code"].clone()), (410, "file_gone".into()));
}

#[test]
fn a_connection_that_sends_half_a_request_and_stops_is_closed() {
    use std::io::{Read, Write};
    let (_tmp, server) = start(&["--idle-timeout", "1"]);
    let mut stream = std::net::TcpStream::connect(&server.addr).unwrap();
    stream.write_all(b"GET /api/health HTTP/1.1\r\nHost: localhost\r\n").unwrap();
    // Without the idle timeout the server would hold it open for good: this read would time out.
    stream.set_read_timeout(Some(std::time::Duration::from_secs(30))).unwrap();
    let mut rest = Vec::new();
    let closed = stream.read_to_end(&mut rest);
    assert!(closed.is_ok(), "the server closed the connection: {closed:?}");
    assert_eq!(get(&server.addr, "/api/health").status, 200);
}

/// A client that trickles a request's head in, a header line now and then, is closed once the
/// head has taken longer than the idle timeout: each byte kept the idle timer from running out.
#[test]
fn a_connection_that_trickles_a_request_head_in_is_closed() {
    use std::io::{Read, Write};
    let (_tmp, server) = start(&["--idle-timeout", "2"]);
    let mut stream = std::net::TcpStream::connect(&server.addr).unwrap();
    stream.set_read_timeout(Some(std::time::Duration::from_millis(300))).unwrap();
    stream.write_all(b"GET /api/health HTTP/1.1\r\nHost: localhost\r\n").unwrap();
    let started = std::time::Instant::now();
    let closed = loop {
        let mut byte = [0u8; 1];
        match stream.read(&mut byte) {
            Ok(0) => break true,
            Ok(_) => panic!("an answer to half a request"),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(_) => break true, // reset
        }
        if started.elapsed() > std::time::Duration::from_secs(15) {
            break false;
        }
        if stream.write_all(b"X-Slow: a\r\n").is_err() {
            break true;
        }
    };
    assert!(closed, "a request head trickled in for 15 s kept its connection");
    assert_eq!(get(&server.addr, "/api/health").status, 200);
}

/// A body trickled in (a byte now and then) is refused once it falls behind the minimum rate,
/// with a 408 that says why: each byte kept the idle timeout from running out, so one client
/// held an upload slot for good.
#[test]
fn an_upload_trickled_in_is_refused_in_bounded_time() {
    use std::io::{Read, Write};
    let (_tmp, server) = start(&[]);
    let mut stream = std::net::TcpStream::connect(&server.addr).unwrap();
    stream.set_read_timeout(Some(std::time::Duration::from_millis(500))).unwrap();
    let head = "POST /api/search/image HTTP/1.1\r\nHost: localhost\r\nContent-Type: image/png\r\n\
                Content-Length: 100000\r\n\r\n";
    stream.write_all(head.as_bytes()).unwrap();
    let started = std::time::Instant::now();
    let mut answer = Vec::new();
    while started.elapsed() < std::time::Duration::from_secs(40) {
        let mut chunk = [0u8; 4096];
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(_) => break,
        }
        if answer.windows(4).any(|w| w == b"\r\n\r\n") && String::from_utf8_lossy(&answer).contains("}}") {
            break;
        }
        let _ = stream.write_all(b"x");
    }
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408 "), "after {:?}: {answer:?}", started.elapsed());
    assert!(answer.contains("\"slow_body\""), "{answer:?}");
    assert_eq!(get(&server.addr, "/api/health").status, 200);
}

/// Requests that hyper answers itself, before any handler (not HTTP, a URL over 64 kB, too many or
/// too large headers), get the API's JSON errors too, and the server goes on serving.
#[test]
fn requests_that_cannot_be_read_as_http_get_json_errors() {
    let (_tmp, server) = start(&[]);
    let many_headers: String = (0..200).map(|i| format!("X-{i}: a\r\n")).collect();
    for (request, status, code) in [
        ("GARBAGE\u{1} / HTTP/1.1\r\n\r\n".to_string(), "400", "bad_request"),
        (
            format!("GET /api/search?q={} HTTP/1.1\r\nHost: localhost\r\n\r\n", "a".repeat(70_000)),
            "414",
            "uri_too_long",
        ),
        (format!("GET /api/health HTTP/1.1\r\nHost: localhost\r\n{many_headers}\r\n"), "431", "headers_too_large"),
        (
            format!("GET /api/health HTTP/1.1\r\nHost: localhost\r\nX-Big: {}\r\n\r\n", "a".repeat(500_000)),
            "431",
            "headers_too_large",
        ),
        // Under hyper's read buffer (408 kB): refused whether it comes in one read or several.
        (
            format!("GET /api/health HTTP/1.1\r\nHost: localhost\r\nX-Big: {}\r\n\r\n", "a".repeat(200_000)),
            "431",
            "headers_too_large",
        ),
    ] {
        let answer = exchange(&server.addr, request.as_bytes());
        let (head, body) = answer.split_once("\r\n\r\n").unwrap_or_else(|| panic!("{status}: {answer:?}"));
        assert_eq!(head.split(' ').nth(1), Some(status), "{answer:?}");
        assert!(head.contains("content-type: application/json"), "{head:?}");
        let json: serde_json::Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body:?}"));
        assert_eq!(json["error"]["code"], code, "{body}");
    }
    assert_eq!(get(&server.addr, "/api/health").status, 200);
}

/// What a raw request gets back, read until the server closes the connection.
fn exchange(addr: &str, request: &[u8]) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(std::time::Duration::from_secs(30))).unwrap();
    // The server may answer and close before it has read all of an over-long request.
    let _ = stream.write_all(request);
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

/// SIGTERM (what systemd and `docker stop` send) stops the server as Ctrl-C does: it refuses new
/// clients, lets the request in progress finish, and exits 0. It used to end the process at once.
#[test]
fn sigterm_lets_the_request_in_progress_finish_and_refuses_new_clients() {
    use std::io::{Read, Write};
    let (_tmp, mut server) = start(&[]);
    let picture = std::fs::read(image_path("coffee.png")).unwrap();
    let mut upload = std::net::TcpStream::connect(&server.addr).unwrap();
    let head = format!(
        "POST /api/search/image?k=1 HTTP/1.1\r\nHost: localhost\r\nContent-Type: image/png\r\nContent-Length: {}\r\n\r\n",
        picture.len()
    );
    upload.write_all(head.as_bytes()).unwrap();
    upload.write_all(&picture[..100]).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    server.signal(libc::SIGTERM);
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert!(std::net::TcpStream::connect(&server.addr).is_err(), "a new client was let in while stopping");
    upload.write_all(&picture[100..]).unwrap();
    upload.set_read_timeout(Some(std::time::Duration::from_secs(30))).unwrap();
    let mut answer = Vec::new();
    let _ = upload.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200 ") && answer.contains("\"hits\""), "{answer:?}");
    let status = server.exited_within(std::time::Duration::from_secs(20)).expect("still running 20 s after SIGTERM");
    assert_eq!(status.code(), Some(0), "{status:?}");
}

/// Health checks that come together all get the one check's answer: while one ran, the others
/// were told 503 `library_unreachable` (a monitor and a load balancer asking at once).
#[test]
fn health_checks_that_come_together_all_get_its_answer() {
    let (_tmp, server) = start(&[]);
    for round in 0..6 {
        std::thread::sleep(std::time::Duration::from_millis(200));
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(8));
        let asking: Vec<_> = (0..8)
            .map(|_| {
                let (barrier, addr) = (barrier.clone(), server.addr.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    get(&addr, "/api/health").status
                })
            })
            .collect();
        let statuses: Vec<u16> = asking.into_iter().map(|thread| thread.join().unwrap()).collect();
        assert!(statuses.iter().all(|&status| status == 200), "round {round}: {statuses:?}");
    }
}

/// The host is named once, in the Host header or in a URL that holds it (which then counts, as
/// HTTP says): two Host headers, or none in HTTP/1.1, are a bad request, and a URL naming
/// another site is refused on a loopback-only server whatever the Host header says.
#[test]
fn the_host_is_named_once_and_a_url_naming_it_counts() {
    let (_tmp, server) = start(&[]);
    let port = server.addr.rsplit(':').next().unwrap();
    let code = |answer: &str| {
        let body = answer.split_once("\r\n\r\n").map(|(_, body)| body).unwrap_or_default();
        serde_json::from_str::<serde_json::Value>(body).map(|json| json["error"]["code"].clone()).unwrap_or_default()
    };
    for (request, status, expected) in [
        (
            "GET /api/health HTTP/1.1\r\nHost: localhost\r\nHost: evil.example\r\n\r\n".to_string(),
            "400",
            "bad_host_header",
        ),
        ("GET /api/search?q=cat HTTP/1.1\r\n\r\n".to_string(), "400", "bad_host_header"),
        ("GET http://evil.example/api/search?q=cat HTTP/1.1\r\nHost: localhost\r\n\r\n".to_string(), "403", "bad_host"),
        (format!("GET http://localhost:{port}/api/search?q=cat HTTP/1.1\r\nHost: evil.example\r\n\r\n"), "200", ""),
    ] {
        let request = request.replace("HTTP/1.1\r\n", "HTTP/1.1\r\nConnection: close\r\n");
        let answer = exchange(&server.addr, request.as_bytes());
        assert_eq!(answer.split(' ').nth(1), Some(status), "{request:?}: {answer:?}");
        if !expected.is_empty() {
            assert_eq!(code(&answer), expected, "{request:?}: {answer:?}");
        }
    }
}

/// An expectation the server cannot meet is answered 417 (RFC 9110), not ignored; `100-continue`,
/// in any case, is met.
#[test]
fn an_expectation_other_than_100_continue_is_refused() {
    let (_tmp, server) = start(&[]);
    let head = |expect: &str| {
        format!("GET /api/search?q=cat HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nExpect: {expect}\r\n\r\n")
    };
    let answer = exchange(&server.addr, head("x-teapot").as_bytes());
    assert!(answer.starts_with("HTTP/1.1 417"), "{answer}");
    assert!(answer.contains("\"expectation_failed\"") && answer.contains("x-teapot"), "{answer}");
    let answer = exchange(&server.addr, head("100-Continue").as_bytes());
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

/// A 405 names the method it refuses, not all of a made-up 100 kB one.
#[test]
fn a_long_made_up_method_is_not_repeated_whole() {
    let (_tmp, server) = start(&[]);
    let method = "X".repeat(100_000);
    let request = format!("{method} /api/health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    let answer = exchange(&server.addr, request.as_bytes());
    assert_eq!(answer.split(' ').nth(1), Some("405"), "{}", &answer[..answer.len().min(300)]);
    assert!(answer.len() < 2_000, "a {}-byte answer", answer.len());
    assert!(answer.contains("method_not_allowed"), "{answer}");
}

/// A client that shuts its sending side once its request is out (an HTTP/1.0 script, `nc -N`)
/// still gets the answer, for a good request and for a refused one alike.
#[test]
fn a_client_that_shuts_its_side_after_the_request_gets_the_answer() {
    use std::io::{Read, Write};
    let (_tmp, server) = start(&[]);
    for (request, status, body) in [
        ("GET /api/search?q=cat&k=1 HTTP/1.0\r\nHost: localhost\r\n\r\n", "200", "\"hits\""),
        ("GET /api/search?q=cat&k=1 HTTP/1.1\r\nHost: localhost\r\n\r\n", "200", "\"hits\""),
        ("GET /api/search?q=cat&k=abc HTTP/1.1\r\nHost: localhost\r\n\r\n", "400", "\"error\""),
    ] {
        let mut stream = std::net::TcpStream::connect(&server.addr).unwrap();
        stream.write_all(request.as_bytes()).unwrap();
        stream.shutdown(std::net::Shutdown::Write).unwrap();
        stream.set_read_timeout(Some(std::time::Duration::from_secs(30))).unwrap();
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).unwrap();
        let answer = String::from_utf8_lossy(&answer);
        assert_eq!(answer.split(' ').nth(1), Some(status), "{request:?} got {answer:?}");
        assert!(answer.contains(body), "{request:?} got {answer:?}");
    }
}

#[test]
fn a_page_on_another_site_name_cannot_read_a_server_nobody_signs_in_to() {
    let (_tmp, server) = start(&[]);
    // DNS rebinding: a site's name made to point at 127.0.0.1 reaches the port, but its
    // requests carry that name as their Host.
    let rebound =
        request_with_headers(&server.addr, "GET", "/api/search?q=cat", &[("Host", "attacker.example:7878")], b"");
    assert_eq!(rebound.status, 403);
    assert_eq!(rebound.json()["error"]["code"], "bad_host");
    let port = server.addr.rsplit(':').next().unwrap();
    for host in
        [format!("localhost:{port}"), format!("127.0.0.1:{port}"), "[::1]".to_string(), "photos.localhost".into()]
    {
        let own = request_with_headers(&server.addr, "GET", "/api/search?q=cat", &[("Host", &host)], b"");
        assert_eq!(own.status, 200, "{host}");
    }
}

/// What another site's page makes a browser fetch from here (its `<img>` of a photo, its
/// script's search, its form's upload) is refused by the browser's own `Sec-Fetch-Site`; a link
/// followed to the UI, the UI's own requests and clients that are not browsers are served.
#[test]
fn a_page_on_another_site_cannot_make_the_browser_fetch_from_here() {
    let (_tmp, server) = start(&[]);
    let id = get(&server.addr, "/api/search?q=cat&k=1").json()["hits"][0]["id"].clone();
    let thumbnail = format!("/api/images/{id}/thumbnail");
    let fetch = |path: &str, site: &str, mode: &str, dest: &str| {
        let headers = [("Sec-Fetch-Site", site), ("Sec-Fetch-Mode", mode), ("Sec-Fetch-Dest", dest)];
        request_with_headers(&server.addr, "GET", path, &headers, b"")
    };
    for site in ["cross-site", "same-site"] {
        for (path, mode, dest) in [
            (thumbnail.as_str(), "no-cors", "image"),
            ("/api/search?q=cat", "cors", "empty"),
            ("/", "no-cors", "iframe"),
        ] {
            let refused = fetch(path, site, mode, dest);
            assert_eq!(
                (refused.status, refused.json()["error"]["code"].clone()),
                (403, "cross_site".into()),
                "{path} {site}"
            );
        }
        assert_eq!(fetch("/", site, "navigate", "document").status, 200, "a link to the UI from {site}");
    }
    for site in ["same-origin", "none"] {
        assert_eq!(fetch(&thumbnail, site, "no-cors", "image").status, 200, "{site}");
    }
    assert_eq!(get(&server.addr, &thumbnail).status, 200, "no fetch metadata: not a browser");
}

/// A PNG of `width` × `height` pixels of `color_type` (PNG's code) and `bit_depth` whose only
/// data is an empty zlib stream: what a decompression bomb's header looks like.
fn png_header_only(width: u32, height: u32, bit_depth: u8, color_type: u8) -> Vec<u8> {
    let chunk = common::png_chunk;
    let ihdr = [&width.to_be_bytes()[..], &height.to_be_bytes(), &[bit_depth, color_type, 0, 0, 0]].concat();
    // zlib header, one empty final block, the Adler-32 of nothing.
    let empty_zlib = [0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01];
    [&b"\x89PNG\r\n\x1a\n"[..], &chunk(b"IHDR", &ihdr), &chunk(b"IDAT", &empty_zlib), &chunk(b"IEND", b"")].concat()
}

#[test]
fn uploads_whose_pixels_would_take_too_much_memory_are_refused_from_their_header() {
    let (_tmp, server) = start(&[]);
    // 64 MP of 16-bit RGBA: under the 100 MP upload limit, but 11 bytes a pixel to decode.
    let deep = request(&server.addr, "POST", "/api/search/image", None, &png_header_only(8000, 8000, 16, 6));
    assert_eq!(deep.status, 413, "{}", String::from_utf8_lossy(&deep.body));
    assert_eq!(deep.json()["error"]["code"], "image_too_large");
    // 20 MP claimed by a hundred bytes: no encoder packs pixels that densely.
    let thin = request(&server.addr, "POST", "/api/search/image", None, &png_header_only(1, 20_000_000, 8, 0));
    assert_eq!(thin.status, 415, "{}", String::from_utf8_lossy(&thin.body));
    assert!(thin.json()["error"]["message"].as_str().unwrap().contains("far more than its"), "{}", thin.json());
}

#[test]
fn every_bad_request_gets_a_clear_json_4xx() {
    let (tmp, server) = start(&["--upload-limit", "200000", "--max-pixels", "1000000"]);
    let long_query = format!("/api/search?q={}", "a".repeat(5000));
    let cases: Vec<(&str, String, u16, &str)> = vec![
        ("k=0", "/api/search?q=cat&k=0".into(), 400, "bad_k"),
        ("k<0", "/api/search?q=cat&k=-3".into(), 400, "bad_k"),
        ("huge k", "/api/search?q=cat&k=99999999999999999999".into(), 400, "bad_k"),
        ("k not a number", "/api/search?q=cat&k=ten".into(), 400, "bad_k"),
        ("bad offset", "/api/search?q=cat&offset=-1".into(), 400, "bad_offset"),
        ("bad min_score", "/api/search?q=cat&min_score=high".into(), 400, "bad_min_score"),
        ("bad sort", "/api/search?q=cat&sort=random".into(), 400, "bad_sort"),
        // Empty values are refused, as the OpenAPI document says.
        ("empty sort", "/api/search?q=cat&sort=".into(), 400, "bad_sort"),
        ("empty min_score", "/api/search?q=cat&min_score=".into(), 400, "bad_min_score"),
        ("id past 64 bits", "/api/images/18446744073709551616".into(), 400, "bad_id"),
        ("empty query", "/api/search?q=".into(), 400, "empty_query"),
        ("missing query", "/api/search".into(), 400, "empty_query"),
        ("a lone quote", "/api/search?q=%22".into(), 400, "empty_query"),
        ("empty quotes", "/api/search?q=%22%22%20".into(), 400, "empty_query"),
        ("enormous query", long_query, 400, "query_too_long"),
        ("bad date", "/api/search?q=after:yesterday".into(), 400, "bad_query"),
        ("q given twice", "/api/search?q=cat&q=dog".into(), 400, "repeated_parameter"),
        ("k given twice", "/api/search?q=cat&k=1&k=50".into(), 400, "repeated_parameter"),
        ("min_score on filters alone", "/api/search?q=type:png&min_score=0.2".into(), 400, "bad_query"),
        ("unknown id", "/api/images/424242".into(), 404, "not_found"),
        ("non-numeric id", "/api/images/abc/thumbnail".into(), 400, "bad_id"),
        ("similar of unknown id", "/api/images/424242/similar".into(), 404, "not_found"),
        ("unknown route", "/api/nothing".into(), 404, "not_found"),
        // axum's own answers, in the same shape.
        ("id not UTF-8", "/api/images/%FF/file".into(), 400, "bad_request"),
    ];
    for (what, path, status, code) in cases {
        let response = get(&server.addr, &path);
        assert_eq!(response.status, status, "{what}: {}", String::from_utf8_lossy(&response.body));
        let json = response.json();
        assert_eq!(json["error"]["code"], code, "{what}");
        assert!(json["error"]["message"].as_str().is_some_and(|m| m.len() > 10), "{what}: message");
    }

    // Uploads: not an image, empty, over the byte limit, a decompression bomb, no `image` field.
    let mut bomb = Vec::new();
    RgbImage::new(3000, 3000).write_to(&mut Cursor::new(&mut bomb), ImageFormat::Png).unwrap(); // small file, 9 MP
    assert!(bomb.len() < 200_000);
    let big = std::fs::read(image_path("coffee.png")).unwrap().repeat(2); // > 200 kB
    type Upload<'a> = (&'a str, Option<&'a str>, Vec<u8>, u16, &'a str); // what, content type, body, status, code
    let uploads: Vec<Upload> = vec![
        ("text upload", Some("text/plain"), b"hello, not a picture".to_vec(), 415, "not_an_image"),
        ("empty upload", Some("image/jpeg"), Vec::new(), 400, "empty_upload"),
        ("too large", Some("image/png"), big, 413, "payload_too_large"),
        ("bomb", Some("image/png"), bomb, 413, "image_too_large"),
    ];
    for (what, content_type, body, status, code) in uploads {
        let response = request(&server.addr, "POST", "/api/search/image", content_type, &body);
        assert_eq!(response.status, status, "{what}: {}", String::from_utf8_lossy(&response.body));
        assert_eq!(response.json()["error"]["code"], code, "{what}");
    }
    // A TGA has no magic number: the Content-Type the server itself sends for one names it.
    let mut targa = Vec::new();
    let small = image::open(image_path("coffee.png")).unwrap().resize_exact(100, 80, image::imageops::Triangle);
    small.to_rgb8().write_to(&mut Cursor::new(&mut targa), ImageFormat::Tga).unwrap();
    let named = request(&server.addr, "POST", "/api/search/image?k=1", Some("image/x-targa"), &targa);
    assert_eq!(named.status, 200, "{}", String::from_utf8_lossy(&named.body));
    assert_eq!(request(&server.addr, "POST", "/api/search/image?k=1", None, &targa).status, 415);
    // Announced too large (an upload, a JSON body): refused before the body is sent. Broken off: a
    // bad request, not 413.
    let broken_chunks = "Transfer-Encoding: chunked\r\n\r\nfffffffffffffffff\r\n";
    for (route, head, status) in [
        ("image", "Content-Length: 10000000000\r\n\r\n", 413),
        ("vector", "Content-Length: 1048577\r\n\r\n", 413),
        ("image", broken_chunks, 400),
        ("vector", broken_chunks, 400),
    ] {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(&server.addr).unwrap();
        let request =
            format!("POST /api/search/{route} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n{head}", server.addr);
        stream.write_all(request.as_bytes()).unwrap();
        stream.set_read_timeout(Some(std::time::Duration::from_secs(20))).unwrap();
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        assert!(answer.starts_with(&format!("HTTP/1.1 {status}")), "{route} {head:?}: {answer}");
    }
    let (content_type, body) = multipart("photo", "x.jpg", b"whatever");
    let response = request(&server.addr, "POST", "/api/search/image", Some(&content_type), &body);
    assert_eq!((response.status, response.json()["error"]["code"].clone()), (400, "missing_image".into()));
    // Text beside the picture composes with it, so a query that does not parse is refused.
    let photo = std::fs::read(image_path("rocket.jpg")).unwrap();
    let response = request(&server.addr, "POST", "/api/search/image?q=500:dog", Some("image/jpeg"), &photo);
    assert_eq!((response.status, response.json()["error"]["code"].clone()), (400, "bad_query".into()));

    // Escapes that are not UTF-8 are refused, not searched as replacement characters; text that
    // is only invisible is empty.
    for (path, code) in [
        ("/api/search?q=%FF", "bad_query"),
        ("/api/search?q=%ED%A0%80", "bad_query"),
        ("/api/search?q=%E2%80%8B%EF%BB%BF", "empty_query"),
    ] {
        let response = get(&server.addr, path);
        assert_eq!((response.status, response.json()["error"]["code"].clone()), (400, code.into()), "{path}");
    }
    assert_eq!(get(&server.addr, "/api/search?q=caf%C3%A9+100%25").status, 200);
    let put = request(&server.addr, "PUT", "/api/search?q=cat", None, b"");
    assert_eq!((put.status, put.json()["error"]["code"].clone()), (405, "method_not_allowed".into()));
    assert!(put.header("allow").is_some_and(|allow| allow.contains("GET")), "{}", put.headers);

    // No other site may frame the pages, no browser guesses a type from a file's bytes, the
    // pages run only the UI's own scripts, and a picture opened on its own runs none.
    let page = get(&server.addr, "/");
    assert_eq!(page.header("x-frame-options").as_deref(), Some("DENY"));
    assert_eq!(page.header("x-content-type-options").as_deref(), Some("nosniff"));
    let policy = page.header("content-security-policy").unwrap_or_default();
    assert!(policy.contains("script-src 'self'") && policy.contains("frame-ancestors 'none'"), "{policy}");
    let hit = get(&server.addr, "/api/search?q=cat&k=1").json()["hits"][0]["id"].clone();
    let file = get(&server.addr, &format!("/api/images/{hit}/file"));
    assert_eq!(file.status, 200);
    let policy = file.header("content-security-policy").unwrap_or_default();
    assert!(policy.starts_with("sandbox;") && policy.contains("default-src 'none'"), "{policy}");

    // The server is still healthy after all that.
    assert_eq!(get(&server.addr, "/api/health").status, 200);
    drop(tmp);
}

#[test]
fn the_openapi_document_describes_every_route() {
    let (_tmp, server) = start(&[]);
    let spec = get(&server.addr, "/api/openapi.json").json();
    assert!(spec["openapi"].as_str().unwrap().starts_with("3."));
    for path in [
        "/api/search",
        "/api/search/image",
        "/api/search/vector",
        "/api/images/{id}",
        "/api/images/{id}/thumbnail",
        "/api/images/{id}/file",
        "/api/images/{id}/similar",
        "/api/stats",
        "/api/health",
        "/api/duplicates",
        "/api/login",
        "/api/tokens",
    ] {
        assert!(spec["paths"][path].is_object(), "{path} missing from OpenAPI");
    }
    // What the document promises about the inputs the server refuses (each case is exercised in
    // every_bad_request_gets_a_clear_json_4xx).
    let q = &spec["paths"]["/api/search"]["get"]["parameters"][0];
    assert_eq!((q["name"].as_str(), q["schema"]["minLength"].as_u64()), (Some("q"), Some(1)));
    let id = &spec["paths"]["/api/images/{id}"]["get"]["parameters"][0]["schema"];
    assert_eq!(id["maximum"].as_u64(), Some(u64::MAX));
    let upload = &spec["paths"]["/api/search/image"]["post"]["requestBody"]["content"]["multipart/form-data"];
    assert_eq!(upload["schema"]["required"], serde_json::json!(["image"]));
    let stats = get(&server.addr, "/api/stats").json();
    assert_eq!(stats["images"], 5);
    let page = get(&server.addr, "/");
    assert!(String::from_utf8_lossy(&page.body).contains("<script src=\"/app.js\">"));
}

/// Pages of one query (the UI's infinite scroll) embed its text once: the rest come from the
/// server's cache of query embeddings, with the same hits.
#[test]
fn repeated_query_texts_are_embedded_once() {
    let (_tmp, server) = start(&[]);
    let cache = |addr: &str| get(addr, "/api/stats").json()["query_cache"].clone();
    let before = cache(&server.addr);
    let first = get(&server.addr, "/api/search?q=a%20photo%20of%20a%20cat&k=2").json();
    let second_page = get(&server.addr, "/api/search?q=a%20photo%20of%20a%20cat&k=2&offset=2").json();
    let first_again = get(&server.addr, "/api/search?q=a%20photo%20of%20a%20cat&k=2").json();
    assert_eq!(hit_paths(&first), hit_paths(&first_again));
    assert_eq!(first["hits"][0]["score"], first_again["hits"][0]["score"]);
    assert_eq!(second_page["hits"].as_array().unwrap().len(), 2);
    // Composed queries share it: "a photo of a cat" is known, "dog" is new.
    get(&server.addr, "/api/search?q=a%20photo%20of%20a%20cat%20-dog&k=2");
    let after = cache(&server.addr);
    let count = |v: &serde_json::Value, key: &str| v[key].as_u64().unwrap();
    assert_eq!(count(&after, "misses") - count(&before, "misses"), 2, "{before} -> {after}");
    assert_eq!(count(&after, "hits") - count(&before, "hits"), 3, "{before} -> {after}");
    assert_eq!(count(&after, "entries"), count(&before, "entries") + 2);
}

/// The server logs one line per request (method, route pattern, status, time) and never a
/// query, a credential or a cookie.
#[test]
fn the_log_names_kernels_threads_and_decoders_and_each_request_without_its_query_or_credentials() {
    let tmp = tempfile::tempdir().unwrap();
    photo_tree(&tmp.path().join("photos"));
    index_photos(&tmp.path().join("photos"), &tmp.path().join("data"), &[]);
    let log = tmp.path().join("server.log");
    let server = common::server::serve_logging_to(&tmp.path().join("data"), &["--threads", "3"], &log);
    assert_eq!(get(&server.addr, "/api/search?q=secret%20birthday%20surprise&k=2").status, 200);
    let credentials = [("Authorization", "Bearer tok-5up3r-s3cr3t"), ("Cookie", "session=c00k1e-v4lue")];
    let response = request_with_headers(&server.addr, "GET", "/api/images/424242", &credentials, b"");
    assert_eq!(response.status, 404);
    assert_eq!(get(&server.addr, "/no/such/page").status, 404);
    drop(server);
    let text = std::fs::read_to_string(&log).unwrap();
    let kernels = format!("CPU kernels: {}, 3 threads", imgsearch::model::kernels::isa().name());
    assert!(text.contains(&kernels), "the start names the kernel path and --threads: {text}");
    assert!(text.contains("HEIC and AVIF pictures: libheif 1."), "and the HEIF decoder: {text}");
    let lines: Vec<&str> = text.lines().filter(|l| l.contains("imgsearch::http")).collect();
    assert!(lines.iter().any(|l| l.contains("GET /api/search 200") && l.contains(" ms")), "{text}");
    assert!(lines.iter().any(|l| l.contains("GET /api/images/{id} 404")), "{text}");
    assert!(lines.iter().any(|l| l.contains("GET (no such route) 404")), "{text}");
    for secret in ["secret", "birthday", "tok-5up3r", "c00k1e", "424242"] {
        assert!(!text.contains(secret), "{secret:?} in the log:\n{text}");
    }
}

/// Measuring the data folder's size walks every file (a thumbnail per picture), so a client
/// polling `/api/stats` must not trigger a walk per request: the size is at most 30 s old.
#[test]
fn stats_measure_the_folder_size_at_most_every_30_seconds() {
    let (tmp, server) = start(&[]);
    let stats = get(&server.addr, "/api/stats").json();
    let size = stats["size_bytes"].as_u64().unwrap();
    assert!(size > 0 && stats["images"] == 5, "{stats:#}");
    std::fs::create_dir_all(tmp.path().join("data")).unwrap(); // on PostgreSQL, a cache folder only
    std::fs::write(tmp.path().join("data/extra.bin"), vec![1u8; 1 << 20]).unwrap();
    let again = get(&server.addr, "/api/stats").json();
    assert_eq!(again["size_bytes"].as_u64(), Some(size), "measured again within 30 s");
}

/// The embedded data folder is one process's (a search asks the server that holds it); a
/// PostgreSQL library is shared by any number.
#[test]
fn other_commands_beside_a_running_server_fail_clearly_or_share_its_library() {
    let (tmp, server) = start(&[]);
    let imgsearch = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_imgsearch"))
            .args(common::library_args(&tmp.path().join("data")))
            .args(args)
            .output()
            .unwrap()
    };
    let out = imgsearch(&["search", "cat"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 5, "every picture of the library");
    let out = imgsearch(&["list"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if common::on_postgres() {
        assert!(out.status.success(), "{stderr}");
        return;
    }
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.contains("in use by another imgsearch process"), "{stderr}");
    drop(server);
}

/// The health check reads the library: 503 while its data folder is gone or its database takes no
/// connections, 200 again once it is back.
#[test]
fn the_health_check_says_when_the_library_cannot_be_read() {
    let (tmp, server) = start(&[]);
    assert_eq!(get(&server.addr, "/api/health").status, 200);
    let (data, unplugged) = (tmp.path().join("data"), tmp.path().join("unplugged"));
    let database = common::on_postgres().then(|| common::database_for(&data).rsplit('/').next().unwrap().to_string());
    let set_reachable = |reachable: bool| match &database {
        Some(name) => {
            let admin = common::postgres_admin_url().unwrap();
            let mut client = postgres::Client::connect(&admin, postgres::NoTls).unwrap();
            client.batch_execute(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS {reachable}")).unwrap();
            if !reachable {
                client
                    .batch_execute(&format!(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"
                    ))
                    .unwrap();
            }
        }
        None if reachable => std::fs::rename(&unplugged, &data).unwrap(),
        None => std::fs::rename(&data, &unplugged).unwrap(),
    };
    set_reachable(false);
    let down = get(&server.addr, "/api/health");
    assert_eq!(down.status, 503, "{}", String::from_utf8_lossy(&down.body));
    assert_eq!(down.json()["error"]["code"], "library_unreachable");
    set_reachable(true);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while get(&server.addr, "/api/health").status != 200 {
        assert!(std::time::Instant::now() < deadline, "the health check stays 503 once the library is back");
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
}

/// Waits until a search for `name:NAME` finds a file called NAME.
fn wait_until_found(server: &RunningServer, name: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !hit_paths(&get(&server.addr, &format!("/api/search?q=name:{name}&k=5")).json())
        .iter()
        .any(|p| p.ends_with(&format!("{name}.jpg")))
    {
        assert!(std::time::Instant::now() < deadline, "{name}.jpg was not indexed while serving");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

/// The periodic rescan is set to ten minutes, so only the file watcher can find the new photo.
#[test]
fn with_watch_new_photos_become_searchable_while_serving() {
    let (tmp, server) = start(&["--watch", "--watch-interval", "600"]);
    let before = get(&server.addr, "/api/search?q=name:newcomer&k=5").json();
    assert!(hit_paths(&before).is_empty());
    std::fs::copy(image_path("coffee_cmyk.jpg"), tmp.path().join("photos/newcomer.jpg")).unwrap();
    wait_until_found(&server, "newcomer");
}

/// A root deleted and made again (a share unmounted and mounted anew) is watched again: a new
/// photo in it is found by the file watcher, not at the next periodic rescan ten minutes on.
#[test]
fn with_watch_a_root_made_again_is_watched_again() {
    let (tmp, server) = start(&["--watch", "--watch-interval", "600"]);
    let (photos, aside) = (tmp.path().join("photos"), tmp.path().join("photos_aside"));
    std::fs::rename(&photos, &aside).unwrap();
    std::thread::sleep(std::time::Duration::from_secs(3));
    // A copy: another folder (another inode) where the root was.
    common::succeeds(Command::new("cp").arg("-a").arg(&aside).arg(&photos));
    std::thread::sleep(std::time::Duration::from_secs(3));
    std::fs::copy(image_path("coffee_cmyk.jpg"), photos.join("after_remount.jpg")).unwrap();
    wait_until_found(&server, "after_remount");
}

/// A server's log once it says `what` (within 30 s) and three more one-second rescans have run:
/// what the tests of things said once read.
fn log_once_it_says(log: &std::path::Path, what: &str) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !std::fs::read_to_string(log).unwrap_or_default().contains(what) {
        assert!(std::time::Instant::now() < deadline, "{}", std::fs::read_to_string(log).unwrap_or_default());
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    std::thread::sleep(std::time::Duration::from_secs(3));
    std::fs::read_to_string(log).unwrap()
}

/// A file a rescan cannot read is logged when it appears, not at every rescan.
#[test]
fn with_watch_a_skipped_file_is_logged_once() {
    let tmp = tempfile::tempdir().unwrap();
    let (photos, data) = (tmp.path().join("photos"), tmp.path().join("data"));
    std::fs::create_dir_all(&photos).unwrap();
    std::fs::copy(image_path("rocket.jpg"), photos.join("rocket.jpg")).unwrap();
    index_photos(&photos, &data, &[]);
    let log = tmp.path().join("serve.log");
    let _server = common::server::serve_logging_to(&data, &["--watch", "--watch-interval", "1"], &log);
    std::fs::write(photos.join("broken.jpg"), b"\xff\xd8 not really a picture").unwrap();
    let logged = log_once_it_says(&log, "broken.jpg");
    assert_eq!(logged.matches("skipped").count(), 1, "{logged}");
}

/// A rescan takes the data folder only while it writes a batch: searches keep answering through
/// a long one and see it progress (one that held it throughout would show only its end).
#[test]
fn searches_answer_during_a_rescan_and_see_it_progress() {
    let (tmp, server) = start(&["--watch", "--watch-interval", "600"]);
    let images = || get(&server.addr, "/api/stats").json()["images"].as_u64().unwrap();
    let before = images();
    // Distinct pictures (copies would be recognised and not embedded), made aside and moved in
    // at once so that one rescan finds them all.
    let (staging, count) = (tmp.path().join("staging"), 320u64);
    std::fs::create_dir_all(&staging).unwrap();
    for i in 0..count as u32 {
        let picture = RgbImage::from_fn(480, 360, |x, y| image::Rgb([(x * i) as u8, (y + i) as u8, (x ^ y) as u8]));
        picture.save(staging.join(format!("import_{i}.jpg"))).unwrap();
    }
    std::fs::rename(&staging, tmp.path().join("photos/import")).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let mut seen = std::collections::BTreeSet::new();
    while seen.last() != Some(&(before + count)) {
        assert!(std::time::Instant::now() < deadline, "the rescan did not finish; counts seen: {seen:?}");
        seen.insert(images());
    }
    assert!(
        seen.iter().any(|&n| n > before && n < before + count),
        "no search answered while the rescan ran; counts seen: {seen:?}"
    );
}

/// Rescans cover every folder ever indexed, each walked as it was indexed: a folder indexed
/// with --hidden keeps its hidden pictures, and an earlier `index` run's folder is not dropped.
#[test]
fn watch_rescans_every_indexed_folder_with_its_own_options() {
    let tmp = tempfile::tempdir().unwrap();
    let (first, second, data) = (tmp.path().join("first"), tmp.path().join("second"), tmp.path().join("data"));
    std::fs::create_dir_all(first.join(".private")).unwrap();
    std::fs::create_dir_all(&second).unwrap();
    std::fs::copy(image_path("astronaut.jpg"), first.join(".private/secret.jpg")).unwrap();
    std::fs::copy(image_path("rocket.jpg"), second.join("older.jpg")).unwrap();
    index_photos(&second, &data, &[]);
    index_photos(&first, &data, &["--hidden"]);
    let server = serve(&data, &["--watch", "--watch-interval", "1"]);
    // A new picture in each folder: once both are found, both folders have been rescanned.
    std::fs::copy(image_path("coffee_cmyk.jpg"), first.join("new_in_first.jpg")).unwrap();
    std::fs::copy(image_path("chelsea_progressive.jpg"), second.join("new_in_second.jpg")).unwrap();
    wait_until_found(&server, "new_in_first");
    wait_until_found(&server, "new_in_second");
    for kept in ["secret", "older"] {
        let found = hit_paths(&get(&server.addr, &format!("/api/search?q=name:{kept}&k=5")).json());
        assert!(found.iter().any(|p| p.ends_with(&format!("{kept}.jpg"))), "{kept}.jpg was dropped by a rescan");
    }
}

/// A root that becomes a link to another folder (a mount point replaced by a link) is not
/// rescanned, and the log says what to run: walked through the link, its pictures would be stored
/// anew under the other path and dropped again at every rescan. The pictures stay served.
#[test]
fn watch_leaves_a_root_that_became_a_link_alone_and_says_what_to_run() {
    let tmp = tempfile::tempdir().unwrap();
    let (photos, real, data) = (tmp.path().join("photos"), tmp.path().join("photos_real"), tmp.path().join("data"));
    std::fs::create_dir_all(&photos).unwrap();
    std::fs::copy(image_path("rocket.jpg"), photos.join("rocket.jpg")).unwrap();
    index_photos(&photos, &data, &[]);
    std::fs::rename(&photos, &real).unwrap();
    std::os::unix::fs::symlink(&real, &photos).unwrap();
    let log = tmp.path().join("serve.log");
    let server = common::server::serve_logging_to(&data, &["--watch", "--watch-interval", "1"], &log);
    let logged = log_once_it_says(&log, "now leads to");
    assert_eq!(logged.matches("now leads to").count(), 1, "said once: {logged}");
    assert!(!logged.contains("watch: 1 indexed") && !logged.contains("reused"), "nothing stored anew: {logged}");
    assert_eq!(get(&server.addr, "/api/stats").json()["images"], 1);
}

/// The embedding `imgsearch embed` computes for a text with the served library's test model.
fn text_embedding(text: &str) -> Vec<f64> {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_imgsearch"))
        .args(["--device", "cpu", "embed", "--json", "--text", text, "--model"])
        .arg(common::model_dir("tiny-clip-b32-quickgelu"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    json["texts"][text].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect()
}

fn post_json(server: &RunningServer, path: &str, body: &serde_json::Value) -> common::http::HttpResponse {
    request(&server.addr, "POST", path, Some("application/json"), body.to_string().as_bytes())
}

#[test]
fn search_by_vector_answers_exactly_like_the_text_search_it_came_from() {
    let (_tmp, server) = start(&[]);
    let vector = text_embedding("a photo of a cat");
    let by_text = get(&server.addr, "/api/search?q=a%20photo%20of%20a%20cat&k=4").json();
    let by_vector = post_json(&server, "/api/search/vector", &serde_json::json!({"vector": vector, "k": 4})).json();
    assert_eq!(by_vector["hits"].as_array().unwrap().len(), 4);
    for (a, b) in by_text["hits"].as_array().unwrap().iter().zip(by_vector["hits"].as_array().unwrap()) {
        assert_eq!(a["id"], b["id"]);
        assert!((a["score"].as_f64().unwrap() - b["score"].as_f64().unwrap()).abs() < 1e-5, "{a} vs {b}");
    }
    // Paging, the score cut, date order and filters work as in /api/search.
    let paged = serde_json::json!({"vector": vector, "k": 2, "offset": 2, "sort": "score"});
    assert_eq!(hit_paths(&post_json(&server, "/api/search/vector", &paged).json()), hit_paths(&by_text)[2..4]);
    let filtered = serde_json::json!({"vector": vector, "k": 10, "q": "path:rome"});
    let rome = hit_paths(&post_json(&server, "/api/search/vector", &filtered).json());
    assert_eq!(rome.len(), 1);
    assert!(rome[0].ends_with("rocket.jpg"));
    let top_score = by_text["hits"][0]["score"].as_f64().unwrap();
    let cut = serde_json::json!({"vector": vector, "min_score": top_score - 1e-4});
    assert_eq!(post_json(&server, "/api/search/vector", &cut).json()["hits"].as_array().unwrap().len(), 1);
}

#[test]
fn a_bad_search_vector_gets_a_clear_json_4xx() {
    let (_tmp, server) = start(&[]);
    let vector = text_embedding("a photo of a cat");
    let doubled: Vec<f64> = vector.iter().map(|v| v * 2.0).collect();
    let mut infinite = vector.clone();
    infinite[3] = 1e39; // beyond f32
    let cases: Vec<(&str, String, u16, &str)> = vec![
        ("too short", serde_json::json!({"vector": vector[1..]}).to_string(), 400, "bad_query"),
        ("not normalised", serde_json::json!({"vector": doubled}).to_string(), 400, "bad_query"),
        ("beyond f32", serde_json::json!({"vector": infinite}).to_string(), 400, "bad_query"),
        ("NaN is no JSON", "{\"vector\": [NaN, 1]}".into(), 400, "bad_json"),
        ("strings in the vector", serde_json::json!({"vector": ["0.5"]}).to_string(), 400, "bad_vector"),
        ("no vector", serde_json::json!({"k": 3}).to_string(), 400, "bad_vector"),
        ("not an object", "[1, 2]".into(), 400, "bad_json"),
        ("not JSON", "vector=1,2".into(), 400, "bad_json"),
        ("misspelt field", serde_json::json!({"vector": vector, "kk": 3}).to_string(), 400, "bad_json"),
        ("k = 0", serde_json::json!({"vector": vector, "k": 0}).to_string(), 400, "bad_k"),
        ("fractional k", serde_json::json!({"vector": vector, "k": 2.5}).to_string(), 400, "bad_k"),
        ("bad sort", serde_json::json!({"vector": vector, "sort": "size"}).to_string(), 400, "bad_sort"),
        ("text in q", serde_json::json!({"vector": vector, "q": "dog"}).to_string(), 400, "bad_query"),
        ("a text to avoid in q", serde_json::json!({"vector": vector, "q": "-people"}).to_string(), 400, "bad_query"),
        ("huge body", format!("{{\"vector\": [{}1]}}", "0,".repeat(600_000)), 413, "payload_too_large"),
    ];
    for (what, body, status, code) in cases {
        let response = request(&server.addr, "POST", "/api/search/vector", Some("application/json"), body.as_bytes());
        assert_eq!(response.status, status, "{what}: {}", String::from_utf8_lossy(&response.body));
        let json = response.json();
        assert_eq!(json["error"]["code"], code, "{what}: {json}");
        assert!(json["error"]["message"].as_str().is_some_and(|m| m.len() > 10), "{what}: message");
    }
}

/// The JSON composed query answers as the same composition in `?q=` does; example pictures and
/// filters combine; bad bodies get a clear JSON 4xx.
#[test]
fn a_composed_query_in_json_answers_like_its_query_syntax_and_its_vector() {
    let (_tmp, server) = start(&[]);
    let in_q = get(&server.addr, "/api/search?q=2:a%20photo%20of%20a%20cat%20-dog&k=5").json();
    let body = serde_json::json!({"text": "2:a photo of a cat", "not": ["dog"], "k": 5});
    let in_json = post_json(&server, "/api/search", &body).json();
    assert_eq!(hit_paths(&in_json), hit_paths(&in_q));
    assert_eq!(in_json["understood"], in_q["understood"], "the same reading");
    assert_eq!(in_json["understood"]["away_from"], serde_json::json!(["dog"]));
    assert_eq!(in_json["hits"][0]["score"], in_q["hits"][0]["score"]);

    // Like a picture of the library, but "at night": the picture scores near 1 against a vector
    // that contains its own embedding, so it comes first; q filters as usual. (The arithmetic
    // itself is checked against computed vectors in tests/it/cli_search.rs.)
    let rocket = get(&server.addr, "/api/search?q=path:rome").json()["hits"][0]["id"].clone();
    let like = serde_json::json!({"text": "at night", "like": [rocket], "k": 5});
    let composed = post_json(&server, "/api/search", &like).json();
    assert_eq!(composed["hits"][0]["id"], rocket, "{composed}");
    assert_eq!(composed["hits"].as_array().unwrap().len(), 5);
    let pngs_only = serde_json::json!({"text": "at night", "like": [rocket], "q": "type:png"});
    let answer = post_json(&server, "/api/search", &pngs_only).json();
    let pngs = hit_paths(&answer);
    assert!(!pngs.is_empty() && pngs.iter().all(|p| p.ends_with(".png")), "{pngs:?}");
    // The reading says the filter of `q` too.
    assert_eq!(answer["understood"]["filters"], serde_json::json!(["type:png"]), "{answer}");

    let cases: Vec<(&str, serde_json::Value, u16, &str)> = vec![
        ("nothing to look for", serde_json::json!({"not": ["dog"]}), 400, "bad_query"),
        ("cancels out", serde_json::json!({"text": "dog", "not": ["dog"]}), 400, "bad_query"),
        ("like of strings", serde_json::json!({"text": "dog", "like": ["12"]}), 400, "bad_json"),
        ("not of numbers", serde_json::json!({"text": "dog", "not": [1]}), 400, "bad_json"),
        ("unknown field", serde_json::json!({"text": "dog", "weights": [2]}), 400, "bad_json"),
        ("bad weight", serde_json::json!({"text": "500:dog"}), 400, "bad_query"),
        ("text in q", serde_json::json!({"text": "dog", "q": "cat"}), 400, "bad_query"),
        ("unknown picture", serde_json::json!({"text": "dog", "like": [999_999]}), 404, "not_found"),
        ("bad k", serde_json::json!({"text": "dog", "k": 0}), 400, "bad_k"),
    ];
    for (what, body, status, code) in cases {
        let response = post_json(&server, "/api/search", &body);
        assert_eq!(response.status, status, "{what}: {}", String::from_utf8_lossy(&response.body));
        let json = response.json();
        assert_eq!(json["error"]["code"], code, "{what}: {json}");
    }
}

/// An uploaded picture with text in `q` ("like this picture, but at night") scores as the
/// normalised sum of the picture's and the text's unit embeddings, as `POST /api/search` does
/// for pictures of the library; filters in `q` still apply.
#[test]
fn an_upload_with_text_composes_like_an_example_picture() {
    let (_tmp, server) = start(&[]);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_imgsearch"))
        .args(["--device", "cpu", "embed", "--json", "--text", "at night", "--image"])
        .arg(image_path("rocket.jpg"))
        .arg("--model")
        .arg(common::model_dir("tiny-clip-b32-quickgelu"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let embedded: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let vector =
        |v: &serde_json::Value| -> Vec<f64> { v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect() };
    let picture = vector(embedded["images"].as_object().unwrap().values().next().unwrap());
    let text = vector(&embedded["texts"]["at night"]);
    let sum: Vec<f64> = picture.iter().zip(&text).map(|(p, t)| p + t).collect();
    let norm = sum.iter().map(|x| x * x).sum::<f64>().sqrt();
    let expected: Vec<f64> = sum.iter().map(|x| x / norm).collect();

    let photo = std::fs::read(image_path("rocket.jpg")).unwrap();
    let composed = request(&server.addr, "POST", "/api/search/image?q=at%20night&k=4", Some("image/jpeg"), &photo);
    assert_eq!(composed.status, 200, "{}", String::from_utf8_lossy(&composed.body));
    let composed = composed.json();
    assert_eq!(composed["understood"]["looking_for"][0]["text"], "at night");
    let by_vector = post_json(&server, "/api/search/vector", &serde_json::json!({"vector": expected, "k": 4})).json();
    assert_eq!(composed["hits"].as_array().unwrap().len(), 4);
    for (a, b) in composed["hits"].as_array().unwrap().iter().zip(by_vector["hits"].as_array().unwrap()) {
        assert_eq!(a["id"], b["id"]);
        assert!((a["score"].as_f64().unwrap() - b["score"].as_f64().unwrap()).abs() < 1e-4, "{a} vs {b}");
    }
    let pngs = request(&server.addr, "POST", "/api/search/image?q=at%20night%20type:png", Some("image/jpeg"), &photo);
    let pngs = hit_paths(&pngs.json());
    assert!(!pngs.is_empty() && pngs.iter().all(|p| p.ends_with(".png")), "{pngs:?}");
}

#[test]
fn a_port_already_in_use_says_so_and_what_to_do() {
    let tmp = tempfile::tempdir().unwrap();
    photo_tree(&tmp.path().join("photos"));
    index_photos(&tmp.path().join("photos"), &tmp.path().join("data"), &[]);
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_imgsearch"))
        .args(common::library_args(&tmp.path().join("data")))
        .args(["serve", "--addr", &addr])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("already in use") && stderr.contains("--addr"), "{stderr}");
}

/// Uploads held in memory at once are bounded (four per worker): clients that start uploads and
/// stall keep later uploads out with a clear 503, never the server's other routes, and once
/// they are gone uploads are taken again.
#[test]
fn stalled_uploads_hold_at_most_four_per_worker_and_searches_go_on() {
    use std::io::Write;
    let (_tmp, server) = start(&["--workers", "1", "--queue-timeout", "1"]);
    let stalled: Vec<std::net::TcpStream> = (0..4)
        .map(|_| {
            let mut stream = std::net::TcpStream::connect(&server.addr).unwrap();
            let head = format!(
                "POST /api/search/image HTTP/1.1\r\nHost: {}\r\nContent-Type: image/jpeg\r\n\
                 Content-Length: 1000000\r\n\r\nstart of a picture",
                server.addr
            );
            stream.write_all(head.as_bytes()).unwrap();
            stream
        })
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(500));
    let photo = std::fs::read(image_path("rocket.jpg")).unwrap();
    let turned_away = request(&server.addr, "POST", "/api/search/image", Some("image/jpeg"), &photo);
    assert_eq!(turned_away.status, 503, "{}", String::from_utf8_lossy(&turned_away.body));
    assert_eq!(turned_away.json()["error"]["code"], "busy");
    assert_eq!(get(&server.addr, "/api/search?q=cat").status, 200, "text searches are not held up");
    drop(stalled);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while request(&server.addr, "POST", "/api/search/image", Some("image/jpeg"), &photo).status != 200 {
        assert!(std::time::Instant::now() < deadline, "uploads stay refused after the stalled ones left");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

/// Many clients at once against one worker with a short queue: each gets its answer or a clear
/// 503 with Retry-After (never a hang or a dropped connection), and the server's threads stay
/// bounded however many wait.
#[test]
fn a_busy_server_answers_503_with_retry_after_and_keeps_its_threads_bounded() {
    let (_tmp, server) = start(&["--workers", "1", "--queue-timeout", "0.02"]);
    let idle_threads = server.threads();
    let upload = std::fs::read(image_path("astronaut.jpg")).unwrap();
    let statuses: Vec<(u16, Option<String>, String)> = std::thread::scope(|scope| {
        let clients: Vec<_> = (0..32)
            .map(|_| {
                scope.spawn(|| {
                    let (content_type, body) = multipart("image", "a.jpg", &upload);
                    let response = request(&server.addr, "POST", "/api/search/image", Some(&content_type), &body);
                    let code = if response.status == 200 {
                        String::new()
                    } else {
                        response.json()["error"]["code"].as_str().unwrap_or_default().to_string()
                    };
                    (response.status, response.header("retry-after"), code)
                })
            })
            .collect();
        let during = server.threads();
        assert!(during <= idle_threads + 12, "threads grew from {idle_threads} to {during} under load");
        clients.into_iter().map(|c| c.join().unwrap()).collect()
    });
    let ok = statuses.iter().filter(|(s, _, _)| *s == 200).count();
    let busy: Vec<_> = statuses.iter().filter(|(s, _, _)| *s == 503).collect();
    assert_eq!(ok + busy.len(), statuses.len(), "only answers or 503: {statuses:?}");
    assert!(ok >= 1, "someone must be served: {statuses:?}");
    assert!(!busy.is_empty(), "32 uploads at once on one worker with a 20 ms queue: some must be turned away");
    for (_, retry_after, code) in busy {
        assert_eq!((retry_after.as_deref(), code.as_str()), (Some("1"), "busy"));
    }
    assert!(server.threads() <= idle_threads + 12);
}

/// While `serve` holds a data folder (one process opens it at a time), `imgsearch search` asks
/// the server: a text and a picture, the same hits it answers, also where everyone else must
/// sign in. The secret it reads from `server.json` searches and changes nothing, and the file
/// goes with the server.
#[test]
fn the_command_line_searches_through_the_server_that_holds_the_data_folder() {
    if common::on_postgres() {
        return; // a PostgreSQL library opens in many processes at once
    }
    let (_tmp, data) = common::server::indexed_fixtures(&["astronaut.jpg", "coffee.png", "rocket.jpg"]);
    common::server::add_user(&data, "alice", "correct horse battery");
    let mut server = serve(&data, &[]);
    let cli = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_imgsearch")).args(common::library_args(&data)).args(args).output().unwrap()
    };
    let hits_of = |out: std::process::Output| -> serde_json::Value {
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let hits = hits_of(cli(&["search", "a photo of a cat type:png", "--json", "-k", "2"]));
    let announced: serde_json::Value =
        serde_json::from_slice(&std::fs::read(data.join("server.json")).unwrap()).unwrap();
    let bearer = format!("Bearer {}", announced["token"].as_str().unwrap());
    let asked =
        |method: &str, path: &str| request_with_headers(&server.addr, method, path, &[("Authorization", &bearer)], b"");
    let answer = asked("GET", "/api/search?q=a+photo+of+a+cat+type%3Apng&k=2");
    assert_eq!(answer.status, 200);
    // The same hits (the API writes a score's f32 in f64 digits, the command line in f32's).
    let scored = |hits: &serde_json::Value| -> Vec<(u64, f32)> {
        let hits = hits.as_array().unwrap().iter();
        hits.map(|h| (h["id"].as_u64().unwrap(), h["score"].as_f64().unwrap() as f32)).collect()
    };
    assert_eq!(scored(&answer.json()["hits"]), scored(&hits));
    assert_eq!(hits.as_array().unwrap().len(), 1, "{hits}");
    let coffee = image_path("coffee.png");
    let by_picture = hits_of(cli(&["search", "--image", coffee.to_str().unwrap(), "--json", "-k", "1"]));
    assert!(by_picture[0]["path"].as_str().unwrap().ends_with("/coffee.png"), "{by_picture}");
    // The server's answer to a bad query is the command's.
    let out = cli(&["search", "after:someday"]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("YYYY"));
    // The secret changes nothing; without it, sign-in is asked.
    assert_eq!(asked("DELETE", "/api/tokens/tok_00000000").status, 403);
    assert_eq!(get(&server.addr, "/api/search?q=cat").status, 401);
    // A `server.json` naming another server (a killed server's, whose address another now has)
    // is not believed: nothing is asked of it, and the folder is said to be in use.
    let (_other_tmp, other) = start(&[]);
    let written = std::fs::read(data.join("server.json")).unwrap();
    let impostor = serde_json::json!({"url": format!("http://{}", other.addr), "token": "not its secret"});
    std::fs::write(data.join("server.json"), impostor.to_string()).unwrap();
    let out = cli(&["search", "cat"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("in use by another imgsearch process"), "{stderr}");
    assert!(!stderr.contains("holds the data folder"), "{stderr}");
    std::fs::write(data.join("server.json"), written).unwrap();
    // Other commands name the server that holds the folder.
    let out = cli(&["list"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains(&format!("the server at http://{}", server.addr)));
    server.signal(libc::SIGTERM);
    assert!(server.exited_within(std::time::Duration::from_secs(20)).is_some_and(|status| status.success()));
    assert!(!data.join("server.json").exists());
    assert_eq!(hits_of(cli(&["search", "a photo of a cat type:png", "--json", "-k", "2"])), hits);
}

/// A query is read in the language `lang` names (a FLORES-200 code or a language tag), over GET
/// and POST and from the command line, on a model that reads texts by language (NLLB-CLIP):
/// each hit scores the cosine of open_clip's embeddings with that language set. A language the
/// model does not know, or a `lang` that names none, is a 400.
#[test]
fn a_query_is_read_in_the_language_it_names() {
    let model = "tiny-openclip-nllb";
    let reference = common::reference(model);
    let languages: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(common::fixtures().join(format!("reference/{model}_languages.json"))).unwrap(),
    )
    .unwrap();
    let text = "eine Katze am Strand";
    let german: Vec<f32> =
        serde_json::from_value(languages["languages"]["deu_Latn"]["text_embeds"][text].clone()).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let photos = tmp.path().join("photos");
    std::fs::create_dir_all(&photos).unwrap();
    // Lossless pictures, decoded here exactly as the reference decoded them.
    for name in ["astronaut_palette.png", "coffee.png", "chelsea_alpha.png", "camera_gray.png"] {
        std::fs::copy(image_path(name), photos.join(name)).unwrap();
    }
    let data = tmp.path().join("data");
    let status = Command::new(env!("CARGO_BIN_EXE_imgsearch"))
        .args(common::library_args(&data))
        .arg("index")
        .arg(&photos)
        .arg("--model")
        .arg(common::model_arg(model))
        .arg("--quiet")
        .status()
        .unwrap();
    assert!(status.success());
    let server = serve(&data, &[]);
    let scores = |json: serde_json::Value| -> Vec<(String, f32)> {
        let hits = json["hits"].as_array().unwrap_or_else(|| panic!("no hits: {json}"));
        let mut scores: Vec<(String, f32)> = hits
            .iter()
            .map(|hit| {
                let name = hit["path"].as_str().unwrap().rsplit('/').next().unwrap().to_string();
                (name, hit["score"].as_f64().unwrap() as f32)
            })
            .collect();
        scores.sort_by(|a, b| a.0.cmp(&b.0));
        scores
    };
    // The same scores, to f32 rounding (a composed query's embedding is normalised once more).
    let same = |a: &[(String, f32)], b: &[(String, f32)]| {
        a.len() == b.len() && a.iter().zip(b).all(|(a, b)| a.0 == b.0 && (a.1 - b.1).abs() < 1e-5)
    };
    let search = |lang: &str| get(&server.addr, &format!("/api/search?q=eine%20Katze%20am%20Strand{lang}"));
    let in_german = scores(search("&lang=de").json());
    assert_eq!(in_german.len(), 4);
    for (name, score) in &in_german {
        // Embeddings at cosine 0.9999 move a cosine with another unit vector by up to 0.014.
        let expected = common::cosine(&german, &reference.image_embeds[name]);
        assert!((score - expected).abs() < 0.015, "{name}: scored {score}, open_clip's cosine in German {expected}");
    }
    assert!(same(&scores(search("&lang=deu_Latn").json()), &in_german));
    let in_english = scores(search("").json());
    assert!(in_english.iter().zip(&in_german).any(|(e, g)| (e.1 - g.1).abs() > 1e-3), "{in_english:?}");
    let body = serde_json::json!({"text": text, "lang": "de-DE"}).to_string();
    let posted = request(&server.addr, "POST", "/api/search", Some("application/json"), body.as_bytes());
    let posted = scores(posted.json());
    assert!(same(&posted, &in_german), "{posted:?} {in_german:?}");
    let out = Command::new(env!("CARGO_BIN_EXE_imgsearch"))
        .args(common::library_args(&data))
        .args(["search", text, "--lang", "deu_Latn", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let from_cli =
        scores(serde_json::json!({"hits": serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()}));
    assert!(same(&from_cli, &in_german), "{from_cli:?} {in_german:?}");
    for (lang, says) in [("tlh_Latn", "deu_Latn"), ("de%20DE", "lang must be")] {
        let response = search(&format!("&lang={lang}"));
        assert_eq!(response.status, 400, "{lang}");
        assert_eq!(response.json()["error"]["code"], "bad_lang", "{lang}");
        assert!(response.json()["error"]["message"].as_str().unwrap().contains(says), "{lang}: {}", response.json());
    }
}
