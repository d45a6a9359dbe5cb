//! `imgsearch index PATH...`: add new and changed pictures, forget deleted ones.

use std::path::PathBuf;

use anyhow::Context;
use imgsearch::store::roots::{Mounts, Root};
use imgsearch::store::spaces;
use imgsearch::store::Location;

use imgsearch::ingest::decode::DEFAULT_MAX_PIXELS;
use imgsearch::ingest::pipeline::{self, IndexOptions};

#[derive(Debug, clap::Args)]
pub struct IndexArgs {
    /// Folders (or files) to index; re-run with the same ones to update. `NAME=PATH` stores the
    /// folder's pictures under a root name (`photos=/mnt/nas/photos`), so that hosts that mount
    /// the folder elsewhere share them (see --mount).
    #[arg(required = true, value_name = "[NAME=]PATH", value_parser = Root::parse)]
    roots: Vec<Root>,
    /// Name the one PATH given (the same as NAME=PATH).
    #[arg(long, value_name = "NAME", value_parser = root_name)]
    root_name: Option<String>,
    /// Model: a checkpoint folder or hub id. Default: the one searches use (the newest this
    /// library was indexed with), else openai/clip-vit-base-patch32. Another model than the
    /// library's builds its embeddings beside the old ones, which searches keep using until
    /// this run finishes.
    #[arg(long)]
    model: Option<String>,
    /// Include hidden files and folders (names starting with '.') and the folders NAS and
    /// desktop systems keep beside photos (Synology's @eaDir thumbnails, #recycle, #snapshot,
    /// QNAP's @Recycle, Windows' $RECYCLE.BIN and System Volume Information).
    #[arg(long)]
    hidden: bool,
    /// Pictures per encoder batch (default: 16 on CPU, 128 on a GPU).
    #[arg(long)]
    batch_size: Option<usize>,
    /// Skip pictures with more pixels than this (decompression bombs).
    #[arg(long, default_value_t = DEFAULT_MAX_PIXELS)]
    max_pixels: u64,
    /// Skip files larger than this many bytes without reading them (videos are streamed, not
    /// read whole: the limit does not apply to them).
    #[arg(long, default_value_t = pipeline::DEFAULT_MAX_FILE_SIZE)]
    max_file_size: u64,
    /// A root folder that holds no file now had its pictures deleted on purpose: remove them
    /// from the library. Without it, an empty root is taken for a drive or share that is not
    /// mounted, and its pictures are kept.
    #[arg(long)]
    remove_from_empty: bool,
    /// No progress bar.
    #[arg(long, short)]
    quiet: bool,
    /// Print a JSON summary at the end instead of the text one.
    #[arg(long)]
    json: bool,
}

fn root_name(name: &str) -> Result<String, String> {
    imgsearch::store::roots::check_name(name).map(|()| name.to_string())
}

pub fn run(
    args: IndexArgs,
    library: Location,
    compute: super::ComputeArgs,
    mounts: &[(String, PathBuf)],
) -> anyhow::Result<()> {
    let mut roots = args.roots;
    if let Some(name) = args.root_name {
        match roots.as_mut_slice() {
            [root] if root.name.is_none() => root.name = Some(name),
            _ => anyhow::bail!(
                "--root-name names one folder: give exactly one PATH without NAME= (or NAME=PATH for each)"
            ),
        }
    }
    for root in roots.iter_mut().filter(|r| r.name.is_some()) {
        root.path = std::fs::canonicalize(&root.path)
            .with_context(|| format!("cannot index {}: the folder cannot be read", root.path.display()))?;
    }
    let model = match args.model {
        Some(model) => model,
        None => spaces::for_search(&library, None)?.model.unwrap_or_else(|| imgsearch::DEFAULT_MODEL.to_string()),
    };
    let (spec, device) = compute.open(&model)?;
    // Another model's embeddings go into a space of their own; searches keep to the old one
    // until this run is complete.
    let space = spaces::for_index(&library, &spec.info().model)?;
    let mut data = imgsearch::store::open(&space)?;
    // Remembered on this host, so that `serve` here finds the root where this host mounts it.
    Mounts::remember(&data.cache_dir(), &roots)?;
    let mounts = Mounts::for_host(&*data, mounts)?;
    let batch_size = args.batch_size.unwrap_or_else(|| pipeline::default_batch_size(&device));
    let options = IndexOptions {
        roots,
        mounts,
        hidden: args.hidden,
        batch_size,
        max_pixels: args.max_pixels,
        max_file_size: args.max_file_size,
        progress: !args.quiet && !args.json,
        remove_from_empty: args.remove_from_empty,
    };
    data.check_model(&spec.info())?;
    super::tags::ensure_label_set(&mut *data, &spec, &device, args.quiet || args.json)?;
    let summary = pipeline::run(&mut *data, &spec, None, &device, &options)?;
    data.close()?;
    spaces::mark_complete(&library, &space)?;
    if args.json {
        println!("{}", serde_json::to_string(&summary)?);
        return Ok(());
    }
    if !args.quiet {
        for error in &summary.errors {
            eprintln!("skipped {}: {}", error.path, error.reason);
        }
    }
    let moments = match summary.video_moments {
        0 => String::new(),
        n => format!(" ({n} moments of videos)"),
    };
    println!(
        "{} files scanned in {:.1}s: {} indexed{moments}, {} reused (moved/copied), {} unchanged, {} removed, {} skipped",
        summary.scanned,
        summary.seconds,
        summary.indexed,
        summary.reused,
        summary.unchanged,
        summary.removed,
        summary.skipped
    );
    Ok(())
}
