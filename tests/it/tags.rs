//! Zero-shot tags through the CLI and the REST API. The tiny test models carry no meaning, so
//! the arithmetic is checked with pictures whose embeddings are placed against the labels'
//! embeddings (imported from Parquet): a label is a tag where
//! sigmoid(100 · (picture·label − picture·neutral)) reaches the threshold.

use crate::common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use crate::common::http::get;
use crate::common::{image_path, model_dir};

/// The spec the test checks against (README, "Zero-shot tags").
const TEMPLATES: [&str; 3] = ["a photo of {}.", "a photo of a {}.", "a picture showing {}."];
const NEUTRAL: [&str; 4] = ["a photo.", "a picture.", "an image.", "a photo of something."];
const LABELS: [&str; 3] = ["red kite", "Strand", "zebra crossing"];
const TEMPERATURE: f64 = 100.0;

use crate::common::cli::{imgsearch, json, run};

fn unit(v: Vec<f64>) -> Vec<f64> {
    let n = v.iter().map(|x| x * x).sum::<f64>().sqrt();
    v.into_iter().map(|x| x / n).collect()
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Each label's direction: the unit mean of its prompts minus the unit mean of the neutral ones.
fn label_directions(model: &Path) -> Vec<Vec<f64>> {
    let prompts = |label: &str| TEMPLATES.map(|t| t.replace("{}", label));
    let mut embed = Command::new(env!("CARGO_BIN_EXE_imgsearch"));
    embed.args(["--device", "cpu", "embed", "--json", "--model"]).arg(model);
    for text in LABELS.iter().flat_map(|l| prompts(l)).chain(NEUTRAL.map(String::from)) {
        embed.arg("--text").arg(text);
    }
    let texts = json(&mut embed)["texts"].clone();
    let mean = |texts_of: Vec<String>| -> Vec<f64> {
        let vectors: Vec<Vec<f64>> = texts_of
            .iter()
            .map(|t| texts[t].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect())
            .collect();
        unit((0..vectors[0].len()).map(|i| vectors.iter().map(|v| v[i]).sum()).collect())
    };
    let neutral = mean(NEUTRAL.map(String::from).to_vec());
    LABELS.iter().map(|l| mean(prompts(l).to_vec()).iter().zip(&neutral).map(|(a, b)| a - b).collect()).collect()
}

/// A unit picture whose margin for `direction` is exactly `margin` (the rest of it a
/// deterministic direction orthogonal to the label).
fn picture_with_margin(direction: &[f64], margin: f64, seed: u64) -> Vec<f64> {
    let norm = dot(direction, direction).sqrt();
    let mut state = seed.wrapping_mul(0x9E3779B97F4A7C15) | 1;
    let mut other: Vec<f64> = (0..direction.len())
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 11) as f64 / (1u64 << 53) as f64 - 0.5
        })
        .collect();
    let along = dot(&other, direction) / (norm * norm);
    other.iter_mut().zip(direction).for_each(|(o, d)| *o -= along * d);
    let other = unit(other);
    let a = margin / norm;
    direction.iter().zip(&other).map(|(d, o)| a * d / norm + (1.0 - a * a).sqrt() * o).collect()
}

/// The tags the spec gives a picture: labels whose probability reaches `threshold`, most
/// probable first, at most `max_tags`, lower-cased.
fn expected_tags(picture: &[f64], directions: &[Vec<f64>], threshold: f64, max_tags: usize) -> Vec<String> {
    let mut passing: Vec<(f64, &str)> = directions
        .iter()
        .zip(LABELS)
        .map(|(d, label)| (dot(picture, d), label))
        .filter(|(margin, _)| 1.0 / (1.0 + (-TEMPERATURE * margin).exp()) >= threshold)
        .collect();
    passing.sort_by(|a, b| b.0.total_cmp(&a.0));
    passing.into_iter().take(max_tags).map(|(_, l)| l.to_lowercase()).collect()
}

/// Every picture's tags, by path, through a filter-only search.
fn tags_by_path(data: &Path) -> BTreeMap<String, Vec<String>> {
    let hits = json(imgsearch(data).args(["search", "path:elsewhere", "-k", "100", "--json"]));
    hits.as_array()
        .unwrap()
        .iter()
        .map(|h| {
            let tags = h["tags"].as_array().unwrap().iter().map(|t| t.as_str().unwrap().to_string()).collect();
            (h["path"].as_str().unwrap().to_string(), tags)
        })
        .collect()
}

fn tag_counts(data: &Path) -> BTreeMap<String, u64> {
    let listed = json(imgsearch(data).args(["tags", "--json"]));
    listed["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["tag"].as_str().unwrap().into(), t["count"].as_u64().unwrap()))
        .collect()
}

#[test]
fn tags_follow_the_calibrated_margin_and_change_with_the_threshold_without_the_model() {
    let tmp = tempfile::tempdir().unwrap();
    // A copy of the model, deleted once the labels are embedded: a new threshold must not need it.
    let model = tmp.path().join("model");
    let put_model_back = || {
        std::fs::create_dir_all(&model).unwrap();
        for entry in std::fs::read_dir(model_dir("tiny-clip-b32-quickgelu")).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), model.join(entry.file_name())).unwrap();
        }
    };
    put_model_back();
    let directions = label_directions(&model);
    // Margins for "red kite" on both sides of the two thresholds tried below (0.95 → 0.029,
    // 0.6 → 0.004), pictures right on "Strand" and "zebra crossing", and one away from all.
    let mut pictures: Vec<(String, Vec<f64>)> = [0.08, 0.02, 0.01, -0.02]
        .iter()
        .enumerate()
        .map(|(i, m)| (format!("/elsewhere/kite_{i}.jpg"), picture_with_margin(&directions[0], *m, i as u64 + 1)))
        .collect();
    pictures.push(("/elsewhere/strand.jpg".into(), unit(directions[1].clone())));
    pictures.push(("/elsewhere/crossing.jpg".into(), unit(directions[2].clone())));
    pictures.push(("/elsewhere/none.jpg".into(), unit(directions[0].iter().map(|d| -d).collect())));
    let rows: Vec<(String, Vec<f32>)> =
        pictures.iter().map(|(p, v)| (p.clone(), v.iter().map(|x| *x as f32).collect())).collect();
    let parquet = tmp.path().join("pictures.parquet");
    common::parquet::write_foreign(&parquet, &rows);
    let data = tmp.path().join("data");
    run(imgsearch(&data).arg("import").arg(&parquet).arg("--model").arg(&model));

    let labels = tmp.path().join("labels.txt");
    std::fs::write(&labels, format!("# birds and beaches\n{}\n", LABELS.join("\n"))).unwrap();
    let set = json(
        imgsearch(&data)
            .args(["tags", "--no-builtin", "--threshold", "0.95", "--max-tags", "2", "--json"])
            .arg("--labels")
            .arg(&labels),
    );
    assert_eq!(set["label_set"]["labels"], 3, "{set}");
    let check = |threshold: f64, max_tags: usize| {
        let tags = tags_by_path(&data);
        assert_eq!(tags.len(), pictures.len());
        let mut counts = BTreeMap::new();
        for (path, picture) in &pictures {
            let expected = expected_tags(picture, &directions, threshold, max_tags);
            assert_eq!(tags[path], expected, "{path} at threshold {threshold}");
            for tag in expected {
                *counts.entry(tag).or_insert(0u64) += 1;
            }
        }
        assert_eq!(tag_counts(&data), counts);
        counts
    };
    let strict = check(0.95, 2);
    // The designed margins decide "red kite": 0.08 passes 0.95, 0.02 and 0.01 only pass 0.6.
    let kite_tags = |tags: &BTreeMap<String, Vec<String>>| {
        (0..4).map(|i| tags[&format!("/elsewhere/kite_{i}.jpg")].contains(&"red kite".to_string())).collect::<Vec<_>>()
    };
    assert_eq!(kite_tags(&tags_by_path(&data)), [true, false, false, false]);
    assert!(strict.contains_key("strand") && strict.contains_key("zebra crossing"), "{strict:?}");

    // `tag:` finds exactly the pictures with that tag, quoted or with an underscore.
    for query in ["tag:\"zebra crossing\"", "tag:zebra_crossing"] {
        let hits = json(imgsearch(&data).args(["search", query, "--json"]));
        let paths: Vec<&str> = hits.as_array().unwrap().iter().map(|h| h["path"].as_str().unwrap()).collect();
        let tags = tags_by_path(&data);
        let expected: Vec<&str> =
            tags.iter().filter(|(_, t)| t.contains(&"zebra crossing".to_string())).map(|(p, _)| p.as_str()).collect();
        let mut sorted = paths.clone();
        sorted.sort();
        assert_eq!(sorted, expected, "{query}");
    }

    // A new threshold and limit retag from the stored embeddings, with the model gone (it is
    // put back for the searches that check the result).
    std::fs::remove_dir_all(&model).unwrap();
    run(imgsearch(&data).args(["tags", "--threshold", "0.6", "--max-tags", "1"]));
    put_model_back();
    check(0.6, 1);
    std::fs::remove_dir_all(&model).unwrap();
    run(imgsearch(&data).args(["tags", "--max-tags", "3"]));
    // A new label does need the model, and says which one it could not find.
    std::fs::write(&labels, format!("{}\nlighthouse\n", LABELS.join("\n"))).unwrap();
    let refused = imgsearch(&data).args(["tags", "--no-builtin", "--labels"]).arg(&labels).output().unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("has no such folder"), "{refused:?}");
    // Too long a label set is refused before anything is embedded.
    let many: Vec<String> = (0..=20_000).map(|i| format!("label {i}")).collect();
    std::fs::write(&labels, many.join("\n")).unwrap();
    let refused = imgsearch(&data).args(["tags", "--no-builtin", "--labels"]).arg(&labels).output().unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("at most 20000"), "{refused:?}");
    put_model_back();
    check(0.6, 3);
    assert_eq!(kite_tags(&tags_by_path(&data)), [true, true, true, false]);
}

/// A library of fixture photos indexed with the tiny model (and so tagged with the built-in
/// labels).
fn indexed_library() -> (tempfile::TempDir, std::path::PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let photos = tmp.path().join("photos");
    std::fs::create_dir_all(&photos).unwrap();
    for name in ["astronaut.jpg", "coffee.png", "rocket.jpg", "chelsea_progressive.jpg", "camera_gray.png"] {
        std::fs::copy(image_path(name), photos.join(name)).unwrap();
    }
    let data = tmp.path().join("data");
    common::server::index_photos(&photos, &data, &[]);
    (tmp, data)
}

/// `index` sets up the built-in labels once and tags every new picture; the API shows the tags
/// in hits, in a picture's details and in `/api/tags`.
#[test]
fn indexing_tags_new_pictures_with_the_built_in_labels_and_the_api_shows_them() {
    let (_tmp, data) = indexed_library();
    let listed = json(imgsearch(&data).args(["tags", "--json"]));
    assert_eq!(listed["label_set"]["sources"], serde_json::json!(["built-in"]));
    assert!(listed["label_set"]["labels"].as_u64().unwrap() >= 900, "{listed}");
    let counts = tag_counts(&data);
    assert!(!counts.is_empty(), "a random model still puts some labels over the neutral prompts");
    // What indexing gave is what a retag from the stored embeddings gives.
    let out = run(imgsearch(&data).args(["tags", "--threshold", "0.95"]));
    assert!(String::from_utf8_lossy(&out.stdout).contains("0 pictures' tags changed"), "{out:?}");

    let server = common::server::serve(&data, &[]);
    let api = get(&server.addr, "/api/tags").json();
    let api_counts: BTreeMap<String, u64> = api["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["tag"].as_str().unwrap().into(), t["count"].as_u64().unwrap()))
        .collect();
    assert_eq!(api_counts, counts);
    let (tag, count) = counts.iter().next().unwrap();
    let query = format!("tag:\"{tag}\"");
    let hits = get(&server.addr, &format!("/api/search?q={}&k=10", urlencode(&query))).json();
    let hits = hits["hits"].as_array().unwrap();
    assert_eq!(hits.len() as u64, *count);
    for hit in hits {
        assert!(hit["tags"].as_array().unwrap().iter().any(|t| t == tag.as_str()), "{hit}");
        let details = get(&server.addr, &format!("/api/images/{}", hit["id"])).json();
        assert_eq!(details["tags"], hit["tags"]);
    }
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[test]
fn a_tag_chip_lists_the_pictures_with_that_tag() {
    let (_tmp, data) = indexed_library();
    let server = common::server::serve(&data, &[]);
    let tags = get(&server.addr, "/api/tags").json();
    // The least frequent of the tags shown as chips: a chip that does narrow the grid.
    let shown = &tags["tags"].as_array().unwrap()[..tags["tags"].as_array().unwrap().len().min(15)];
    let tag = shown.last().unwrap()["tag"].as_str().unwrap().to_string();
    let query = format!("tag:\"{tag}\"");
    let hits = get(&server.addr, &format!("/api/search?q={}&k=50", urlencode(&query))).json();
    let paths: Vec<&str> = hits["hits"].as_array().unwrap().iter().map(|h| h["path"].as_str().unwrap()).collect();
    common::browser_script(
        "tags.mjs",
        &[&format!("http://{}", server.addr), &tag, &serde_json::to_string(&paths).unwrap()],
    );
}
