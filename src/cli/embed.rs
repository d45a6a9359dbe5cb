//! `imgsearch embed`: embeddings of the given pictures and texts, for scripts and for checking a model.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Context;
use serde::Serialize;

use imgsearch::ingest::decode::{model_input_file, DEFAULT_MAX_PIXELS};
use imgsearch::model::Towers;
use imgsearch::Embedding;

use super::ModelArgs;

/// Pictures per forward pass.
const IMAGE_BATCH: usize = 32;

#[derive(Debug, clap::Args)]
pub struct EmbedArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// A picture to embed (repeatable).
    #[arg(long = "image", value_name = "PATH")]
    images: Vec<PathBuf>,
    /// A text to embed (repeatable; any string, the empty one included).
    #[arg(long = "text", value_name = "STR")]
    texts: Vec<String>,
    /// The language the texts are written in (see `search --lang`).
    #[arg(long, value_name = "LANGUAGE")]
    lang: Option<String>,
    /// Print one JSON object: {"model", "dim", "images": {path: [..]}, "texts": {text: [..]}}.
    #[arg(long)]
    json: bool,
    /// Refuse pictures with more pixels than this (decompression bombs).
    #[arg(long, default_value_t = DEFAULT_MAX_PIXELS)]
    max_pixels: u64,
}

#[derive(Serialize)]
struct EmbedOutput<'a> {
    model: &'a str,
    dim: usize,
    images: BTreeMap<String, Embedding>,
    texts: BTreeMap<String, Embedding>,
}

pub fn run(args: EmbedArgs, compute: super::ComputeArgs) -> anyhow::Result<()> {
    if args.images.is_empty() && args.texts.is_empty() {
        anyhow::bail!("nothing to embed: pass --image PATH and/or --text STR");
    }
    // Check every picture before the (slow) model load, so a typo fails at once.
    for path in &args.images {
        std::fs::metadata(path).with_context(|| format!("cannot read image {}", path.display()))?;
    }
    let (spec, device) = compute.open(&args.model.model)?;
    let clip = spec.load(&device, Towers::Both).with_context(|| format!("cannot load model {}", args.model.model))?;

    let mut images = BTreeMap::new();
    for chunk in args.images.chunks(IMAGE_BATCH) {
        let batch = chunk
            .iter()
            .map(|p| model_input_file(p, clip.preprocess_config(), args.max_pixels))
            .collect::<imgsearch::Result<Vec<_>>>()?;
        for (path, embedding) in chunk.iter().zip(clip.embed_images(&batch)?) {
            images.insert(path.to_string_lossy().into_owned(), embedding);
        }
    }
    let texts: Vec<&str> = args.texts.iter().map(String::as_str).collect();
    let texts = args.texts.iter().cloned().zip(clip.embed_texts_in(&texts, args.lang.as_deref())?).collect();

    let output = EmbedOutput { model: clip.model_id(), dim: clip.dim(), images, texts };
    if args.json {
        println!("{}", serde_json::to_string(&output)?);
    } else {
        for (kind, map) in [("image", &output.images), ("text", &output.texts)] {
            for (name, e) in map {
                let head: Vec<String> = e.iter().take(4).map(|v| format!("{v:+.4}")).collect();
                println!("{kind}\t{name:?}\t[{} ...] (dim {})", head.join(", "), output.dim);
            }
        }
    }
    Ok(())
}
