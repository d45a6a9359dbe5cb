//! `imgsearch bench`: image-encoder throughput of a model on this machine's device, per batch
//! size (to pick `--batch-size`, and for benches/gpu.sh where no Rust toolchain exists).

use std::time::Instant;

use anyhow::Context;
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
}

#[derive(Serialize)]
struct Row {
    batch: usize,
    images_per_s: f64,
    ms_per_batch: f64,
}

pub fn run(args: BenchArgs, compute: super::ComputeArgs) -> anyhow::Result<()> {
    let (spec, device) = compute.open(&args.model)?;
    let clip = spec
        .load(&device, imgsearch::model::Towers::Image)
        .with_context(|| format!("cannot load model {}", args.model))?;
    let (h, w) = spec.preprocess.output_size();
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
    println!(
        "{}",
        serde_json::to_string(&serde_json::json!({"model": spec.model_id, "device": format!("{device:?}"),
                "dtype": format!("{:?}", spec.precision).to_lowercase(),
                "cpu_kernels": imgsearch::model::kernels::isa().name(), "results": rows}))?
    );
    Ok(())
}
