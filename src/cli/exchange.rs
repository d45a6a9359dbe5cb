//! `imgsearch export` and `imgsearch import`: the library as a Parquet file, one row per picture.

use imgsearch::store::Location;
use std::path::PathBuf;

use indicatif::ProgressBar;

use imgsearch::model::ModelSpec;
use imgsearch::store::{exchange, spaces};

#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// The Parquet file to write (replaced once complete): path, id, embedding (list of float32),
    /// size, mtime_ns, hash, width, height, format, taken, camera_make, camera_model,
    /// gps_latitude, gps_longitude, title, description, keywords (list of strings), rating,
    /// indexed_at;
    /// the model in the file's metadata.
    file: PathBuf,
    /// Export this model's embeddings, where the library holds several (`imgsearch stats` lists
    /// them). Default: the model searches use.
    #[arg(long)]
    model: Option<String>,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// A Parquet file with at least `path` (string) and `embedding` (list of float32) columns,
    /// e.g. from `imgsearch export` or clip-retrieval.
    file: PathBuf,
    /// The model that made the embeddings (a hub id or checkpoint folder), when the file does not
    /// name it or names it differently; text search embeds queries with it.
    #[arg(long)]
    model: Option<String>,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
    /// Print the summary as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
pub struct MigrateArgs {
    /// The library to copy into: a PostgreSQL URL (postgres://USER@HOST:PORT/DATABASE) or a data
    /// folder. It must be empty or hold the same model's embeddings.
    #[arg(long, value_name = "URL|DIR")]
    to: String,
    /// Copy this model's embeddings, where the library holds several (`imgsearch stats` lists
    /// them). Default: the model searches use.
    #[arg(long)]
    model: Option<String>,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
    /// Print the summary as JSON.
    #[arg(long)]
    json: bool,
}

fn progress_bar(quiet: bool) -> ProgressBar {
    imgsearch::progress::bar(
        "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} pictures · {per_sec} · ETA {eta}",
        quiet,
    )
}

/// The model space `model` names (default: the one searches use), and a note naming the
/// library's other models, which the command leaves out.
fn one_space(library: &Location, model: Option<&str>, verb: &str) -> anyhow::Result<(Location, Option<String>)> {
    let all = spaces::list(library)?;
    let chosen = spaces::searched(&all, model)?;
    let others: Vec<&str> =
        all.iter().filter(|s| s.location != chosen.location).filter_map(|s| s.model.as_deref()).collect();
    let note = (!others.is_empty()).then(|| {
        format!(
            "note: {verb} the embeddings of {}; the library also holds those of {} (--model names which)",
            chosen.model.as_deref().unwrap_or("no model yet"),
            others.join(", ")
        )
    });
    Ok((chosen.location.clone(), note))
}

pub fn export(args: ExportArgs, library: Location) -> anyhow::Result<()> {
    let (space, note) = one_space(&library, args.model.as_deref(), "exported")?;
    let data = imgsearch::store::open(&space)?;
    let progress = progress_bar(args.quiet);
    let rows = exchange::export(&*data, &args.file, &progress)?;
    progress.finish_and_clear();
    if !args.quiet {
        println!("exported {rows} pictures to {}", args.file.display());
        note.iter().for_each(|note| eprintln!("{note}"));
    }
    Ok(())
}

pub fn import(args: ImportArgs, library: Location) -> anyhow::Result<()> {
    // The model's identity (name, dimension, preprocessing) comes from its config; no weights load.
    let model = args.model.as_deref().map(ModelSpec::resolve).transpose()?.map(|spec| spec.info());
    // Another model's embeddings go into a model space of their own, as `index --model` does.
    let named = model.clone().map_or_else(|| exchange::file_model(&args.file), |m| Ok(Some(m)))?;
    let new_space = match &named {
        Some(named) => (!spaces::holds(&library, &named.model)?).then_some(named),
        None => None,
    };
    let held_another = spaces::for_search(&library, None)?.model.is_some();
    let space = match &named {
        Some(named) => spaces::for_index(&library, &named.model)?,
        None => spaces::for_search(&library, None)?.location,
    };
    let mut data = imgsearch::store::open(&space)?;
    let progress = progress_bar(args.quiet || args.json);
    let imported = exchange::import(&mut *data, &args.file, model, &progress);
    let stored = data.image_count();
    data.close()?;
    progress.finish_and_clear();
    if let Some(new) = new_space {
        spaces::discard_if_empty(&library, &new.model, true, stored)?;
    }
    let summary = imported?;
    if stored > 0 {
        spaces::mark_complete(&library, &space)?;
    }
    if let Some(new) = new_space.filter(|_| held_another && stored > 0 && !args.quiet && !args.json) {
        eprintln!(
            "note: the pictures went into a model space of their own, for {}: searches use it from now on (`imgsearch \
             stats` lists the library's models)",
            new.model
        );
    }
    if args.json {
        println!("{}", serde_json::to_string(&summary)?);
        return Ok(());
    }
    println!(
        "{} rows: {} imported, {} already in the library, {} skipped",
        summary.rows, summary.imported, summary.unchanged, summary.skipped
    );
    for problem in &summary.problems {
        eprintln!("skipped {}", super::one_line(problem));
    }
    Ok(())
}

/// `imgsearch migrate --to`: the library (--data-dir or --store) copied into another backend.
pub fn migrate(args: MigrateArgs, library: Location) -> anyhow::Result<()> {
    let (space, note) = one_space(&library, args.model.as_deref(), "copied")?;
    let from = imgsearch::store::open(&space)?;
    let cache = match &library {
        Location::Folder(dir) => dir.clone(),
        Location::Postgres { cache, .. } => cache.clone(),
    };
    if args.to.trim().is_empty() {
        anyhow::bail!("--to is empty: give a folder for a new data folder, or a postgres:// URL");
    }
    let target = if args.to.contains("://") {
        Location::new(cache, Some(args.to.clone()), None)?
    } else {
        Location::Folder(PathBuf::from(&args.to))
    };
    // The same folder, or one inside it (its model spaces' folders): the copy would write into
    // what it reads.
    let same_folder = match (&library, &target) {
        (Location::Folder(a), Location::Folder(b)) => {
            let resolved = |p: &PathBuf| p.canonicalize().or_else(|_| std::path::absolute(p)).ok();
            resolved(a).zip(resolved(b)).is_some_and(|(a, b)| b.starts_with(a))
        }
        _ => false,
    };
    if same_folder || matches!(&library, Location::Postgres { url, .. } if *url == args.to) {
        anyhow::bail!(
            "--to names the library being copied ({}), or a folder inside it: give another one",
            from.location()
        );
    }
    let mut to = imgsearch::store::open(&target)?;
    let progress = progress_bar(args.quiet || args.json);
    let summary = imgsearch::store::copy::copy(&*from, &mut *to, &progress)?;
    progress.finish_and_clear();
    to.close()?;
    if args.json {
        println!("{}", serde_json::to_string(&summary)?);
    } else if !args.quiet {
        println!(
            "{} pictures copied to {} ({} already there), {} skipped files",
            summary.copied, args.to, summary.unchanged, summary.skipped_files
        );
        for left_out in &summary.left_out {
            eprintln!("left out {}", super::one_line(left_out));
        }
        note.iter().for_each(|note| eprintln!("{note}"));
    }
    Ok(())
}
