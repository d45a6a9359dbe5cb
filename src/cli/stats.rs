//! `imgsearch stats` and `imgsearch list`: what the data folder holds.

use imgsearch::store::Location;

use serde::Serialize;

use imgsearch::store::roots::{Mounts, RootState};
use imgsearch::store::IndexedRoot;
use imgsearch::store::StoredPath;

#[derive(Debug, clap::Args)]
pub struct StatsArgs {
    /// List the skipped files with their reasons.
    #[arg(long)]
    errors: bool,
    #[arg(long)]
    json: bool,
}

pub fn stats(args: StatsArgs, library: Location, mounts: &[(String, std::path::PathBuf)]) -> anyhow::Result<()> {
    let spaces = imgsearch::store::spaces::list(&library)?;
    let current = imgsearch::store::spaces::searched(&spaces, None)?;
    let data = imgsearch::store::open(&current.location)?;
    if args.errors {
        let mut errors = Vec::new();
        for record in data.skipped() {
            let record = record?;
            if !record.ignored {
                errors.push(serde_json::json!({"path": record.path.display(), "reason": record.reason}));
            }
        }
        if args.json {
            println!("{}", serde_json::to_string(&errors)?);
        } else {
            for e in &errors {
                let text = |key: &str| super::one_line(e[key].as_str().unwrap_or_default()).into_owned();
                println!("{}\t{}", text("path"), text("reason"));
            }
        }
        return Ok(());
    }
    let stats = data.stats(data.size_bytes())?;
    let mounts = Mounts::for_host(&*data, mounts)?;
    let roots: Vec<(IndexedRoot, RootState)> =
        data.indexed_roots()?.into_iter().map(|root| (root.clone(), mounts.root_state(&root))).collect();
    // What this machine's encoders run on (chosen at start; IMGSEARCH_ISA forces a lower path).
    let kernels = imgsearch::model::kernels::isa().name();
    let in_use = |space: &imgsearch::store::spaces::Space| space.model == current.model;
    if args.json {
        let mut json = serde_json::to_value(&stats)?;
        json["cpu_kernels"] = kernels.into();
        json["heif_decoder"] = imgsearch::ingest::heif::decoder().ok().into();
        json["video_decoder"] = imgsearch::ingest::video::decoder().ok().into();
        json["models"] = spaces
            .iter()
            .filter(|space| space.model.is_some())
            .map(|space| {
                serde_json::json!({"model": space.model, "complete": space.complete, "searched": in_use(space),
                                   "created_at_ms": space.created_at})
            })
            .collect();
        json["roots"] = roots
            .iter()
            .map(|(root, state)| {
                let (here, present) = match state {
                    RootState::Present(here) => (Some(here), true),
                    RootState::Gone(here) => (Some(here), false),
                    RootState::NotMounted => (None, false),
                };
                serde_json::json!({"path": root.path.display().to_string(), "name": root.name,
                                   "here": here.map(|h| h.display().to_string()), "present": present})
            })
            .collect();
        println!("{json}");
        return Ok(());
    }
    println!("library:      {} ({:.1} MB)", stats.data_dir, stats.size_bytes as f64 / 1e6);
    match &stats.model {
        Some(m) => println!("model:        {} (dim {})", m.model, m.dim),
        None => println!("model:        (none yet)"),
    }
    for space in spaces.iter().filter(|space| space.model.is_some() && !in_use(space)) {
        let state =
            if space.complete { "complete, not searched" } else { "being indexed (searches use the model above)" };
        println!(
            "also held:    {} ({state}; `imgsearch search --model` searches it)",
            space.model.as_deref().unwrap_or_default()
        );
    }
    for (i, (root, state)) in roots.iter().enumerate() {
        let label = if i == 0 { "roots:" } else { "" };
        let shown = match &root.name {
            Some(name) => format!("{name}={}", root.path.display()),
            None => root.path.display().to_string(),
        };
        let note = match state {
            RootState::Present(_) => String::new(),
            RootState::Gone(here) => format!(
                " (gone from this computer: if it was moved or renamed, `imgsearch forget {}` takes its pictures out)",
                root.name.clone().unwrap_or_else(|| here.display().to_string())
            ),
            RootState::NotMounted => " (not mounted on this computer: --mount NAME=PATH tells where)".to_string(),
        };
        println!("{label:<14}{}{}", super::one_line(&shown), super::one_line(&note));
    }
    println!("images:       {}", stats.images);
    println!("vectors:      {} live, {} tombstoned", stats.vectors_live, stats.vectors_tombstoned);
    println!("skipped:      {} (imgsearch stats --errors lists them)", stats.skipped);
    if let Some(run) = &stats.last_run {
        println!("last run:     {}", describe_run(run));
    }
    println!("cpu kernels:  {kernels}");
    match imgsearch::ingest::heif::decoder() {
        Ok(decoder) => println!("HEIC, AVIF:   {decoder}"),
        Err(why) => println!("HEIC, AVIF:   not readable here. {why}"),
    }
    match imgsearch::ingest::video::decoder() {
        Ok(decoder) => println!("videos:       {decoder}"),
        Err(why) => println!("videos:       not readable here: {why}"),
    }
    Ok(())
}

/// The last `index` run for people: "2026-12-02 09:10:07 UTC, 12.3 s, /photos: 5 indexed, ...".
fn describe_run(run: &serde_json::Value) -> String {
    let count = |key: &str| run[key].as_u64().unwrap_or(0);
    let when = run["finished_at"]
        .as_i64()
        .map_or("at an unknown time".into(), |t| format!("{} UTC", imgsearch::search::iso_date(t).replace('T', " ")));
    let roots: Vec<&str> = run["roots"].as_array().into_iter().flatten().filter_map(|r| r.as_str()).collect();
    let not_read = match count("not_read") {
        0 => String::new(),
        n => format!(", {n} not read"),
    };
    format!(
        "{when}, {:.1} s, {}: {} indexed, {} reused (moved or copied), {} unchanged, {} removed, {} skipped{not_read}",
        run["seconds"].as_f64().unwrap_or(0.0),
        if roots.is_empty() { "no folder".to_string() } else { roots.join(", ") },
        count("indexed"),
        count("reused"),
        count("unchanged"),
        count("removed"),
        count("skipped"),
    )
}

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct Listed {
    id: u64,
    path: String,
    /// As in a search hit: the exact bytes of a path that is not UTF-8.
    #[serde(skip_serializing_if = "Option::is_none")]
    path_bytes: Option<Vec<u8>>,
}

pub fn list(args: ListArgs, library: Location) -> anyhow::Result<()> {
    let data = imgsearch::store::open(&library)?;
    let mut listed = Vec::new();
    // The path index alone: no record or embedding is read.
    for entry in data.paths() {
        let (path, id) = entry?;
        let path = StoredPath::from_bytes(path);
        listed.push(Listed { id, path: path.display(), path_bytes: path.raw_bytes().map(<[u8]>::to_vec) });
    }
    listed.sort_by(|a, b| a.path.cmp(&b.path));
    if args.json {
        println!("{}", serde_json::to_string(&listed)?);
    } else {
        for item in listed {
            println!("{}\t{}", item.id, super::one_line(&item.path));
        }
    }
    Ok(())
}

#[derive(Debug, clap::Args)]
pub struct KeywordsArgs {
    /// Print `{"keywords": [{"keyword", "count"}]}`.
    #[arg(long)]
    json: bool,
}

/// `imgsearch keywords`: the keywords people gave pictures and the names of people in them,
/// the most frequent first; `keyword:WORD` finds their pictures.
pub fn keywords(args: KeywordsArgs, library: Location) -> anyhow::Result<()> {
    let data = imgsearch::store::open(&library)?;
    let counts = imgsearch::search::tags::keyword_counts(&*data)?;
    if args.json {
        println!("{}", serde_json::json!({ "keywords": counts }));
    } else if counts.is_empty() {
        println!(
            "no picture has keywords: imgsearch reads them from XMP (Lightroom, digiKam, darktable; in the file or a \
             .xmp sidecar), IPTC, Windows' tags and Google Takeout's JSON when it indexes"
        );
    } else {
        for count in &counts {
            println!("{}\t{}", count.count, super::one_line(&count.keyword));
        }
    }
    Ok(())
}

/// `imgsearch repair`: rebuild the vector and text indexes from the catalog.
pub fn repair(library: Location) -> anyhow::Result<()> {
    let mut data = imgsearch::store::open(&library)?;
    for line in data.repair(true)? {
        println!("{line}");
    }
    Ok(())
}

/// `imgsearch optimize`: rebuild the vector graph without its tombstones, and delete the cached
/// renditions of pictures gone or changed.
pub fn optimize(library: Location) -> anyhow::Result<()> {
    let mut data = imgsearch::store::open(&library)?;
    println!("{}", data.optimize()?);
    let (files, bytes) = imgsearch::server::prune_renditions(data.as_ref())?;
    println!(
        "{files} cached thumbnails and previews of pictures gone or changed deleted ({:.1} MB)",
        bytes as f64 / 1e6
    );
    Ok(())
}
