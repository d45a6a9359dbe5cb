//! `imgsearch export` / `import`: a library through Parquet and back, and embeddings made
//! elsewhere (only `path` and `embedding` columns) turned into a searchable library.

use crate::common;

use std::path::{Path, PathBuf};

use crate::common::server::index_photos;
use crate::common::{image_path, model_dir};
use serde_json::Value;

use crate::common::cli::{imgsearch, json, run};

fn photos(dir: &Path) -> PathBuf {
    let photos = dir.join("photos");
    std::fs::create_dir_all(photos.join("rome")).unwrap();
    for name in ["astronaut.jpg", "coffee.png", "chelsea_progressive.jpg", "camera_gray.png"] {
        std::fs::copy(image_path(name), photos.join(name)).unwrap();
    }
    std::fs::copy(image_path("rocket.jpg"), photos.join("rome/rocket.jpg")).unwrap();
    photos
}

/// (path, score) of every hit, scores rounded to 6 digits.
fn ranked(hits: &Value) -> Vec<(String, String)> {
    hits.as_array()
        .unwrap()
        .iter()
        .map(|h| (h["path"].as_str().unwrap().to_string(), format!("{:.6}", h["score"].as_f64().unwrap_or(-9.0))))
        .collect()
}

#[test]
fn export_then_import_into_a_fresh_library_gives_identical_search_results() {
    let tmp = tempfile::tempdir().unwrap();
    let photos = photos(tmp.path());
    // A Latin-1 name from an old archive (not UTF-8): its exact bytes make the round trip.
    let latin1: &std::ffi::OsStr = std::os::unix::ffi::OsStrExt::from_bytes(b"caf\xe9.jpg");
    std::fs::copy(image_path("camera_gray.jpg"), photos.join(latin1)).unwrap();
    let original = tmp.path().join("original");
    index_photos(&photos, &original, &[]);
    let file = tmp.path().join("library.parquet");
    run(imgsearch(&original).arg("export").arg(&file).arg("--quiet"));

    // The model comes from the file's metadata: no --model.
    let copy = tmp.path().join("copy");
    let summary = json(imgsearch(&copy).arg("import").arg(&file).arg("--json"));
    assert_eq!((summary["rows"].as_u64(), summary["imported"].as_u64()), (Some(6), Some(6)), "{summary}");

    for query in [vec!["search", "a photo of a cat"], vec!["search", "rocket path:rome"], vec!["search", "type:png"]] {
        let before = json(imgsearch(&original).args(&query).args(["-k", "5", "--json"]));
        let after = json(imgsearch(&copy).args(&query).args(["-k", "5", "--json"]));
        assert_eq!(ranked(&after), ranked(&before), "{query:?}");
        // The metadata came along: dates, cameras, sizes.
        let fields = |hits: &Value| -> Vec<Value> {
            hits.as_array().unwrap().iter().map(|h| serde_json::json!([h["width"], h["height"], h["taken"]])).collect()
        };
        assert_eq!(fields(&after), fields(&before));
    }
    let similar = |data: &Path| json(imgsearch(data).arg("similar").arg(photos.join("coffee.png")).args(["--json"]));
    assert_eq!(ranked(&similar(&copy)), ranked(&similar(&original)));

    // Indexing the same folder afterwards embeds nothing: every file is known.
    let index = json(imgsearch(&copy).arg("index").arg(&photos).args(["--json"]));
    assert_eq!((index["unchanged"].as_u64(), index["indexed"].as_u64()), (Some(6), Some(0)), "{index}");

    // Importing again changes nothing (an interrupted import is simply re-run).
    let again = json(imgsearch(&copy).arg("import").arg(&file).arg("--json"));
    assert_eq!((again["unchanged"].as_u64(), again["imported"].as_u64()), (Some(6), Some(0)), "{again}");
}

#[test]
fn export_writes_through_a_symbolic_link_and_never_replaces_a_device_or_a_pipe() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    index_photos(&photos(tmp.path()), &data, &[]);
    let (target, link) = (tmp.path().join("target.parquet"), tmp.path().join("link.parquet"));
    std::os::unix::fs::symlink(&target, &link).unwrap();
    run(imgsearch(&data).arg("export").arg(&link).arg("--quiet"));
    assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink(), "the link is kept");
    assert!(std::fs::metadata(&target).unwrap().len() > 0, "the file it names was written");

    let fifo = tmp.path().join("fifo.parquet");
    common::succeeds(std::process::Command::new("mkfifo").arg(&fifo));
    for special in [fifo.as_path(), tmp.path()] {
        let out = imgsearch(&data).arg("export").arg(special).arg("--quiet").output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && stderr.contains("not a regular file"), "{stderr}");
    }
    assert!(!std::fs::metadata(&fifo).unwrap().is_file(), "the pipe is still a pipe");
}

#[test]
fn embeddings_computed_elsewhere_become_a_searchable_library() {
    let tmp = tempfile::tempdir().unwrap();
    let photos = photos(tmp.path());
    let model = model_dir("tiny-clip-b32-quickgelu");
    let files: Vec<PathBuf> = ["astronaut.jpg", "coffee.png", "rome/rocket.jpg"]
        .iter()
        .map(|n| photos.join(n).canonicalize().unwrap())
        .collect();
    let mut embed = imgsearch(tmp.path());
    embed.args(["embed", "--json", "--model"]).arg(&model);
    for file in &files {
        embed.arg("--image").arg(file);
    }
    let embedded = json(&mut embed);
    let rows: Vec<(String, Vec<f32>)> = files
        .iter()
        .map(|f| {
            let e = &embedded["images"][f.to_str().unwrap()];
            // Scaled: import normalises.
            (f.display().to_string(), e.as_array().unwrap().iter().map(|v| 3.0 * v.as_f64().unwrap() as f32).collect())
        })
        .collect();
    // Rows with no path or a relative one name no file: skipped, and said why.
    // A path given twice: the first row is kept.
    let nowhere = [
        ("".to_string(), rows[0].1.clone()),
        ("relative/x.jpg".to_string(), rows[0].1.clone()),
        (rows[1].0.clone(), rows[2].1.clone()),
    ];
    let rows_and_nowhere: Vec<(String, Vec<f32>)> = rows.iter().cloned().chain(nowhere).collect();
    let file = tmp.path().join("foreign.parquet");
    common::parquet::write_foreign(&file, &rows_and_nowhere);

    // Without a model named anywhere, an empty library cannot know its space.
    let data = tmp.path().join("data");
    let refused = imgsearch(&data).arg("import").arg(&file).output().unwrap();
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--model"));

    let summary = json(imgsearch(&data).arg("import").arg(&file).arg("--model").arg(&model).arg("--json"));
    assert_eq!((summary["imported"].as_u64(), summary["skipped"].as_u64()), (Some(3), Some(3)), "{summary}");
    assert!(summary.to_string().contains("relative/x.jpg: not an absolute path"), "{summary}");
    assert!(
        summary.to_string().contains("row 6: ") && summary.to_string().contains("the same path as row 2"),
        "{summary}"
    );
    // Searching by a picture's own embedding finds it first, with cosine 1: stored normalised.
    let astronaut: Vec<f32> = rows[0].1.iter().map(|v| v / 3.0).collect();
    let query = tmp.path().join("astronaut.json");
    std::fs::write(&query, serde_json::to_vec(&astronaut).unwrap()).unwrap();
    let hits = json(imgsearch(&data).arg("search").arg("--vector").arg(&query).args(["--json"]));
    assert_eq!(hits[0]["path"].as_str(), Some(files[0].to_str().unwrap()));
    assert!((hits[0]["score"].as_f64().unwrap() - 1.0).abs() < 1e-5, "{hits}");
    // The file on this machine supplied size, type and dimensions; filters work on them.
    assert_eq!((hits[0]["width"].as_u64(), hits[0]["height"].as_u64()), (Some(512), Some(512)));
    assert_eq!(
        paths_of(&json(imgsearch(&data).args(["search", "type:png", "--json"]))),
        vec![files[1].display().to_string()]
    );

    // The same file imported again changes nothing; a row with a new embedding replaces its
    // picture's (here astronaut.jpg given coffee.png's).
    let again = json(imgsearch(&data).arg("import").arg(&file).arg("--json"));
    assert_eq!((again["unchanged"].as_u64(), again["imported"].as_u64()), (Some(3), Some(0)), "{again}");
    let mut changed = rows.clone();
    changed[0].1 = rows[1].1.clone();
    let changed_file = tmp.path().join("changed.parquet");
    common::parquet::write_foreign(&changed_file, &changed);
    let update = json(imgsearch(&data).arg("import").arg(&changed_file).arg("--json"));
    assert_eq!((update["unchanged"].as_u64(), update["imported"].as_u64()), (Some(2), Some(1)), "{update}");
    let coffee: Vec<f32> = rows[1].1.iter().map(|v| v / 3.0).collect();
    std::fs::write(&query, serde_json::to_vec(&coffee).unwrap()).unwrap();
    let hits = json(imgsearch(&data).args(["search", "-k", "5", "--json", "--vector"]).arg(&query));
    let mut near_one: Vec<&str> = hits
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| (h["score"].as_f64().unwrap() - 1.0).abs() < 1e-5)
        .map(|h| h["path"].as_str().unwrap())
        .collect();
    near_one.sort();
    assert_eq!(near_one, [files[0].to_str().unwrap(), files[1].to_str().unwrap()], "{hits}");
    assert_eq!(hits.as_array().unwrap().len(), 3, "replaced, not added: {hits}");
    let restored = json(imgsearch(&data).arg("import").arg(&file).arg("--json"));
    assert_eq!(restored["imported"].as_u64(), Some(1), "{restored}");

    // Rows of pictures this machine does not have carry no content hash: they are not all
    // "exact copies" of each other.
    let elsewhere: Vec<(String, Vec<f32>)> =
        rows.iter().enumerate().map(|(i, (_, e))| (format!("/archive/elsewhere/{i}.jpg"), e.clone())).collect();
    let file_elsewhere = tmp.path().join("elsewhere.parquet");
    common::parquet::write_foreign(&file_elsewhere, &elsewhere);
    let archive = tmp.path().join("archive");
    run(imgsearch(&archive).arg("import").arg(&file_elsewhere).arg("--model").arg(&model));
    let groups = json(imgsearch(&archive).args(["duplicates", "--json"]));
    assert_eq!(groups["groups"], serde_json::json!([]), "{groups}");

    // Indexing the folder embeds only the two pictures the file did not have.
    let index = json(imgsearch(&data).arg("index").arg(&photos).args(["--json", "--model"]).arg(&model));
    assert_eq!((index["unchanged"].as_u64(), index["indexed"].as_u64()), (Some(3), Some(2)), "{index}");

    // Into a library of another model, the file's embeddings become a model space of their own
    // beside that model's, and searches use them (the newest complete model).
    let other = tmp.path().join("other");
    index_photos(&photos, &other, &[]);
    let p14 = tmp.path().join("p14");
    std::fs::create_dir_all(&p14).unwrap();
    let indexed = imgsearch(&p14)
        .arg("index")
        .arg(&photos)
        .arg("--model")
        .arg(model_dir("tiny-clip-p14-gelu"))
        .arg("--quiet")
        .status()
        .unwrap();
    assert!(indexed.success());
    let beside = json(imgsearch(&p14).arg("import").arg(&file).arg("--model").arg(&model).arg("--json"));
    assert_eq!(beside["imported"], 3, "{beside}");
    let stats = json(imgsearch(&p14).args(["stats", "--json"]));
    assert_eq!(stats["model"]["model"], model.display().to_string(), "{stats}");
    assert_eq!(stats["models"].as_array().unwrap().len(), 2, "{stats}");
    // `export` writes one model's embeddings, and names the others it leaves out.
    let out = imgsearch(&p14).arg("export").arg(tmp.path().join("newest.parquet")).output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("exported 3 pictures") && stderr.contains("also holds"), "{stdout} {stderr}");
    let p14_model = model_dir("tiny-clip-p14-gelu").display().to_string();
    let out = imgsearch(&p14)
        .arg("export")
        .arg(tmp.path().join("p14.parquet"))
        .args(["--model", &p14_model])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("exported 5 pictures"), "{out:?}");
    // Without --model, the rows' dimension is checked against the library's.
    let short: Vec<(String, Vec<f32>)> = rows.iter().map(|(p, e)| (p.clone(), e[1..].to_vec())).collect();
    common::parquet::write_foreign(&file, &short);
    let wrong_dim = imgsearch(&other).arg("import").arg(&file).output().unwrap();
    assert_eq!(wrong_dim.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&wrong_dim.stderr).contains("another model"));
}

/// Rows and files no export writes: places that are none (NaN, out of range) are left out of
/// the records, which stay readable; a row naming a pipe does not wait on it; a file of another
/// model that imports nothing leaves no model space to take the library's searches.
#[test]
fn hostile_rows_and_files_leave_the_library_whole_and_searchable() {
    let tmp = tempfile::tempdir().unwrap();
    let model = model_dir("tiny-clip-b32-quickgelu");
    let data = tmp.path().join("data");
    let embedding = |seed: usize| -> Vec<f32> {
        let raw: Vec<f32> = (0..48).map(|i| ((i * 7 + seed * 13) % 17) as f32 - 8.0).collect();
        let norm = raw.iter().map(|v| v * v).sum::<f32>().sqrt();
        raw.iter().map(|v| v / norm).collect()
    };
    let rows: Vec<(String, Vec<f32>)> = (0..3).map(|i| (format!("/archive/place_{i}.jpg"), embedding(i))).collect();
    let file = tmp.path().join("places.parquet");
    common::parquet::write_with_places(&file, &rows, &[(f64::NAN, f64::NAN), (91.0, 181.0), (45.0, 7.0)]);
    let summary = json(imgsearch(&data).arg("import").arg(&file).arg("--model").arg(&model).arg("--json"));
    assert_eq!(summary["imported"], 3, "{summary}");
    let query = tmp.path().join("query.json");
    std::fs::write(&query, serde_json::to_vec(&embedding(0)).unwrap()).unwrap();
    let hits = json(imgsearch(&data).args(["search", "-k", "10", "--json", "--vector"]).arg(&query));
    assert_eq!(hits.as_array().unwrap().len(), 3, "every record reads back: {hits}");
    run(imgsearch(&data).arg("export").arg(tmp.path().join("out.parquet")));
    let near = json(imgsearch(&data).args(["search", "near:45.0,7.0", "--json"]));
    assert_eq!(paths_of(&near), ["/archive/place_2.jpg"], "only the real place is kept");

    // A path with `..` (a second name for a picture) is skipped; an empty `path_bytes` leaves
    // the row's `path`.
    let rows = vec![
        ("/archive/../archive/place_2.jpg".to_string(), embedding(3)),
        ("/archive/named_by_path.jpg".to_string(), embedding(4)),
    ];
    let odd = tmp.path().join("odd.parquet");
    let path_bytes: arrow_array::ArrayRef =
        std::sync::Arc::new(arrow_array::BinaryArray::from(vec![None, Some(&b""[..])]));
    common::parquet::write_with_columns(
        &odd,
        &rows,
        vec![(arrow_schema::Field::new("path_bytes", arrow_schema::DataType::Binary, true), path_bytes)],
    );
    let summary = json(imgsearch(&data).arg("import").arg(&odd).arg("--json"));
    assert_eq!((summary["imported"].as_u64(), summary["skipped"].as_u64()), (Some(1), Some(1)), "{summary}");
    assert!(summary.to_string().contains("`.` or `..`"), "{summary}");

    // A row naming a pipe: nothing is read from it (an open would wait for a writer for good).
    let fifo = tmp.path().join("pipe.jpg");
    assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let piped = tmp.path().join("pipe.parquet");
    common::parquet::write_foreign(&piped, &[(fifo.display().to_string(), embedding(5))]);
    let import = common::output_within(
        imgsearch(&data).arg("import").arg(&piped).arg("--json"),
        std::time::Duration::from_secs(60),
        "the import waits on the pipe",
    );
    assert!(import.status.success(), "{}", String::from_utf8_lossy(&import.stderr));

    // Another model's file whose rows are all skipped: no space is left for that model.
    let nowhere: Vec<(String, Vec<f32>)> = vec![("relative/x.jpg".into(), embedding(1))];
    let other = tmp.path().join("other.parquet");
    common::parquet::write_foreign(&other, &nowhere);
    let out = imgsearch(&data)
        .arg("import")
        .arg(&other)
        .arg("--model")
        .arg(model_dir("tiny-clip-p14-gelu"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stats = json(imgsearch(&data).args(["stats", "--json"]));
    assert_eq!(stats["models"].as_array().unwrap().len(), 1, "{stats}");
    assert_eq!(stats["model"]["model"], model.display().to_string(), "{stats}");

    // `migrate` never writes into the data folder it reads (an empty --to is the current folder).
    let inside = data.join("models/copy").display().to_string();
    let targets = if common::on_postgres() { vec![String::new()] } else { vec![String::new(), inside] };
    for to in targets {
        let out = imgsearch(&data).args(["migrate", "--to", &to]).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && stderr.contains("--to"), "{to:?}: {stderr}");
    }
    assert!(!data.join("models/copy").exists());
}

fn paths_of(hits: &Value) -> Vec<String> {
    hits.as_array().unwrap().iter().map(|h| h["path"].as_str().unwrap().to_string()).collect()
}

/// A loader's batch may change one path several times (a file skipped, then read): the changes
/// apply in order, on every backend (PostgreSQL writes a batch a few statements at a time).
#[test]
fn a_batch_that_changes_a_path_several_times_applies_its_changes_in_order() {
    use imgsearch::store::{Change, Location, SkipRecord};
    let tmp = tempfile::tempdir().unwrap();
    let photos = photos(tmp.path());
    let data = tmp.path().join("data");
    index_photos(&photos, &data, &[]);
    let store = common::on_postgres().then(|| common::database_for(&data));
    let mut library = imgsearch::store::open(&Location::new(data.clone(), store, None).unwrap()).unwrap();
    let at = |name: &str| photos.join(name).canonicalize().unwrap();
    let key = |name: &str| at(name).to_str().unwrap().as_bytes().to_vec();
    let record = |library: &dyn imgsearch::store::Library, name: &str| library.image_at(&key(name)).unwrap();
    let (astronaut, coffee, rocket) = (
        record(&*library, "astronaut.jpg").unwrap(),
        record(&*library, "coffee.png").unwrap(),
        record(&*library, "rome/rocket.jpg").unwrap(),
    );
    let astronaut = library.image(astronaut.id).unwrap().unwrap();
    let coffee = library.image(coffee.id).unwrap().unwrap();
    let titled = |record: &imgsearch::store::ImageRecord, title: &str, id| {
        let mut changed = record.clone();
        (changed.id, changed.facts.title) = (id, Some(title.to_string()));
        Change::Upsert(changed)
    };
    let skip = |path: &std::path::Path| SkipRecord {
        path: imgsearch::store::StoredPath::from_path(path),
        size: 1,
        mtime_ns: 1,
        reason: "unreadable".into(),
        ignored: false,
        retry: false,
    };
    let (first, last, coffee_again) = (library.new_id().unwrap(), library.new_id().unwrap(), library.new_id().unwrap());
    let broken = photos.join("broken.jpg");
    library
        .apply(&[
            titled(&astronaut, "first", first),
            Change::Skip(skip(&at("astronaut.jpg"))),
            titled(&astronaut, "last", last),
            Change::Remove(coffee.path.clone()),
            Change::Skip(skip(&broken)),
            titled(&coffee, "back", coffee_again),
            Change::Tag { id: rocket.id, tags: vec!["launch".into()] },
        ])
        .unwrap();
    let astronaut_now = record(&*library, "astronaut.jpg").unwrap();
    assert_eq!((astronaut_now.id, astronaut_now.facts.title.as_deref()), (last, Some("last")));
    assert_eq!(library.skipped_at(&key("astronaut.jpg")).unwrap(), None, "read after it was skipped");
    let coffee_now = record(&*library, "coffee.png").unwrap();
    assert_eq!((coffee_now.id, coffee_now.facts.title.as_deref()), (coffee_again, Some("back")));
    assert_eq!(library.image(coffee_again).unwrap().unwrap().embedding, coffee.embedding);
    assert_eq!(library.skipped_at(broken.to_str().unwrap().as_bytes()).unwrap(), Some(skip(&broken)));
    assert_eq!(record(&*library, "rome/rocket.jpg").unwrap().tags, ["launch"]);
    assert_eq!(library.image_count(), 5);
    library.close().unwrap();
}
