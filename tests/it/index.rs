//! `imgsearch index` through the real binary on generated photo trees: messy inputs,
//! incremental re-runs, moves/copies/deletes, kill -9 and resume, a second process.

use crate::common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common::{image_path, model_dir, noise_photos};
use image::{ImageFormat, RgbImage};
use serde_json::Value;

const MODEL: &str = "tiny-clip-b32-quickgelu";

fn imgsearch(data: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_imgsearch"));
    cmd.args(common::library_args(data)).args(["--device", "cpu"]).env("HF_HUB_OFFLINE", "1");
    cmd
}

fn index(data: &Path, root: &Path, extra: &[&str]) -> Value {
    let out = imgsearch(data)
        .arg("index")
        .arg(root)
        .arg("--model")
        .arg(model_dir(MODEL))
        .arg("--json")
        .args(extra)
        .output()
        .unwrap();
    json_of(&out)
}

fn json_of(out: &Output) -> Value {
    assert!(out.status.success(), "exit {:?}\nstderr: {}", out.status, String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

/// `imgsearch index` in the background, quiet; small batches make it take a while.
fn spawn_index(data: &Path, root: &Path, batch_size: usize) -> std::process::Child {
    imgsearch(data)
        .arg("index")
        .arg(root)
        .arg("--model")
        .arg(model_dir(MODEL))
        .args(["--quiet", "--batch-size", &batch_size.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn listed_paths(data: &Path) -> Vec<String> {
    let list = json_of(&imgsearch(data).args(["list", "--json"]).output().unwrap());
    list.as_array().unwrap().iter().map(|e| e["path"].as_str().unwrap().to_string()).collect()
}

fn stats(data: &Path) -> Value {
    json_of(&imgsearch(data).args(["stats", "--json"]).output().unwrap())
}

fn errors_of(summary: &Value) -> Vec<(String, String)> {
    summary["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["path"].as_str().unwrap().to_string(), e["reason"].as_str().unwrap().to_string()))
        .collect()
}

#[test]
fn a_messy_tree_indexes_every_good_picture_and_reports_the_rest() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("photos");
    let data = tmp.path().join("data");
    std::fs::create_dir_all(root.join("nested/deeper")).unwrap();
    // Good pictures in every format we promise.
    let photo = image::open(image_path("chelsea_progressive.jpg")).unwrap();
    std::fs::copy(image_path("chelsea_progressive.jpg"), root.join("progressive.jpg")).unwrap();
    std::fs::copy(image_path("coffee_cmyk.jpg"), root.join("cmyk.jpg")).unwrap();
    std::fs::copy(image_path("camera_gray.jpg"), root.join("nested/gray.jpg")).unwrap();
    std::fs::copy(image_path("astronaut_palette.png"), root.join("nested/palette.png")).unwrap();
    std::fs::copy(image_path("chelsea_alpha.png"), root.join("nested/deeper/alpha.png")).unwrap();
    photo.to_rgb16().save(root.join("sixteen_bit.png")).unwrap();
    for (name, format) in [
        ("anim.gif", ImageFormat::Gif),
        ("lossless.webp", ImageFormat::WebP),
        ("old.bmp", ImageFormat::Bmp),
        ("scan.tiff", ImageFormat::Tiff),
    ] {
        photo.to_rgba8().save_with_format(root.join(name), format).unwrap();
    }
    // A JPEG without the .jpg extension: recognised by content.
    std::fs::copy(image_path("rocket.jpg"), root.join("rocket.download")).unwrap();
    // Non-UTF-8 file names, two that differ only in a byte that is not UTF-8.
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        std::fs::copy(image_path("coffee.png"), root.join(std::ffi::OsStr::from_bytes(b"caf\xe9 latin1.png"))).unwrap();
        std::fs::copy(image_path("astronaut.jpg"), root.join(std::ffi::OsStr::from_bytes(b"caf\xe8 latin1.jpg")))
            .unwrap();
    }
    // A PNG whose data is whole but whose end chunk is missing (Pillow reads it too).
    let palette = std::fs::read(image_path("astronaut_palette.png")).unwrap();
    assert!(palette.ends_with(b"IEND\xAE\x42\x60\x82"));
    std::fs::write(root.join("no_end.png"), &palette[..palette.len() - 12]).unwrap();
    let good = if cfg!(unix) { 14 } else { 12 };

    // Bad ones.
    let jpeg = std::fs::read(image_path("astronaut.jpg")).unwrap();
    std::fs::write(root.join("truncated.jpg"), &jpeg[..jpeg.len() / 3]).unwrap();
    let mut small = Vec::new();
    photo
        .resize_exact(200, 150, image::imageops::FilterType::Triangle)
        .to_rgb8()
        .write_to(&mut std::io::Cursor::new(&mut small), ImageFormat::Jpeg)
        .unwrap();
    // Cut short, and small enough to be decoded whole, by a decoder that fills in what is missing;
    // Pillow refuses both, even the one that lacks only its end marker.
    std::fs::write(root.join("small_cut.jpg"), &small[..small.len() * 3 / 5]).unwrap();
    assert!(small.ends_with(&[0xFF, 0xD9]));
    std::fs::write(root.join("no_end.jpg"), &small[..small.len() - 2]).unwrap();
    let png = std::fs::read(image_path("coffee.png")).unwrap();
    std::fs::write(root.join("truncated.png"), &png[..png.len() / 2]).unwrap();
    std::fs::write(root.join("empty.jpg"), b"").unwrap();
    std::fs::write(root.join("not_really.png"), b"plain text pretending").unwrap();
    // A PNG signature before garbage: damaged, but not cut short (though it lacks an end too).
    let garbage: Vec<u8> = (0..4000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    std::fs::write(root.join("garbage.png"), [&b"\x89PNG\r\n\x1a\n"[..], &garbage].concat()).unwrap();
    std::fs::write(root.join("notes.txt"), b"shopping list").unwrap(); // ignored quietly
    let huge = RgbImage::new(1200, 1000);
    huge.save(root.join("huge.png")).unwrap(); // 1.2 MP, over the --max-pixels given below
    std::fs::write(root.join("phone.heic"), b"\0\0\0\x18ftypheic\0\0\0\0mif1heic").unwrap();
    std::fs::write(root.join("phone.avif"), b"\0\0\0\x18ftypavif\0\0\0\0mif1avif").unwrap();
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink("/dev/zero", root.join("zero.jpg")).unwrap();
        std::os::unix::fs::symlink("..", root.join("nested/loop")).unwrap();
        assert!(Command::new("mkfifo").arg(root.join("pipe.jpg")).status().unwrap().success());
    }
    // Hidden folders are not indexed unless asked.
    std::fs::create_dir_all(root.join(".thumbnails")).unwrap();
    std::fs::copy(image_path("coffee.png"), root.join(".thumbnails/hidden.png")).unwrap();
    // Nor the thumbnails a Synology NAS keeps beside every photo.
    std::fs::create_dir_all(root.join("@eaDir/coffee.png")).unwrap();
    std::fs::copy(image_path("coffee.png"), root.join("@eaDir/coffee.png/SYNOPHOTO_THUMB_XL.png")).unwrap();

    let summary = index(&data, &root, &["--max-pixels", "1000000"]);
    assert_eq!(summary["indexed"], good, "{summary:#}");
    let errors = errors_of(&summary);
    for (name, why) in [
        ("truncated.jpg", "cut short"),
        ("small_cut.jpg", "cut short"),
        ("no_end.jpg", "cut short"),
        ("truncated.png", "cut short"),
        ("empty.jpg", "empty"),
        ("not_really.png", "not an image"),
        ("huge.png", "limit"),
        ("phone.heic", "libheif"),
        ("phone.avif", "libheif"),
        ("zero.jpg", "not a regular file"),
        ("pipe.jpg", "not a regular file"),
        ("loop", "loop"),
    ] {
        assert!(
            // The reason without the path, which names the file and so contains `name`.
            errors.iter().any(|(p, r)| p.ends_with(name) && r.replace(p.as_str(), "").contains(why)),
            "no error for {name} ({why}): {errors:#?}"
        );
    }
    assert!(!errors.iter().any(|(p, _)| p.ends_with("notes.txt")), "a text file is not an error");
    // What was read and refused is what the library records as skipped; what the walk passed over
    // unread (the pipe, the device, the loop) is counted apart.
    assert_eq!(summary["skipped"], stats(&data)["skipped"], "{summary:#}");
    #[cfg(unix)]
    assert_eq!(summary["not_read"], 3, "{summary:#}");
    let (_, garbage_why) = errors.iter().find(|(p, _)| p.ends_with("garbage.png")).expect("garbage.png is reported");
    assert!(!garbage_why.contains("cut short"), "{garbage_why}");
    let listed = listed_paths(&data);
    assert_eq!(listed.len(), good);
    assert!(!listed.iter().any(|p| p.contains(".thumbnails") || p.contains("@eaDir")));
    assert!(listed.iter().any(|p| p.ends_with("rocket.download")));
    // Told apart in listings: the bytes that are not UTF-8 written out, and given exactly in JSON
    // (a name holding a real `\x` would read the same).
    #[cfg(unix)]
    {
        for name in ["caf\\xE9 latin1.png", "caf\\xE8 latin1.jpg"] {
            assert!(listed.iter().any(|p| p.ends_with(name)), "{name} not in {listed:#?}");
        }
        let exact = |entries: &Value| -> Vec<Vec<u8>> {
            let bytes = entries.as_array().unwrap().iter().filter_map(|entry| entry["path_bytes"].as_array());
            bytes.map(|b| b.iter().map(|x| x.as_u64().unwrap() as u8).collect()).collect()
        };
        let listed = json_of(&imgsearch(&data).args(["list", "--json"]).output().unwrap());
        let found = json_of(&imgsearch(&data).args(["search", "name:latin1", "--json"]).output().unwrap());
        for (what, entries) in [("list", &listed), ("search", &found)] {
            let mut names: Vec<Vec<u8>> =
                exact(entries).iter().map(|b| b.rsplit(|&c| c == b'/').next().unwrap().to_vec()).collect();
            names.sort();
            assert_eq!(names, [b"caf\xe8 latin1.jpg".to_vec(), b"caf\xe9 latin1.png".to_vec()], "{what}: {entries:#}");
        }
    }

    // --hidden picks the hidden folders up; nothing else changes.
    let again = index(&data, &root, &["--max-pixels", "1000000", "--hidden"]);
    assert_eq!(again["indexed"], 0);
    assert_eq!(again["reused"], 2, "the hidden copies of coffee.png reuse its embedding: {again:#}");
    assert_eq!(again["unchanged"], good);

    let errors = json_of(&imgsearch(&data).args(["stats", "--errors", "--json"]).output().unwrap());
    assert!(errors.as_array().unwrap().iter().any(|e| e["path"].as_str().unwrap().ends_with("truncated.jpg")));

    // A file skipped for its run's limit, not for its content, is read again by the next run.
    let unlimited = index(&data, &root, &["--hidden"]);
    assert_eq!(unlimited["indexed"], 1, "huge.png, under the default limit: {unlimited:#}");
    assert!(!errors_of(&unlimited).iter().any(|(p, _)| p.ends_with("huge.png")), "{unlimited:#}");
}

#[test]
#[cfg(unix)]
fn a_file_reached_under_two_paths_is_indexed_once() {
    let tmp = tempfile::tempdir().unwrap();
    let (root, data) = (tmp.path().join("photos"), tmp.path().join("data"));
    std::fs::create_dir_all(root.join("2023/trip")).unwrap();
    std::fs::copy(image_path("rocket.jpg"), root.join("2023/trip/rocket.jpg")).unwrap();
    std::fs::copy(image_path("coffee.png"), root.join("2023/coffee.png")).unwrap();
    // A symbolic link to a folder elsewhere in the same tree, first in name order: its real path
    // wins all the same.
    std::os::unix::fs::symlink(root.join("2023"), root.join("0-favourites")).unwrap();
    // A hard link, one file under two names (as a bind mount shows it): the first name wins.
    std::fs::hard_link(root.join("2023/coffee.png"), root.join("2023/coffee-again.png")).unwrap();
    let root = std::fs::canonicalize(root).unwrap();
    let expected =
        |names: &[&str]| -> Vec<String> { names.iter().map(|n| root.join(n).to_string_lossy().into_owned()).collect() };

    let summary = index(&data, &root, &[]);
    assert_eq!((summary["indexed"].as_u64(), summary["skipped"].as_u64()), (Some(2), Some(0)), "{summary:#}");
    assert_eq!(listed_paths(&data), expected(&["2023/coffee-again.png", "2023/trip/rocket.jpg"]));
    let again = index(&data, &root, &[]);
    assert_eq!((again["unchanged"].as_u64(), again["indexed"].as_u64()), (Some(2), Some(0)), "{again:#}");

    // Without the winning name the other one takes over, its embedding reused.
    std::fs::remove_file(root.join("2023/coffee-again.png")).unwrap();
    let after = index(&data, &root, &[]);
    assert_eq!((after["reused"].as_u64(), after["removed"].as_u64()), (Some(1), Some(1)), "{after:#}");
    assert_eq!(listed_paths(&data), expected(&["2023/coffee.png", "2023/trip/rocket.jpg"]));
}

#[test]
fn re_runs_do_only_the_work_that_changed() {
    let tmp = tempfile::tempdir().unwrap();
    let (root, data) = (tmp.path().join("photos"), tmp.path().join("data"));
    let photos = noise_photos(&root, 12);
    let first = index(&data, &root, &[]);
    assert_eq!(first["indexed"], 12);

    let unchanged = index(&data, &root, &[]);
    assert_eq!((unchanged["indexed"].as_u64(), unchanged["unchanged"].as_u64()), (Some(0), Some(12)), "{unchanged:#}");
    // A file whose time changed but not its content (`touch`, a copy that did not keep times)
    // is read again, and unchanged: not moved or copied.
    let later = std::time::SystemTime::now() + Duration::from_secs(60);
    std::fs::File::options().write(true).open(&photos[5]).unwrap().set_modified(later).unwrap();
    let touched = index(&data, &root, &[]);
    assert_eq!(
        (touched["indexed"].as_u64(), touched["reused"].as_u64(), touched["unchanged"].as_u64()),
        (Some(0), Some(0), Some(12)),
        "{touched:#}"
    );

    // Delete one, move one, copy one, change one.
    std::fs::remove_file(&photos[0]).unwrap();
    std::fs::create_dir_all(root.join("moved")).unwrap();
    std::fs::rename(&photos[1], root.join("moved/renamed.png")).unwrap();
    std::fs::copy(&photos[2], root.join("copy.png")).unwrap();
    let changed = image::open(&photos[3]).unwrap().rotate180();
    std::thread::sleep(Duration::from_millis(20)); // a distinct mtime
    changed.save(&photos[3]).unwrap();
    let ids_before = json_of(&imgsearch(&data).args(["list", "--json"]).output().unwrap());

    let summary = index(&data, &root, &[]);
    assert_eq!(summary["indexed"], 1, "only the changed picture is embedded again: {summary:#}");
    assert_eq!(summary["reused"], 2, "moved and copied files reuse their embeddings: {summary:#}");
    assert_eq!(summary["removed"], 2, "the deleted file and the moved file's old path: {summary:#}");
    let listed = listed_paths(&data);
    assert_eq!(listed.len(), 12);
    assert!(!listed.iter().any(|p| p.ends_with("photo_0000.png") || p.ends_with("photo_0001.png")));
    assert!(listed.iter().any(|p| p.ends_with("moved/renamed.png")) && listed.iter().any(|p| p.ends_with("copy.png")));
    assert_ne!(ids_before, json_of(&imgsearch(&data).args(["list", "--json"]).output().unwrap()));

    let s = stats(&data);
    assert_eq!(s["images"], 12);
    assert_eq!(s["vectors_live"], 12);
    assert_eq!(s["text_documents"], 12);
    assert_eq!(s["cpu_kernels"], imgsearch::model::kernels::isa().name(), "which kernels this machine runs");
    // For people: when, how long, what changed; no raw JSON.
    let plain = imgsearch(&data).arg("stats").output().unwrap();
    let text = String::from_utf8_lossy(&plain.stdout);
    let last_run = text.lines().find(|l| l.starts_with("last run:")).expect("a last-run line");
    assert!(!last_run.contains('{'), "{last_run}");
    for part in [" UTC, ", "1 indexed, 2 reused (moved or copied), ", "2 removed", root.to_str().unwrap()] {
        assert!(last_run.contains(part), "{part:?} missing from {last_run:?}");
    }
}

/// A rescan looks files up in the library a batch at a time (512): across batches every
/// unchanged file stays unchanged, every broken one is reported again, and what changed is found.
#[test]
fn a_rescan_of_more_files_than_one_lookup_batch_does_only_the_work_that_changed() {
    let tmp = tempfile::tempdir().unwrap();
    let (root, data) = (tmp.path().join("photos"), tmp.path().join("data"));
    let sources = noise_photos(&tmp.path().join("sources"), 4);
    let path = |i: usize| root.join(format!("f{}", i / 300)).join(format!("p{i:04}.png"));
    for i in 0..1_200 {
        std::fs::create_dir_all(path(i).parent().unwrap()).unwrap();
        std::fs::copy(&sources[i % 4], path(i)).unwrap();
    }
    for folder in 0..4 {
        std::fs::write(root.join(format!("f{folder}/broken.jpg")), b"not a jpeg").unwrap();
    }
    let first = index(&data, &root, &[]);
    assert_eq!(first["scanned"], 1_204, "{first:#}");
    assert_eq!(errors_of(&first).len(), 4, "{first:#}");
    assert_eq!(stats(&data)["images"], 1_200);

    let again = index(&data, &root, &[]);
    assert_eq!(
        (again["unchanged"].as_u64(), again["indexed"].as_u64(), again["reused"].as_u64()),
        (Some(1_200), Some(0), Some(0)),
        "{again:#}"
    );
    assert_eq!(errors_of(&again), errors_of(&first), "broken files are reported on every run");

    std::fs::remove_file(path(100)).unwrap();
    image::open(path(650)).unwrap().rotate180().save(path(650)).unwrap();
    let changed = index(&data, &root, &[]);
    assert_eq!(
        (changed["unchanged"].as_u64(), changed["indexed"].as_u64(), changed["removed"].as_u64()),
        (Some(1_198), Some(1), Some(1)),
        "{changed:#}"
    );
}

/// The model is loaded only when a picture needs embedding: an unchanged re-run, and one where
/// files were only copied, work with the checkpoint's weights gone; a new picture then gets a
/// clear error.
#[test]
fn runs_with_nothing_to_embed_never_load_the_model() {
    let tmp = tempfile::tempdir().unwrap();
    let (root, data, model) = (tmp.path().join("photos"), tmp.path().join("data"), tmp.path().join("model"));
    std::fs::create_dir_all(&model).unwrap();
    for entry in std::fs::read_dir(model_dir(MODEL)).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), model.join(entry.file_name())).unwrap();
    }
    let photos = noise_photos(&root, 4);
    let run = || imgsearch(&data).arg("index").arg(&root).arg("--model").arg(&model).arg("--json").output().unwrap();
    assert_eq!(json_of(&run())["indexed"], 4);

    std::fs::write(model.join("model.safetensors"), b"not a checkpoint any more").unwrap();
    let unchanged = json_of(&run());
    assert_eq!(unchanged["unchanged"], 4, "{unchanged:#}");
    std::fs::copy(&photos[0], root.join("copy.png")).unwrap();
    let copied = json_of(&run());
    assert_eq!((copied["reused"].as_u64(), copied["indexed"].as_u64()), (Some(1), Some(0)), "{copied:#}");

    std::fs::copy(image_path("rocket.jpg"), root.join("rocket.jpg")).unwrap();
    let out = run();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("model.safetensors"), "{stderr}");
}

/// `--dtype bf16` through `index`: refused before any work where neither AMX nor AVX512_BF16
/// runs (here forced with IMGSEARCH_ISA=avx512); where one does it indexes, and the index
/// answers an f32 search.
#[test]
fn index_with_dtype_bf16_is_searchable_in_f32_or_refused_up_front() {
    let tmp = tempfile::tempdir().unwrap();
    let (root, data) = (tmp.path().join("photos"), tmp.path().join("data"));
    noise_photos(&root, 5);
    let bf16 = |isa: &str| {
        imgsearch(&data)
            .env("IMGSEARCH_ISA", isa)
            .args(["--dtype", "bf16", "index"])
            .arg(&root)
            .arg("--model")
            .arg(model_dir(MODEL))
            .arg("--json")
            .output()
            .unwrap()
    };
    let refused = bf16("avx512");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("--dtype f32") && refused.stdout.is_empty(), "{stderr}");
    if imgsearch::model::kernels::bf16_layout().is_none() {
        return;
    }
    assert_eq!(json_of(&bf16("amx"))["indexed"], 5);
    let hits = json_of(&imgsearch(&data).args(["search", "noise", "--json"]).output().unwrap());
    assert_eq!(hits.as_array().map(Vec::len), Some(5), "{hits:#}");
}

fn search_json(data: &Path, extra: &[&str]) -> Vec<(String, f64)> {
    let hits = json_of(&imgsearch(data).args(["search", "--json", "-k", "5", "noise"]).args(extra).output().unwrap());
    hits.as_array()
        .unwrap()
        .iter()
        .map(|h| (h["path"].as_str().unwrap().to_string(), h["score"].as_f64().unwrap()))
        .collect()
}

/// A second model builds its embeddings beside the first one's, which answer searches until
/// the new ones are complete; then searches use the new model, the old can still be asked
/// for, and removed.
#[test]
fn a_second_model_is_built_beside_the_first_and_searches_switch_when_it_is_complete() {
    let tmp = tempfile::tempdir().unwrap();
    let (root, data) = (tmp.path().join("photos"), tmp.path().join("data"));
    noise_photos(&root, 6);
    index(&data, &root, &[]);
    let first = model_dir(MODEL).display().to_string();
    let second = model_dir("tiny-clip-p14-gelu").display().to_string();
    let with_first = search_json(&data, &[]);
    assert_eq!(with_first.len(), 5);

    // A server answers from the first model while the second one's embeddings are built (on
    // the embedded backend it holds the data folder: the new space is a folder of its own) ...
    let server = common::server::serve(&data, &[]);
    let served_by = |addr: &str| {
        let hits = common::http::get(addr, "/api/search?q=noise&k=5").json();
        hits["hits"].as_array().unwrap().iter().map(|h| h["score"].as_f64().unwrap()).collect::<Vec<_>>()
    };
    let served = || served_by(&server.addr);
    let scores = |hits: &[(String, f64)]| hits.iter().map(|(_, score)| *score).collect::<Vec<_>>();
    // HTTP and the CLI print an f32 score with different digits: equal to 1e-5 (not rounded to
    // it, which splits two prints of one score that lies on a rounding boundary).
    let same_scores = |a: &[f64], b: &[f64]| a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() <= 1e-5);
    let second_index = imgsearch(&data)
        .arg("index")
        .arg(&root)
        .args(["--json", "--batch-size", "1", "--model", &second])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (served_first, cli_first) = (served(), scores(&with_first));
    assert!(same_scores(&served_first, &cli_first), "{served_first:?} over HTTP, {cli_first:?} from the CLI");
    let summary = json_of(&second_index.wait_with_output().unwrap());
    assert_eq!(summary["indexed"], 6, "every picture embedded by the second model: {summary:#}");
    // ... and moves on to the second once it is complete (it looks every few seconds; on the
    // embedded backend it then holds the second space, so the CLI asks after it stopped).
    let deadline = Instant::now() + Duration::from_secs(60);
    while common::http::get(&server.addr, "/api/stats").json()["model"]["model"] != second.as_str() {
        assert!(Instant::now() < deadline, "the server still serves the first model");
        std::thread::sleep(Duration::from_millis(250));
    }
    let served_after = served();
    drop(server);
    let with_second = search_json(&data, &["--model", &second]);
    let cli_second = scores(&with_second);
    assert!(same_scores(&served_after, &cli_second), "{served_after:?} over HTTP, {cli_second:?} from the CLI");

    let s = stats(&data);
    assert_eq!(s["model"]["model"], second, "searches use the newest complete model: {s:#}");
    let models: Vec<(&str, bool)> = s["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["model"].as_str().unwrap(), m["searched"].as_bool().unwrap()))
        .collect();
    assert_eq!(models, [(first.as_str(), false), (second.as_str(), true)]);
    assert_eq!(search_json(&data, &[]), with_second);
    assert_ne!(with_second, with_first, "another model, other scores");
    assert_eq!(
        search_json(&data, &["--model", &first]),
        with_first,
        "the first model's embeddings are kept as they were"
    );

    // A re-run without --model keeps to the model searches use: nothing to embed.
    let again = json_of(&imgsearch(&data).arg("index").arg(&root).arg("--json").output().unwrap());
    assert_eq!((again["indexed"].as_u64(), again["unchanged"].as_u64()), (Some(0), Some(6)), "{again:#}");

    // A server told which model to serve stays on it.
    let pinned = common::server::serve(&data, &["--model", &first]);
    let pinned_first = served_by(&pinned.addr);
    assert!(same_scores(&pinned_first, &cli_first), "{pinned_first:?} over HTTP, {cli_first:?} from the CLI");
    drop(pinned);

    let out = imgsearch(&data).args(["models", "--remove", &first]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(stats(&data)["models"].as_array().unwrap().len(), 1);
    assert_eq!(search_json(&data, &[]), with_second);
    let out = imgsearch(&data).args(["search", "noise", "--model", &first]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("index --model"), "{stderr}");

    // The first model can come back: it is built anew beside the second.
    let back = json_of(&imgsearch(&data).arg("index").arg(&root).args(["--json", "--model", &first]).output().unwrap());
    assert_eq!(back["indexed"], 6, "{back:#}");
    assert_eq!(search_json(&data, &[]), with_first, "the newest complete model is searched");
}

#[test]
fn kill_9_at_any_moment_then_rerun_gives_a_complete_consistent_index() {
    let tmp = tempfile::tempdir().unwrap();
    let (root, data) = (tmp.path().join("photos"), tmp.path().join("data"));
    let photos = noise_photos(&root, 150);
    for delay_ms in [60u64, 180, 400, 700] {
        let mut child = spawn_index(&data, &root, 4);
        std::thread::sleep(Duration::from_millis(delay_ms));
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
    }
    let summary = index(&data, &root, &[]);
    assert_eq!(summary["skipped"], 0, "{summary:#}");
    let listed = listed_paths(&data);
    let mut unique = listed.clone();
    unique.dedup();
    assert_eq!(unique.len(), photos.len(), "every photo exactly once");
    assert_eq!(listed.len(), photos.len());
    let s = stats(&data);
    assert_eq!(s["vectors_live"], photos.len(), "no orphan or missing vectors: {s:#}");
    assert_eq!(s["text_documents"], photos.len(), "text index agrees: {s:#}");
    // And a forced repair keeps it that way.
    assert!(imgsearch(&data).arg("repair").output().unwrap().status.success());
    assert_eq!(stats(&data)["vectors_live"], photos.len());
}

#[test]
fn an_emptied_root_keeps_its_pictures_unless_told_they_were_deleted() {
    let tmp = tempfile::tempdir().unwrap();
    let (root, data) = (tmp.path().join("share"), tmp.path().join("data"));
    let photos = noise_photos(&root, 3);
    index(&data, &root, &[]);
    // The share is not mounted: its mount point is an empty folder.
    std::fs::rename(&root, tmp.path().join("elsewhere")).unwrap();
    std::fs::create_dir(&root).unwrap();
    let unmounted = index(&data, &root, &[]);
    assert_eq!(unmounted["removed"], 0, "{unmounted:#}");
    assert_eq!(listed_paths(&data).len(), photos.len());
    let errors = errors_of(&unmounted);
    assert!(
        errors.iter().any(|(_, why)| why.contains("3 pictures") && why.contains("--remove-from-empty")),
        "{errors:#?}"
    );
    // Deleted on purpose: said so, they go.
    let emptied = index(&data, &root, &["--remove-from-empty"]);
    assert_eq!(emptied["removed"], 3, "{emptied:#}");
    assert!(listed_paths(&data).is_empty());
}

/// A root moved elsewhere: `index` of its new place reuses the embeddings and says how to take
/// the old place out; `forget` takes out its pictures and skipped files in every model's space,
/// and no later run or search sees them again. A folder that holds nothing is an error.
#[test]
fn a_moved_root_is_forgotten_in_every_model_space() {
    let tmp = tempfile::tempdir().unwrap();
    let (old, new, data) = (tmp.path().join("old"), tmp.path().join("new"), tmp.path().join("data"));
    noise_photos(&old.join("2023"), 4);
    std::fs::write(old.join("broken.jpg"), b"not a picture").unwrap();
    index(&data, &old, &[]);
    let second = model_dir("tiny-clip-p14-gelu").display().to_string();
    let out = imgsearch(&data).arg("index").arg(&old).args(["--quiet", "--model", &second]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    std::fs::rename(&old, &new).unwrap();
    let out = imgsearch(&data).arg("index").arg(&new).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let advice = format!("`imgsearch forget {}`", old.display());
    assert!(String::from_utf8_lossy(&out.stderr).contains(&advice), "{}", String::from_utf8_lossy(&out.stderr));
    let paths_in = |model: &str| -> Vec<String> {
        let hits = json_of(
            &imgsearch(&data).args(["search", "--json", "-k", "100", "noise", "--model", model]).output().unwrap(),
        );
        let mut paths: Vec<String> =
            hits.as_array().unwrap().iter().map(|h| h["path"].as_str().unwrap().into()).collect();
        paths.sort();
        paths
    };
    let first = model_dir(MODEL).display().to_string();
    assert_eq!(paths_in(&second).len(), 8, "the old and the new place");
    // `stats` says which roots are gone.
    let roots = |data: &Path| -> Vec<(String, bool)> {
        let roots = stats(data)["roots"].as_array().unwrap().clone();
        let mut roots: Vec<(String, bool)> =
            roots.iter().map(|r| (r["path"].as_str().unwrap().to_string(), r["present"].as_bool().unwrap())).collect();
        roots.sort();
        roots
    };
    let (old_path, new_path) = (old.display().to_string(), new.display().to_string());
    assert_eq!(roots(&data), [(new_path.clone(), true), (old_path.clone(), false)]);
    let text = imgsearch(&data).arg("stats").output().unwrap();
    assert!(String::from_utf8_lossy(&text.stdout).contains("gone from this computer"), "{text:?}");

    let out = imgsearch(&data).args(["forget", "--json"]).arg(&old).output().unwrap();
    assert_eq!(
        json_of(&out),
        serde_json::json!([{"folder": old.display().to_string(), "pictures": 4, "skipped": 1,
                            "roots": [old.display().to_string()]}])
    );
    for model in [&first, &second] {
        let paths = paths_in(model);
        assert!(paths.iter().all(|p| p.starts_with(&*new.to_string_lossy())), "{model}: {paths:#?}");
    }
    assert_eq!(paths_in(&second).len(), 4);
    assert_eq!(paths_in(&first).len(), 0, "the first model never saw the new place");
    assert_eq!(stats(&data)["skipped"], 1, "the new place's broken file only");
    assert_eq!(roots(&data), [(new_path, true)]);
    let out = imgsearch(&data).arg("index").arg(&new).output().unwrap();
    assert!(!String::from_utf8_lossy(&out.stderr).contains("forget"), "{}", String::from_utf8_lossy(&out.stderr));

    let out = imgsearch(&data).arg("forget").arg(&old).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("holds nothing under") && stderr.contains(&*new.to_string_lossy()),
        "{stderr}"
    );

    // A named root's files, given as `list` shows them (`trips:/a`), or the root by its name.
    let trips = tmp.path().join("trips");
    noise_photos(&trips.join("a"), 2);
    noise_photos(&trips.join("b"), 1);
    let named = format!("trips={}", trips.display());
    let out = imgsearch(&data).args(["index", "--quiet", &named]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let forgot = |what: &str| json_of(&imgsearch(&data).args(["forget", "--json", what]).output().unwrap());
    assert_eq!(forgot("trips:/a")[0]["pictures"], 2);
    let whole = forgot("trips");
    assert_eq!((whole[0]["folder"].as_str(), whole[0]["pictures"].as_u64()), (Some("trips:"), Some(1)), "{whole}");
}

#[test]
fn damaged_vector_and_text_indexes_are_rebuilt_from_the_catalog() {
    if common::on_postgres() {
        return; // the data folder's own files
    }
    let tmp = tempfile::tempdir().unwrap();
    let (root, data) = (tmp.path().join("photos"), tmp.path().join("data"));
    let photos = noise_photos(&root, 6);
    index(&data, &root, &[]);
    let before = search_json(&data, &[]);
    // Cut short and overwritten, as a full disk or a bad copy leaves them.
    let graph = data.join("vectors/graph.bin");
    let head = std::fs::read(&graph).unwrap()[..100].to_vec();
    std::fs::write(&graph, head).unwrap();
    std::fs::write(data.join("text/meta.json"), "garbage").unwrap();
    assert_eq!(search_json(&data, &[]), before);
    let s = stats(&data);
    assert_eq!(s["vectors_live"], photos.len(), "{s:#}");
    assert_eq!(s["text_documents"], photos.len(), "{s:#}");
    let out = imgsearch(&data).args(["search", "--json", "name:photo_0003"]).output().unwrap();
    assert_eq!(json_of(&out).as_array().unwrap().len(), 1, "the text index answers");
}

/// The embedded data folder admits one process at a time and says so; a PostgreSQL library
/// admits any number, so there a second process reads while the indexer writes.
#[test]
fn a_second_process_on_a_busy_library_gets_a_clear_error_or_an_answer() {
    let tmp = tempfile::tempdir().unwrap();
    let (root, data) = (tmp.path().join("photos"), tmp.path().join("data"));
    noise_photos(&root, 200);
    let mut first = spawn_index(&data, &root, 2);
    let deadline = Instant::now() + Duration::from_secs(30);
    if common::on_postgres() {
        let (mut answered_meanwhile, mut made) = (0, false);
        while Instant::now() < deadline && first.try_wait().unwrap().is_none() {
            let out = imgsearch(&data).args(["stats", "--json"]).output().unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            // Until the indexer has made the library, a reader is told there is none.
            if !made && !out.status.success() && stderr.contains("there is no library") {
                continue;
            }
            assert!(out.status.success(), "{stderr}");
            made = true;
            answered_meanwhile += usize::from(first.try_wait().unwrap().is_none());
        }
        assert!(first.wait().unwrap().success());
        assert!(answered_meanwhile > 0, "the indexer finished before a second process could be tried");
        assert_eq!(stats(&data)["images"], 200);
        return;
    }
    // Let the indexer take the folder first (a probe that came first would lock *it* out).
    while !data.join("text").exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut saw_lock = false;
    while Instant::now() < deadline && first.try_wait().unwrap().is_none() {
        let out = imgsearch(&data).arg("stats").output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() {
            assert!(stderr.contains("in use by another imgsearch process"), "unclear error: {stderr}");
            saw_lock = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let status = first.wait().unwrap();
    assert!(status.success());
    assert!(saw_lock, "the indexer finished before a second process could be tried");
    assert_eq!(stats(&data)["images"], 200);
}

/// `NAME=PATH`: a root's pictures are stored under its name, so another host that mounts the
/// same share elsewhere (here: the folder moved, mtimes kept) finds every picture unchanged.
#[test]
fn a_named_root_is_the_same_library_wherever_it_is_mounted() {
    let tmp = tempfile::tempdir().unwrap();
    let (here, there) = (tmp.path().join("mnt/nas/photos"), tmp.path().join("Volumes/photos"));
    noise_photos(&here.join("2023"), 6);
    let data = tmp.path().join("data");
    let named = |mount: &Path| std::path::PathBuf::from(format!("photos={}", mount.display()));
    let first = index(&data, &named(&here), &[]);
    assert_eq!(first["indexed"], 6, "{first}");
    let paths = listed_paths(&data);
    assert_eq!(paths.len(), 6);
    assert!(paths.iter().all(|p| p.starts_with("photos:/2023/")), "{paths:?}");

    std::fs::create_dir_all(there.parent().unwrap()).unwrap();
    std::fs::rename(&here, &there).unwrap();
    let other_host = index(&data, &named(&there), &[]);
    assert_eq!(
        (&other_host["unchanged"], &other_host["indexed"], &other_host["reused"], &other_host["removed"]),
        (&Value::from(6), &Value::from(0), &Value::from(0), &Value::from(0)),
        "{other_host}"
    );
    assert_eq!(listed_paths(&data), paths);

    // `--root-name` is the same as NAME=PATH; a bad name is refused before any work.
    let again = index(&data, &there, &["--root-name", "photos"]);
    assert_eq!(again["unchanged"], 6, "{again}");
    // A folder inside it, given by its local path, is the named root's: not a root of its own.
    let inside = index(&data, &there.join("2023"), &[]);
    assert_eq!(inside["unchanged"], 6, "{inside}");
    assert_eq!(listed_paths(&data), paths);
    let roots = stats(&data)["roots"].clone();
    assert_eq!(roots.as_array().unwrap().len(), 1, "{roots:#}");
    assert_eq!(roots[0]["name"], "photos", "{roots:#}");
    let bad = imgsearch(&data).arg("index").arg("my photos=/x").output().unwrap();
    assert!(String::from_utf8_lossy(&bad.stderr).contains("cannot name a root"), "{bad:?}");
}

/// An `index --model NEW` whose weights do not load leaves no space for NEW behind: the library
/// keeps listing, and searching, the model it had.
#[test]
fn a_new_model_whose_weights_do_not_load_leaves_no_model_space() {
    let tmp = tempfile::tempdir().unwrap();
    let (photos, data) = (tmp.path().join("photos"), tmp.path().join("data"));
    noise_photos(&photos, 2);
    index(&data, &photos, &[]);
    let broken = tmp.path().join("broken-model");
    std::fs::create_dir_all(&broken).unwrap();
    for file in ["config.json", "preprocessor_config.json", "tokenizer.json"] {
        std::fs::copy(model_dir("tiny-clip-p14-gelu").join(file), broken.join(file)).unwrap();
    }
    let weights = std::fs::read(model_dir("tiny-clip-p14-gelu").join("pytorch_model.bin")).unwrap();
    std::fs::write(broken.join("pytorch_model.bin"), &weights[..weights.len() / 2]).unwrap();
    let out = imgsearch(&data).arg("index").arg(&photos).arg("--model").arg(&broken).output().unwrap();
    assert!(!out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stats = stats(&data);
    assert_eq!(stats["models"].as_array().unwrap().len(), 1, "{stats:#}");
    assert_eq!(stats["model"]["model"], model_dir(MODEL).display().to_string(), "{stats:#}");
}

/// A picture replaced by a pipe, or a link whose target was deleted (a photo linked from a drive
/// that was emptied), is gone: reported, with where the link pointed, and taken out. An
/// unreadable folder keeps its pictures (what is in it cannot be known).
#[cfg(unix)]
#[test]
fn a_picture_replaced_by_a_pipe_or_a_dangling_link_is_taken_out() {
    let tmp = tempfile::tempdir().unwrap();
    let (photos, data) = (tmp.path().join("photos"), tmp.path().join("data"));
    let files = noise_photos(&photos, 3);
    let outside = tmp.path().join("elsewhere.png");
    std::fs::copy(&files[2], &outside).unwrap();
    std::os::unix::fs::symlink(&outside, photos.join("linked.png")).unwrap();
    assert_eq!(index(&data, &photos, &[])["indexed"], 4);
    std::fs::remove_file(&files[0]).unwrap();
    assert!(Command::new("mkfifo").arg(&files[0]).status().unwrap().success());
    std::fs::remove_file(&outside).unwrap();
    let summary = index(&data, &photos, &[]);
    assert_eq!(summary["removed"], 2, "{summary:#}");
    let errors = errors_of(&summary);
    assert!(errors.iter().any(|(p, r)| p.ends_with("linked.png") && r.contains("elsewhere.png")), "{errors:#?}");
    assert_eq!(listed_paths(&data).len(), 2);
}

/// A write the catalog refuses (here: a damaged record it must read to take a picture out) is an
/// error that ends the command, never a wait for good on the text index's writer.
#[test]
fn a_write_the_catalog_refuses_ends_with_an_error_not_a_hang() {
    if common::on_postgres() {
        return; // the embedded catalog's own files
    }
    let tmp = tempfile::tempdir().unwrap();
    let (photos, data) = (tmp.path().join("photos"), tmp.path().join("data"));
    noise_photos(&photos, 3);
    index(&data, &photos, &[]);
    {
        let catalog = sled::open(data.join("catalog")).unwrap();
        let images = catalog.open_tree("images").unwrap();
        for entry in images.iter() {
            images.insert(entry.unwrap().0, b"{damaged".to_vec()).unwrap();
        }
        catalog.flush().unwrap();
    }
    let out = common::output_within(
        imgsearch(&data).arg("forget").arg(&photos),
        Duration::from_secs(60),
        "`forget` waits for good on a refused write",
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("damaged"), "{}", String::from_utf8_lossy(&out.stderr));
}

/// A picture over the pixel limit for its kind of pixel (16-bit RGBA takes 8 bytes where
/// `--max-pixels` counts 8-bit RGB's 3) says which `--max-pixels` takes it, and that one does:
/// the limit used to be named, and raising `--max-pixels` to it was not enough.
#[test]
fn a_picture_over_the_pixel_limit_says_which_limit_takes_it() {
    let tmp = tempfile::tempdir().unwrap();
    let (root, data) = (tmp.path().join("photos"), tmp.path().join("data"));
    std::fs::create_dir_all(&root).unwrap();
    let deep = image::ImageBuffer::from_pixel(800, 800, image::Rgba([30000u16, 20000, 10000, 65535]));
    deep.save(root.join("deep.png")).unwrap();
    let summary = index(&data, &root, &["--max-pixels", "1000000"]);
    let errors = errors_of(&summary);
    // 640,000 pixels of 8 bytes: the least --max-pixels whose limit reaches them is
    // ceil(640,000 × (8 + 3) / 6).
    assert!(errors.iter().any(|(_, why)| why.contains("--max-pixels 1173334 or more")), "{errors:#?}");
    assert_eq!(index(&data, &root, &["--max-pixels", "1173334"])["indexed"], 1);
}

/// A root that does not exist says so, and what to do if it moved; a data folder that cannot be
/// made says why once (the chain of causes repeated the message's own).
#[test]
fn a_missing_root_or_an_unwritable_data_folder_says_what_went_wrong_once() {
    let tmp = tempfile::tempdir().unwrap();
    let gone = tmp.path().join("moved-away");
    let out = imgsearch(&tmp.path().join("data")).arg("index").arg(&gone).arg("--model").arg(model_dir(MODEL)).output();
    let stderr = String::from_utf8_lossy(&out.as_ref().unwrap().stderr).into_owned();
    assert_eq!(out.unwrap().status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("does not exist") && stderr.contains("imgsearch forget"), "{stderr}");
    if common::on_postgres() {
        return; // the data folder is the embedded store's
    }
    let file = tmp.path().join("a-file");
    std::fs::write(&file, b"").unwrap();
    let out = imgsearch(&file.join("data"))
        .arg("index")
        .arg(tmp.path())
        .arg("--model")
        .arg(model_dir(MODEL))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("a-file/data") && stderr.matches("Not a directory").count() == 1, "{stderr}");
}

/// A disk without room to write on safely refuses a run before anything is written, and says
/// what to do; the library is untouched, and takes the run once there is room. (Keeping more
/// free than the disk has stands for a full disk: sled, written on one, lost its whole catalog.)
#[test]
fn a_disk_without_room_refuses_the_run_and_keeps_the_library() {
    if common::on_postgres() {
        return; // the data folder's own disk
    }
    let tmp = tempfile::tempdir().unwrap();
    let (photos, data) = (tmp.path().join("photos"), tmp.path().join("data"));
    noise_photos(&photos, 3);
    index(&data, &photos, &[]);
    std::fs::copy(image_path("coffee.png"), photos.join("coffee.png")).unwrap();
    let model = model_dir(MODEL);
    let commands: [Vec<&std::ffi::OsStr>; 3] = [
        vec!["index".as_ref(), photos.as_os_str(), "--model".as_ref(), model.as_os_str()],
        vec!["forget".as_ref(), photos.as_os_str()],
        vec!["search".as_ref(), "a cat".as_ref()],
    ];
    for args in commands {
        let out = imgsearch(&data).env("IMGSEARCH_MIN_FREE_MB", "1000000000").args(&args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains("MiB free") && stderr.contains("stopped before writing"), "{args:?}: {stderr}");
    }
    assert_eq!(listed_paths(&data).len(), 3);
    assert_eq!(index(&data, &photos, &[])["indexed"], 1);
}

/// A folder indexed inside a root already indexed is not a root of its own (`--watch` would walk
/// it twice); a root indexed around folders indexed before takes their place.
#[test]
fn folders_inside_an_indexed_root_are_not_roots_of_their_own() {
    let tmp = tempfile::tempdir().unwrap();
    let photos = tmp.path().join("photos");
    noise_photos(&photos.join("2023"), 3);
    noise_photos(&photos.join("2024"), 2);
    let data = tmp.path().join("data");
    let roots = || -> Vec<String> {
        let roots = stats(&data)["roots"].as_array().unwrap().clone();
        roots.iter().map(|r| r["path"].as_str().unwrap().to_string()).collect()
    };
    index(&data, &photos.join("2023"), &[]);
    index(&data, &photos.join("2024"), &[]);
    assert_eq!(roots().len(), 2);
    let around = index(&data, &photos, &[]);
    assert_eq!((&around["unchanged"], &around["indexed"]), (&Value::from(5), &Value::from(0)), "{around}");
    assert_eq!(roots(), [photos.display().to_string()]);
    assert_eq!(index(&data, &photos.join("2023"), &[])["unchanged"], 3);
    assert_eq!(roots(), [photos.display().to_string()]);
    assert_eq!(listed_paths(&data).len(), 5);
}

/// Naming a folder that was indexed without a name re-keys its pictures: nothing is embedded
/// again and no picture is listed twice.
#[test]
fn naming_an_indexed_folder_keeps_its_embeddings() {
    let tmp = tempfile::tempdir().unwrap();
    let photos = tmp.path().join("photos");
    noise_photos(&photos, 5);
    let data = tmp.path().join("data");
    assert_eq!(index(&data, &photos, &[])["indexed"], 5);
    let renamed = index(&data, &std::path::PathBuf::from(format!("holiday={}", photos.display())), &[]);
    assert_eq!(
        (&renamed["indexed"], &renamed["reused"], &renamed["removed"]),
        (&Value::from(0), &Value::from(5), &Value::from(5)),
        "{renamed}"
    );
    let paths = listed_paths(&data);
    assert_eq!(paths.len(), 5);
    assert!(paths.iter().all(|p| p.starts_with("holiday:/")), "{paths:?}");
}

/// File names may hold newlines, tabs and terminal escapes: plain output keeps one line per
/// picture and prints them as escapes; `--json` keeps the names exact.
#[test]
fn plain_output_keeps_one_line_per_picture_whatever_the_file_names() {
    let tmp = tempfile::tempdir().unwrap();
    let (root, data) = (tmp.path().join("photos"), tmp.path().join("data"));
    let names = ["two\nlines.png", "tab\there.png", "red\u{1b}[31m.png"];
    let photos = noise_photos(&root, names.len());
    for (photo, name) in photos.iter().zip(names) {
        std::fs::rename(photo, root.join(name)).unwrap();
    }
    index(&data, &root, &[]);
    let mut exact = listed_paths(&data);
    exact.sort();
    let mut expected: Vec<String> = names.iter().map(|n| root.join(n).display().to_string()).collect();
    expected.sort();
    assert_eq!(exact, expected);
    for command in [&["list"][..], &["search", "noise"], &["search", "-k", "3", "name:png"]] {
        let out = imgsearch(&data).args(command).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let stdout = String::from_utf8(out.stdout).unwrap();
        assert_eq!(stdout.lines().count(), names.len(), "{command:?}: {stdout}");
        assert!(!stdout.contains('\u{1b}'), "{command:?}: {stdout}");
        for escaped in ["two\\nlines.png", "tab\\there.png", "red\\u{1b}[31m.png"] {
            assert!(stdout.contains(escaped), "{command:?}: {stdout}");
        }
    }
}

/// A 1 MB PNG whose colour profile inflates to a gigabyte is indexed (its profile dropped)
/// within bounded memory: the run gets 2 GB of address space and one thread, of which a plain
/// run takes about 1.2 GB and the inflated profile alone would take more than the rest.
#[test]
fn a_png_whose_colour_profile_inflates_to_a_gigabyte_is_indexed_in_bounded_memory() {
    use std::io::Write;
    use std::os::unix::process::CommandExt;
    let tmp = tempfile::tempdir().unwrap();
    let (root, data) = (tmp.path().join("photos"), tmp.path().join("data"));
    std::fs::create_dir_all(&root).unwrap();
    let mut profile = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..1024 {
        profile.write_all(&zeros).unwrap();
    }
    let mut iccp = b"bomb\0\0".to_vec();
    iccp.extend(profile.finish().unwrap());
    let picture = noise_photos(&tmp.path().join("plain"), 1).remove(0);
    let png = std::fs::read(&picture).unwrap();
    let bomb = common::png_with_chunk_after_header(&png, &common::png_chunk(b"iCCP", &iccp));
    std::fs::write(root.join("profile.png"), bomb).unwrap();

    let mut command = imgsearch(&data);
    command.args(["--threads", "1", "index", "--json", "--model"]).arg(model_dir(MODEL)).arg(&root);
    // SAFETY: setrlimit is async-signal-safe, as pre_exec requires.
    unsafe {
        command.pre_exec(|| {
            let limit = libc::rlimit { rlim_cur: 2 << 30, rlim_max: 2 << 30 };
            match libc::setrlimit(libc::RLIMIT_AS, &limit) {
                0 => Ok(()),
                _ => Err(std::io::Error::last_os_error()),
            }
        });
    }
    let summary = json_of(&command.output().unwrap());
    assert_eq!((summary["indexed"].as_u64(), summary["skipped"].as_u64()), (Some(1), Some(0)), "{summary:#}");
}

/// A file whose path is longer than the library can keep (PostgreSQL's index on paths: 2,000
/// bytes) is left out and reported; the rest of the run is stored. A data folder keeps it.
#[test]
fn a_path_longer_than_the_library_keeps_is_reported_and_the_rest_indexed() {
    let tmp = tempfile::tempdir().unwrap();
    let (root, data) = (tmp.path().join("photos"), tmp.path().join("data"));
    noise_photos(&root, 2);
    let deep = (0..9).fold(root.clone(), |dir, i| dir.join(format!("{i}{}", "d".repeat(239))));
    let long = noise_photos(&deep, 1).remove(0);
    assert!(long.as_os_str().len() > 2_000);
    let summary = index(&data, &root, &[]);
    let errors = errors_of(&summary);
    if common::on_postgres() {
        assert_eq!((summary["indexed"].as_u64(), errors.len()), (Some(2), 1), "{summary:#}");
        assert!(errors[0].0 == long.display().to_string() && errors[0].1.contains("up to 2000 bytes"), "{errors:?}");
    } else {
        assert_eq!((summary["indexed"].as_u64(), errors.len()), (Some(3), 0), "{summary:#}");
    }
}

/// `serve --watch` rescans the roots the library records. One forgotten while its rescan ran
/// (another host's `forget`) is not recorded again by that rescan, and what the rescan stored
/// under it goes too; a root still recorded is rescanned as before.
#[test]
fn a_rescan_of_a_root_forgotten_meanwhile_leaves_it_forgotten() {
    use imgsearch::ingest::pipeline::{self, IndexOptions};
    use imgsearch::store::roots::{Mounts, Root};
    use imgsearch::store::Location;
    let tmp = tempfile::tempdir().unwrap();
    let (kept, forgotten, data) = (tmp.path().join("kept"), tmp.path().join("forgotten"), tmp.path().join("data"));
    noise_photos(&kept, 2);
    noise_photos(&forgotten, 3);
    index(&data, &kept, &[]);
    let store = common::on_postgres().then(|| common::database_for(&data));
    let mut library = imgsearch::store::open(&Location::new(data.clone(), store, None).unwrap()).unwrap();
    let spec = imgsearch::model::ModelSpec::resolve(&model_dir(MODEL).display().to_string()).unwrap();
    let rescan = |library: &mut Box<dyn imgsearch::store::Library>, root: &Path| {
        let options = IndexOptions {
            roots: vec![Root { name: None, path: root.to_path_buf() }],
            mounts: Mounts::default(),
            hidden: false,
            batch_size: 4,
            max_pixels: imgsearch::ingest::decode::DEFAULT_MAX_PIXELS,
            max_file_size: pipeline::DEFAULT_MAX_FILE_SIZE,
            progress: false,
            remove_from_empty: false,
            rescan: true,
        };
        pipeline::run(&mut **library, &spec, None, &candle_core::Device::Cpu, &options).unwrap()
    };
    // The forgotten root is not among the recorded ones when its rescan ends.
    let read = rescan(&mut library, &forgotten);
    assert_eq!(read.indexed + read.reused, 3, "the rescan did read it");
    let recorded: Vec<_> = library.indexed_roots().unwrap().iter().map(|r| r.path.clone()).collect();
    assert_eq!(recorded, [kept.canonicalize().unwrap()]);
    assert_eq!(library.image_count(), 2, "what it stored under the forgotten root went too");
    assert_eq!(rescan(&mut library, &kept).unchanged, 2);
    assert_eq!(library.indexed_roots().unwrap().len(), 1);
}
