//! The web UI in a real headless Chromium (Debian's `chromium`, driven by playwright-core from
//! tests/browser/; scripts/test.sh installs both): type a query and see result tiles, the address
//! follows the search, upload a picture and see its original first, open a result, similar images.

mod common;

use std::path::Path;
use std::process::Command;

use common::image_path;
use common::server::index_and_serve;

#[test]
fn the_web_ui_searches_by_text_and_by_uploaded_picture() {
    let browser_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    assert!(
        browser_dir.join("node_modules/playwright-core").is_dir(),
        "playwright-core is not installed: run scripts/test.sh (or `npm ci --prefix tests/browser`)"
    );
    let tmp = tempfile::tempdir().unwrap();
    let photos = tmp.path().join("photos");
    std::fs::create_dir_all(&photos).unwrap();
    for name in ["astronaut.jpg", "rocket.jpg", "coffee.png", "chelsea_progressive.jpg", "camera_gray.png"] {
        std::fs::copy(image_path(name), photos.join(name)).unwrap();
    }
    let server = index_and_serve(&photos, &tmp.path().join("data"), &[]);
    // Upload a recompressed copy (not byte-identical) of an indexed photo.
    let copy = tmp.path().join("upload.jpg");
    image::open(image_path("rocket.jpg")).unwrap().save(&copy).unwrap();
    let out = Command::new("node")
        .current_dir(&browser_dir)
        .arg("ui.mjs")
        .arg(format!("http://{}", server.addr))
        .arg(&copy)
        .arg("rocket.jpg")
        .output()
        .expect("node is needed for the browser test: run scripts/test.sh");
    assert!(
        out.status.success(),
        "browser test failed:\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
