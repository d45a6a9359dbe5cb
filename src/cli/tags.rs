//! `imgsearch tags`: the zero-shot tags with how many pictures carry each. Its options change the
//! label set, the threshold or the number of tags per picture, and retag the library from its
//! stored embeddings (only new labels go through the text model).

use std::path::PathBuf;

use anyhow::Context;
use indicatif::ProgressBar;

use imgsearch::model::{ModelSpec, Towers};
use imgsearch::search::tags::{self, LabelSet, DEFAULT_MAX_TAGS, DEFAULT_THRESHOLD};
use imgsearch::store::{Library, Location, Tagging};

#[derive(Debug, clap::Args)]
pub struct TagsArgs {
    /// Label the pictures with the labels of this file too: one per line, in any language the
    /// model reads, `#` starts a comment. Repeatable; replaces the files given before.
    #[arg(long, value_name = "FILE")]
    labels: Vec<PathBuf>,
    /// Leave out the built-in labels (only --labels files; with none, no picture has tags).
    #[arg(long)]
    no_builtin: bool,
    /// Probability (0..1) from which a label becomes a picture's tag.
    #[arg(long, value_parser = probability)]
    threshold: Option<f32>,
    /// At most this many tags per picture, the most probable.
    #[arg(long)]
    max_tags: Option<usize>,
    /// Embed every label again (after the checkpoint's files changed) and retag.
    #[arg(long)]
    rebuild: bool,
    /// Print `{"tags": [{"tag", "count"}], ...}`.
    #[arg(long)]
    json: bool,
}

fn probability(text: &str) -> Result<f32, String> {
    match text.trim().parse::<f32>() {
        Ok(p) if p > 0.0 && p < 1.0 => Ok(p),
        _ => Err(format!("expected a probability between 0 and 1 (exclusive), not {text:?}")),
    }
}

pub fn run(args: TagsArgs, library: Location, compute: super::ComputeArgs) -> anyhow::Result<()> {
    let mut data = imgsearch::store::open(&library)?;
    let changes_labels = !args.labels.is_empty() || args.no_builtin;
    if changes_labels || args.threshold.is_some() || args.max_tags.is_some() || args.rebuild {
        let Some(info) = data.model_info()? else {
            anyhow::bail!("the library {} has no pictures yet: run `imgsearch index PATH` first", data.location());
        };
        let previous = data.tagging()?;
        let labels = if changes_labels {
            label_set(!args.no_builtin, &args.labels)?
        } else {
            match &previous {
                Some(p) => LabelSet { labels: p.labels.clone(), sources: p.sources.clone() },
                None => LabelSet::builtin(),
            }
        };
        let threshold = args.threshold.or(previous.as_ref().map(|p| p.threshold)).unwrap_or(DEFAULT_THRESHOLD);
        let max_tags = args.max_tags.or(previous.as_ref().map(|p| p.max_tags)).unwrap_or(DEFAULT_MAX_TAGS);
        let reuse = if args.rebuild { None } else { previous.as_ref() };
        let quiet = args.json;
        let tagging = embed_labels(&info.model, &compute, labels, threshold, max_tags, reuse, quiet)?;
        data.set_tagging(Some(&tagging))?;
        let bar = progress_bar(quiet, "tagging pictures");
        let changed = tags::retag(&mut *data, &|done, total| {
            bar.set_length(total as u64);
            bar.set_position(done as u64);
        })?;
        bar.finish_and_clear();
        if !quiet {
            println!("{changed} pictures' tags changed");
        }
    }
    print(&*data, args.json)?;
    data.close()?;
    Ok(())
}

/// The built-in labels (if `builtin`) and those of `files`, with the names of their sources.
fn label_set(builtin: bool, files: &[PathBuf]) -> anyhow::Result<LabelSet> {
    let mut text = if builtin { tags::BUILTIN_LABELS.to_string() } else { String::new() };
    let mut sources: Vec<String> = builtin.then(|| "built-in".to_string()).into_iter().collect();
    for file in files {
        let labels = std::fs::read_to_string(file).with_context(|| {
            format!("cannot read the label file {} (UTF-8 text, one label per line)", file.display())
        })?;
        text.push('\n');
        text.push_str(&labels);
        sources.push(file.display().to_string());
    }
    Ok(LabelSet { labels: tags::parse_labels(&text), sources })
}

/// The label set's embeddings, loading the text tower only if a label is new.
fn embed_labels(
    model: &str,
    compute: &super::ComputeArgs,
    labels: LabelSet,
    threshold: f32,
    max_tags: usize,
    previous: Option<&Tagging>,
    quiet: bool,
) -> anyhow::Result<Tagging> {
    let bar = progress_bar(quiet, "embedding tag labels");
    let load = || -> imgsearch::Result<imgsearch::Clip> {
        let (spec, device) = compute.open(model)?;
        spec.load(&device, Towers::Text)
    };
    let tagging = tags::build_tagging(model, &load, labels, threshold, max_tags, previous, &|done, total| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    })?;
    bar.finish_and_clear();
    Ok(tagging)
}

/// Sets up the built-in label set on a library that has none, so that `index` tags every new
/// picture (once per library: the labels' embeddings are stored with it).
pub fn ensure_label_set(
    data: &mut dyn Library,
    spec: &ModelSpec,
    device: &candle_core::Device,
    quiet: bool,
) -> anyhow::Result<()> {
    if data.tagging()?.is_some() {
        return Ok(());
    }
    let bar = progress_bar(quiet, "embedding the built-in tag labels (once per library)");
    let load = || spec.load(device, Towers::Text);
    let model = spec.info().model;
    let tagging = tags::build_tagging(
        &model,
        &load,
        LabelSet::builtin(),
        DEFAULT_THRESHOLD,
        DEFAULT_MAX_TAGS,
        None,
        &|done, total| {
            bar.set_length(total as u64);
            bar.set_position(done as u64);
        },
    )?;
    bar.finish_and_clear();
    data.set_tagging(Some(&tagging))?;
    Ok(())
}

fn progress_bar(quiet: bool, what: &str) -> ProgressBar {
    let bar = imgsearch::progress::bar("{msg} {wide_bar} {pos}/{len} · ETA {eta}", quiet);
    bar.set_message(what.to_string());
    bar
}

fn print(data: &dyn Library, json: bool) -> anyhow::Result<()> {
    let tagging = data.tagging()?;
    let counts = tags::counts(data)?;
    if json {
        let set = tagging.as_ref().map(|t| {
            serde_json::json!({"labels": t.labels.len(), "sources": t.sources, "threshold": t.threshold, "max_tags": t.max_tags})
        });
        println!("{}", serde_json::json!({"tags": counts, "label_set": set}));
        return Ok(());
    }
    match &tagging {
        Some(t) => println!(
            "{} labels ({}), threshold {}, at most {} tags per picture",
            t.labels.len(),
            t.sources.join(", "),
            t.threshold,
            t.max_tags
        ),
        None => println!("no label set yet: `imgsearch index` sets up the built-in one, or use --labels FILE"),
    }
    for count in &counts {
        println!("{}\t{}", count.count, super::one_line(&count.tag));
    }
    Ok(())
}
