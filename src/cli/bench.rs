//! `imgsearch bench`: image-encoder throughput of a model on this machine's device, per batch
//! size (to pick `--batch-size`, and for benches/gpu.sh where no Rust toolchain exists), and
//! with `--query` the latency of one text query (what a search waits for).

use std::time::Instant;

use anyhow::Context;
use imgsearch::model::{Clip, Towers};
use serde::Serialize;

#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Checkpoint folder or hub id (see `embed`).
    #[arg(long, default_value = imgsearch::DEFAULT_MODEL)]
    model: String,
    /// Batch sizes to time, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,8,32")]
    batches: Vec<usize>,
    /// Timed batches per size (after one warm-up batch).
    #[arg(long, default_value_t = 5)]
    iterations: usize,
    /// Also time the text tower on this query (one query, as a search runs it).
    #[arg(long)]
    query: Option<String>,
    /// Timed runs of `--query` (after one warm-up run); the report gives their median.
    #[arg(long, default_value_t = 100)]
    query_runs: usize,
}

#[derive(Serialize)]
struct Row {
    batch: usize,
    images_per_s: f64,
    ms_per_batch: f64,
}

#[derive(Serialize)]
struct QueryTiming {
    text: String,
    tokens: usize,
    ms_median: f64,
}

pub fn run(args: BenchArgs, compute: super::ComputeArgs) -> anyhow::Result<()> {
    let (spec, device) = compute.open(&args.model)?;
    let towers = if args.query.is_some() { Towers::Both } else { Towers::Image };
    let clip = spec.load(&device, towers).with_context(|| format!("cannot load model {}", args.model))?;
    // A 4:3 camera photo, for models whose input follows the picture's shape (SigLIP 2 NaFlex).
    let (h, w) = spec.preprocess.input_size(3000, 4000);
    let (h, w) = (h as usize, w as usize);
    let picture = spec.preprocess.test_pattern(h, w);
    let mut rows = Vec::new();
    for &batch in args.batches.iter().filter(|b| **b > 0) {
        let images = vec![picture.clone(); batch];
        clip.embed_images(&images)?; // warm-up: kernels, allocator
        let started = Instant::now();
        for _ in 0..args.iterations.max(1) {
            clip.embed_images(&images)?;
        }
        let seconds = started.elapsed().as_secs_f64() / args.iterations.max(1) as f64;
        rows.push(Row { batch, images_per_s: batch as f64 / seconds, ms_per_batch: seconds * 1e3 });
    }
    let query = args.query.map(|text| time_query(&clip, text, args.query_runs)).transpose()?;
    println!(
        "{}",
        serde_json::to_string(&serde_json::json!({"model": spec.model_id, "device": format!("{device:?}"),
                "dtype": format!("{:?}", spec.precision).to_lowercase(),
                "cpu_kernels": imgsearch::model::kernels::isa().name(), "threads": imgsearch::cpu_threads(),
                "results": rows, "query": query}))?
    );
    Ok(())
}

/// The median of `runs` timings of one query: a query is short (milliseconds), so single runs
/// are noisy and the median is what a search typically waits.
fn time_query(clip: &Clip, text: String, runs: usize) -> anyhow::Result<QueryTiming> {
    let tokens = clip.tokenizer().encode(&text)?.ids.len();
    clip.embed_texts(&[&text])?; // warm-up
    let mut ms = (0..runs.max(1))
        .map(|_| {
            let started = Instant::now();
            clip.embed_texts(&[&text]).map(|_| started.elapsed().as_secs_f64() * 1e3)
        })
        .collect::<Result<Vec<_>, _>>()?;
    ms.sort_by(f64::total_cmp);
    Ok(QueryTiming { text, tokens, ms_median: ms[ms.len() / 2] })
}
