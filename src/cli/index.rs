//! `imgsearch index PATH...`: add new and changed pictures, forget deleted ones; `imgsearch
//! forget FOLDER...`: take a folder out.

use std::path::PathBuf;

use anyhow::Context;
use imgsearch::store::forget;
use imgsearch::store::roots::{check_name, root_key, split_named, Mounts, Root, RootState};
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
    let made_now = !spaces::holds(&library, &spec.info().model)?;
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
        rescan: false,
    };
    let mut ran = || -> anyhow::Result<pipeline::IndexSummary> {
        data.check_model(&spec.info())?;
        super::tags::ensure_label_set(&mut *data, &spec, &device, args.quiet || args.json)?;
        Ok(pipeline::run(&mut *data, &spec, None, &device, &options)?)
    };
    let summary = match ran() {
        Ok(summary) => summary,
        Err(e) => {
            let pictures = data.image_count();
            data.close()?;
            spaces::discard_if_empty(&library, &spec.info().model, made_now, pictures)?;
            return Err(e);
        }
    };
    let gone_roots = roots_gone_from_this_host(&*data, &options.mounts)?;
    data.close()?;
    spaces::mark_complete(&library, &space)?;
    if args.json {
        println!("{}", serde_json::to_string(&summary)?);
        return Ok(());
    }
    if !args.quiet {
        for error in &summary.errors {
            eprintln!("skipped {}: {}", super::one_line(&error.path), super::one_line(&error.reason));
        }
    }
    let moments = match summary.video_moments {
        0 => String::new(),
        n => format!(" ({n} moments of videos)"),
    };
    for root in gone_roots.iter().filter(|_| !args.quiet) {
        eprintln!(
            "note: the library still holds the pictures of {root}, which is gone from this computer: if it was moved \
             or renamed, `imgsearch forget {root}` takes them out (else searches find them twice)"
        );
    }
    let not_read = match summary.not_read {
        0 => String::new(),
        n => format!(", {n} not read (pipes, devices, link loops, unreadable folders)"),
    };
    println!(
        "{} files scanned in {:.1}s: {} indexed{moments}, {} reused (moved/copied), {} unchanged, {} removed, {} \
         skipped{not_read}",
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

/// The recorded roots whose folder no longer exists here (a named root this host does not
/// mount is not known to be gone).
fn roots_gone_from_this_host(data: &dyn imgsearch::store::Library, mounts: &Mounts) -> anyhow::Result<Vec<String>> {
    Ok(data
        .indexed_roots()?
        .iter()
        .filter(|root| matches!(mounts.root_state(root), RootState::Gone(_)))
        .map(|root| root.name.clone().unwrap_or_else(|| super::one_line(&root.path.to_string_lossy()).into_owned()))
        .collect())
}

#[derive(Debug, clap::Args)]
pub struct ForgetArgs {
    /// Folders whose pictures to take out (every model's embeddings of them), as they were
    /// indexed: a path, which need not exist any more, or the NAME of a root indexed as
    /// NAME=PATH.
    #[arg(required = true, value_name = "FOLDER")]
    folders: Vec<PathBuf>,
    /// Print a JSON summary instead of the text one.
    #[arg(long)]
    json: bool,
}

/// `imgsearch forget FOLDER...`: remove what the library holds under each folder, in every
/// model space, and stop rescanning roots there.
pub fn forget(args: ForgetArgs, library: Location, mounts: &[(String, PathBuf)]) -> anyhow::Result<()> {
    let spaces = spaces::list(&library)?;
    let mut summaries = Vec::new();
    let mut still_recorded = Vec::new();
    for (index, space) in spaces.iter().enumerate() {
        let mut data = imgsearch::store::open(&space.location)?;
        let mounts = Mounts::for_host(&*data, mounts)?;
        for (arg, folder) in args.folders.iter().enumerate() {
            let forms = stored_forms(folder, &mounts)?;
            if index == 0 {
                summaries.push((forms.last().expect("a local form").clone(), forget::Forgotten::default()));
            }
            let mut forgotten = forget::Forgotten::default();
            for form in forms {
                forgotten = forget::forget(&mut *data, &form)?;
                if !forgotten.is_empty() {
                    summaries[arg].0 = form;
                    break;
                }
            }
            let total = &mut summaries[arg].1;
            total.pictures = total.pictures.max(forgotten.pictures);
            total.skipped = total.skipped.max(forgotten.skipped);
            for root in forgotten.roots {
                if !total.roots.contains(&root) {
                    total.roots.push(root);
                }
            }
        }
        for root in data.indexed_roots()? {
            let key = root.key().display().to_string();
            if !still_recorded.contains(&key) {
                still_recorded.push(key);
            }
        }
        data.close()?;
    }
    if args.json {
        let json: Vec<_> = summaries
            .iter()
            .map(|(folder, forgotten)| {
                serde_json::json!({
                    "folder": folder.display().to_string(),
                    "pictures": forgotten.pictures,
                    "skipped": forgotten.skipped,
                    "roots": forgotten.roots.iter().map(|r| r.display().to_string()).collect::<Vec<_>>(),
                })
            })
            .collect();
        println!("{}", serde_json::to_string(&json)?);
    }
    for (folder, forgotten) in summaries.iter().filter(|(_, forgotten)| !args.json && !forgotten.is_empty()) {
        let roots = match forgotten.roots.len() {
            0 => String::new(),
            n => format!("; {n} indexed roots no longer rescanned"),
        };
        println!(
            "{}: {} pictures and {} skipped files forgotten{roots}",
            super::one_line(&folder.to_string_lossy()),
            forgotten.pictures,
            forgotten.skipped
        );
        if folder.is_absolute() && folder.exists() {
            println!("  (the folder is still there: `imgsearch index` of it or of a folder above it adds them again)");
        }
    }
    // Said last, after what the other folders gave: a typo must not look like success.
    if let Some((folder, _)) = summaries.iter().find(|(_, forgotten)| forgotten.is_empty()) {
        anyhow::bail!(
            "the library holds nothing under {}: give the folder as it was indexed (the library's roots: {})",
            folder.display(),
            if still_recorded.is_empty() { "none".to_string() } else { still_recorded.join(", ") }
        );
    }
    Ok(())
}

/// How `folder` may be stored, the likeliest first: the form of a named root's files (`photos`,
/// `photos:`, `photos:/2023`, as `list` shows them; a root whose run was cut short before it was
/// recorded too), then the local path (made absolute, its links resolved while it exists, as
/// `index` stores it) through this host's mounts.
fn stored_forms(folder: &std::path::Path, mounts: &Mounts) -> anyhow::Result<Vec<PathBuf>> {
    let mut forms = Vec::new();
    if !folder.exists() {
        match (split_named(folder), folder.to_str()) {
            (Some(_), _) => forms.push(folder.to_path_buf()),
            (None, Some(name)) if check_name(name).is_ok() => forms.push(root_key(name)),
            _ => {}
        }
    }
    let local = match std::fs::canonicalize(folder) {
        Ok(path) => path,
        Err(_) => {
            std::path::absolute(folder).with_context(|| format!("cannot make {} an absolute path", folder.display()))?
        }
    };
    forms.push(mounts.stored(&local).to_path_buf());
    Ok(forms)
}
