//! `imgsearch search` and `imgsearch similar`: queries from the command line.

use imgsearch::store::Location;
use std::path::PathBuf;

use anyhow::Context;

use super::ComputeArgs;
use imgsearch::ingest::decode::DEFAULT_MAX_PIXELS;
use imgsearch::ingest::pipeline::DEFAULT_MAX_FILE_SIZE;
use imgsearch::ingest::walk;
use imgsearch::model::Towers;
use imgsearch::search::{Composition, Example, SearchEngine, SearchHit, SearchParams, SortOrder};

#[derive(Debug, clap::Args)]
pub struct ResultArgs {
    /// How many results.
    #[arg(short, long, default_value_t = 20)]
    k: usize,
    /// Skip this many results (paging).
    #[arg(long, default_value_t = 0)]
    offset: usize,
    /// Drop results less similar than this (cosine, -1..1).
    #[arg(long, value_parser = cosine)]
    min_score: Option<f32>,
    /// Drop text matches the model thinks less probable than this (0..1). Models with calibrated
    /// scores only (SigLIP); their hits then show the probability beside the cosine.
    #[arg(long, value_parser = probability)]
    min_prob: Option<f32>,
    /// Order: by similarity, or by date taken after the similarity cut.
    #[arg(long, value_enum, default_value_t = SortOrder::Score)]
    sort: SortOrder,
    /// The language the query is written in: a FLORES-200 code (deu_Latn) or a language tag (de,
    /// pt-BR). Read by models that read texts by language (NLLB-CLIP; English when not given);
    /// other models read every query alike.
    #[arg(long, value_name = "LANGUAGE")]
    lang: Option<String>,
    /// Print the hits as a JSON list.
    #[arg(long)]
    json: bool,
    /// Search this model's embeddings, where the library holds several (`imgsearch stats` lists
    /// them). Default: the newest model whose indexing finished.
    #[arg(long)]
    model: Option<String>,
}

impl ResultArgs {
    /// These options as the search API's query parameters.
    fn query_pairs(&self) -> Vec<(&'static str, String)> {
        let sort = match self.sort {
            SortOrder::Score => "score",
            SortOrder::Date => "date",
        };
        let mut pairs = vec![("k", self.k.to_string()), ("offset", self.offset.to_string()), ("sort", sort.into())];
        pairs.extend(self.min_score.map(|min| ("min_score", min.to_string())));
        pairs.extend(self.min_prob.map(|min| ("min_prob", min.to_string())));
        pairs.extend(self.lang.clone().map(|lang| ("lang", lang)));
        pairs
    }

    fn params(&self) -> SearchParams {
        SearchParams {
            k: self.k,
            offset: self.offset,
            min_score: self.min_score,
            min_prob: self.min_prob,
            sort: self.sort,
            language: self.lang.clone(),
        }
    }

    fn print(&self, hits: &[SearchHit]) -> anyhow::Result<()> {
        if self.json {
            println!("{}", serde_json::to_string(hits)?);
        } else {
            for hit in hits {
                // The other files of the shot (a RAW beside its JPEG) follow on the same line; a
                // video's moments as "clip.mp4 @1:05", the next ones of the same video as "@2:10".
                let mut files = Vec::with_capacity(1 + hit.also.len());
                let mut previous = None;
                let entries = std::iter::once((&hit.path, hit.at_seconds))
                    .chain(hit.also.iter().map(|file| (&file.path, file.at_seconds)));
                for (path, at_seconds) in entries {
                    let time = at_seconds.map(|seconds| format!("@{}", clock_time(seconds)));
                    files.push(match (time, previous == Some(path)) {
                        (Some(time), true) => time,
                        (Some(time), false) => format!("{} {time}", super::one_line(path)),
                        (None, _) => super::one_line(path).into_owned(),
                    });
                    previous = Some(path);
                }
                let files = files.join("\t");
                match (hit.score, hit.prob) {
                    (Some(score), Some(prob)) => println!("{score:.4}\tp={prob:.3}\t{files}"),
                    (Some(score), None) => println!("{score:.4}\t{files}"),
                    (None, _) => println!("{}\t{files}", hit.taken.as_deref().unwrap_or("-")),
                }
            }
        }
        Ok(())
    }
}

/// Seconds into a video as people read them: "1:05", "1:02:09".
fn clock_time(seconds: f64) -> String {
    let whole = seconds.round() as u64;
    let (hours, minutes, seconds) = (whole / 3600, whole / 60 % 60, whole % 60);
    if hours > 0 {
        format!("{hours}:{minutes:02}:{seconds:02}")
    } else {
        format!("{minutes}:{seconds:02}")
    }
}

fn cosine(text: &str) -> Result<f32, String> {
    match text.trim().parse::<f32>() {
        Ok(c) if (-1.0..=1.0).contains(&c) => Ok(c),
        _ => Err(format!("a cosine similarity is a number from -1 to 1, not {text:?}")),
    }
}

fn probability(text: &str) -> Result<f32, String> {
    match text.trim().parse::<f32>() {
        Ok(p) if (0.0..=1.0).contains(&p) => Ok(p),
        _ => Err(format!("a probability is a number from 0 to 1, not {text:?}")),
    }
}

#[derive(Debug, clap::Args)]
pub struct SearchArgs {
    /// What to look for, with optional filters (see README: path:, folder:, name:, camera:,
    /// caption:, keyword:, after:, before:, type:) and composition (-word, -"a phrase", 2:weighted words).
    /// A query may start with `-`: `imgsearch search "-people 2:beach"`.
    #[arg(required_unless_present_any = ["image", "vector", "like"], allow_hyphen_values = true)]
    query: Option<String>,
    /// Also like this picture (repeatable): an indexed picture (its stored embedding) or any
    /// picture file. Combined with the query's text: "like these, but at night".
    #[arg(long, value_name = "PICTURE", conflicts_with_all = ["image", "vector"])]
    like: Vec<PathBuf>,
    /// Move away from this text (repeatable), as `-"text"` in the query does.
    #[arg(long = "not", value_name = "TEXT", conflicts_with_all = ["image", "vector"])]
    not: Vec<String>,
    /// Find pictures like this one instead (reverse image search). A query beside it holds
    /// filters only: `--image beach.jpg "after:2020 type:jpeg"`.
    #[arg(long)]
    image: Option<PathBuf>,
    /// Search by an embedding computed elsewhere: a JSON list of numbers, `imgsearch embed --json`
    /// output holding one embedding, or a .npy file of float32/float64 (shape (dim,) or (1, dim)).
    /// It must be L2-normalised and of the library's dimension. No model is loaded. A query
    /// beside it holds filters only.
    #[arg(long, value_name = "FILE", conflicts_with = "image")]
    vector: Option<PathBuf>,
    #[command(flatten)]
    results: ResultArgs,
}

#[derive(Debug, clap::Args)]
pub struct SimilarArgs {
    /// An indexed picture (its stored embedding is used) or any picture file.
    path: PathBuf,
    #[command(flatten)]
    results: ResultArgs,
}

pub fn search(
    args: SearchArgs,
    library: Location,
    compute: ComputeArgs,
    mounts: &[(String, PathBuf)],
) -> anyhow::Result<()> {
    // Beside a picture or a vector, the query holds filters only.
    let example_filters = |option: &str| match &args.query {
        Some(query) => {
            imgsearch::search::parse_filters_only(query, &format!("the query beside {option}")).map(|q| q.filters)
        }
        None => Ok(Vec::new()),
    };
    if let Some(file) = &args.vector {
        let filters = example_filters("--vector")?;
        let vector = super::vector_file::read(file)?;
        let space = imgsearch::store::spaces::for_search(&library, args.results.model.as_deref())?;
        let engine = imgsearch::search::SearchEngine::without_model(imgsearch::store::open(&space.location)?);
        let hits = engine.search_vector(&vector, &filters, &args.results.params())?;
        return args.results.print(&hits);
    }
    let image_filters = match args.image {
        Some(_) => example_filters("--image")?,
        None => Vec::new(),
    };
    let towers = match (args.image.is_some(), args.like.is_empty()) {
        (true, _) => Towers::Image,
        (false, true) => Towers::Text,
        (false, false) => Towers::Both,
    };
    let engine = match super::open_index(&library, args.results.model.as_deref(), compute, towers, mounts) {
        Ok(opened) => opened.engine,
        Err(opening) => return through_server(&args, &library, opening),
    };
    let params = args.results.params();
    if !args.like.is_empty() || !args.not.is_empty() {
        let parsed = imgsearch::search::parse(args.query.as_deref().unwrap_or_default())?;
        let mut like = Vec::with_capacity(args.like.len());
        for path in &args.like {
            like.push(example(&engine, path)?);
        }
        let not = parsed.not.into_iter().chain(args.not.iter().cloned()).collect();
        let composition = Composition { texts: parsed.parts, not, like };
        return args.results.print(&engine.search_composed(&composition, &parsed.filters, &params)?);
    }
    let hits = match (&args.query, &args.image) {
        (_, Some(path)) => {
            engine.search_image(&read_picture(path)?, path, DEFAULT_MAX_PIXELS, &image_filters, &params)?
        }
        (Some(query), None) => engine.search_text(query, &params)?,
        (None, None) => unreachable!("clap requires a query or --image"),
    };
    args.results.print(&hits)
}

/// The data folder is held by a running `serve` (see `imgsearch::server::local`): the same
/// search, asked of it. Any other failure stays as it was, and so does this one where the server
/// is not there (it was killed, leaving its `server.json`) or cannot take the search.
fn through_server(args: &SearchArgs, library: &Location, opening: anyhow::Error) -> anyhow::Result<()> {
    use imgsearch::server::local::{self, Ask, Refused};
    let server = super::announced_holder(&opening, library);
    // `--not TEXT` is `-"TEXT"` in the query syntax (which has no way to quote a quote).
    let forwarded = args.results.model.is_none() && args.like.is_empty() && !args.not.iter().any(|t| t.contains('"'));
    let Some(server) = server.filter(|_| forwarded) else { return Err(opening) };
    let mut query = args.results.query_pairs();
    let not = args.not.iter().map(|text| format!(" -\"{text}\""));
    let q: String = args.query.iter().cloned().chain(not).collect();
    if !q.is_empty() {
        query.push(("q", q));
    }
    let answer = match &args.image {
        Some(path) => {
            let bytes = read_picture(path)?;
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            local::ask(&server, Ask::Image { query: &query, name: &name, bytes: &bytes })
        }
        None => local::ask(&server, Ask::Text(&query)),
    };
    match answer {
        Ok(hits) => args.results.print(&hits),
        Err(Refused::NotThere) => Err(opening),
        Err(Refused::Failed(why)) => {
            anyhow::bail!("the server at {} holds the data folder, and the search through it failed: {why}", server.url)
        }
    }
}

/// An example picture given on the command line: the stored embedding of an indexed picture,
/// else the file's own.
fn example(engine: &SearchEngine, path: &std::path::Path) -> anyhow::Result<Example> {
    if let Some(record) = engine.indexed_file(path)? {
        return Ok(Example::Indexed(record.id));
    }
    Ok(Example::Embedding(engine.embed_picture(&read_picture(path)?, path, DEFAULT_MAX_PIXELS)?))
}

/// A query's picture file: a regular file (a pipe would block the search) of at most the size
/// `index` takes.
fn read_picture(path: &std::path::Path) -> anyhow::Result<Vec<u8>> {
    walk::read_regular_file(path, DEFAULT_MAX_FILE_SIZE)
        .with_context(|| format!("cannot read the picture {}", path.display()))
}

pub fn similar(
    args: SimilarArgs,
    library: Location,
    compute: ComputeArgs,
    mounts: &[(String, PathBuf)],
) -> anyhow::Result<()> {
    let engine = super::open_index(&library, args.results.model.as_deref(), compute, Towers::Image, mounts)?.engine;
    let params = args.results.params();
    let hits = match engine.indexed_file(&args.path)? {
        Some(record) => engine.similar_to(record.id, &params)?,
        None => engine.search_image(&read_picture(&args.path)?, &args.path, DEFAULT_MAX_PIXELS, &[], &params)?,
    };
    args.results.print(&hits)
}
