//! `imgsearch duplicates`: exact copies, near duplicates and bursts, each with the copy to keep.

use imgsearch::search::duplicates::{find_duplicates, DuplicateOptions, GroupKind};
use imgsearch::store::Location;

#[derive(Debug, clap::Args)]
pub struct DuplicatesArgs {
    /// Similarity (cosine) from which two pictures are the same picture re-encoded or resized.
    #[arg(long, default_value_t = DuplicateOptions::default().near)]
    near: f32,
    /// Similarity from which shots taken seconds apart form a burst.
    #[arg(long, default_value_t = DuplicateOptions::default().burst)]
    burst: f32,
    /// Most seconds between the shots of a burst (EXIF date taken).
    #[arg(long, default_value_t = DuplicateOptions::default().burst_seconds)]
    burst_seconds: i64,
    /// Print `{"groups": [{"kind", "ids", "paths", "best"}]}`.
    #[arg(long)]
    json: bool,
}

pub fn run(args: DuplicatesArgs, library: Location) -> anyhow::Result<()> {
    for (name, value) in [("--near", args.near), ("--burst", args.burst)] {
        anyhow::ensure!((-1.0..=1.0).contains(&value), "{name} is a cosine similarity from -1 to 1, not {value}");
    }
    anyhow::ensure!(args.burst_seconds >= 0, "--burst-seconds cannot be negative");
    let data = imgsearch::store::open(&library)?;
    let options = DuplicateOptions {
        near: args.near,
        burst: args.burst,
        burst_seconds: args.burst_seconds,
        ..Default::default()
    };
    let groups = find_duplicates(&*data, &options)?;
    if args.json {
        println!("{}", serde_json::json!({ "groups": groups }));
        return Ok(());
    }
    if groups.is_empty() {
        println!("no duplicates or bursts");
    }
    for group in &groups {
        let kind = match group.kind {
            GroupKind::Exact => "exact copies",
            GroupKind::Near => "near duplicates",
            GroupKind::Burst => "burst",
        };
        println!("{kind} ({} pictures):", group.ids.len());
        for (id, path) in group.ids.iter().zip(&group.paths) {
            println!("  {} {}", if *id == group.best { "keep" } else { "    " }, super::one_line(path));
        }
    }
    Ok(())
}
