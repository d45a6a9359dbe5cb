//! The command line: one file per subcommand; `main.rs` only parses and reports.

mod access;
mod bench;
mod duplicates;
mod embed;
mod exchange;
mod index;
mod models;
mod search;
mod serve;
mod stats;
mod tags;
mod vector_file;

use clap::{Parser, Subcommand};

use imgsearch::model::ModelSpec;
use imgsearch::{DeviceChoice, Precision, DEFAULT_MODEL};

#[derive(Debug, Parser)]
#[command(name = "imgsearch", version, about = "Semantic image search over your photos, with CLIP")]
pub struct Cli {
    /// The data folder holding the index (default: $IMGSEARCH_DATA_DIR, else the platform data
    /// folder, e.g. ~/.local/share/imgsearch).
    #[arg(long, global = true, value_name = "DIR")]
    pub data_dir: Option<std::path::PathBuf>,

    /// Keep the library in PostgreSQL (with pgvector) instead of the data folder:
    /// postgres://USER[:PASSWORD]@HOST:PORT/DATABASE. Several hosts can index into and serve
    /// from one database; the data folder then holds only local caches (thumbnails).
    #[arg(long, global = true, env = "IMGSEARCH_STORE", value_name = "URL")]
    pub store: Option<String>,

    /// With --store: a streaming replica of that database (e.g. made with `pg_basebackup -R`)
    /// for searches and listings, so that readers do not load the primary. Writes stay on --store.
    #[arg(long, global = true, env = "IMGSEARCH_READ_STORE", value_name = "URL")]
    pub read_store: Option<String>,

    /// Where a named root (`imgsearch index NAME=PATH`) is on this host, when it differs from
    /// where the host that indexed it mounts it: `--mount photos=/Volumes/photos`. Repeatable.
    /// Without it, a host uses where its own `index NAME=PATH` found the root, else the path
    /// recorded by the host that indexed it.
    #[arg(long = "mount", global = true, value_name = "NAME=PATH", value_parser = imgsearch::store::roots::parse_mount)]
    pub mounts: Vec<(String, std::path::PathBuf)>,

    #[command(flatten)]
    pub compute: ComputeArgs,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Index pictures under one or more folders (incremental: re-run to update).
    Index(index::IndexArgs),
    /// Take the pictures under folders out of the library: a root that was moved, renamed or
    /// deleted (whose pictures `index` keeps), or a folder that should no longer be found.
    Forget(index::ForgetArgs),
    /// Web UI and REST API (default http://127.0.0.1:7878/).
    Serve(serve::ServeArgs),
    /// Search by text (with filters) or, with --image, by example.
    Search(search::SearchArgs),
    /// Pictures like the given one ("more like this").
    Similar(search::SimilarArgs),
    /// What the data folder holds: counts, model, size, last run.
    Stats(stats::StatsArgs),
    /// List every indexed picture.
    List(stats::ListArgs),
    /// Rebuild the vector and text indexes from the catalog.
    Repair,
    /// Rebuild the vector graph, dropping deleted pictures' tombstones; delete the cached
    /// thumbnails and previews of pictures gone or changed.
    Optimize,
    /// Write the library (paths, embeddings, metadata) to a Parquet file.
    Export(exchange::ExportArgs),
    /// Add pictures with their embeddings from a Parquet file, embedding nothing again.
    Import(exchange::ImportArgs),
    /// Copy the library into another backend (a data folder into PostgreSQL, or back),
    /// embedding nothing again.
    Migrate(exchange::MigrateArgs),
    /// Print CLIP embeddings of pictures and texts.
    Embed(embed::EmbedArgs),
    /// Time the image encoder per batch size on this machine.
    Bench(bench::BenchArgs),
    /// The model families imgsearch runs, and which model to pick for what (size, speed here).
    Models(models::ModelsArgs),
    /// Exact copies, near duplicates (re-encoded, resized) and bursts, each with the copy to keep.
    Duplicates(duplicates::DuplicatesArgs),
    /// Zero-shot tags with their counts; options change the labels or threshold and retag.
    Tags(tags::TagsArgs),
    /// Keywords people gave pictures, and the names of people in them, with their counts.
    Keywords(stats::KeywordsArgs),
    /// Who may sign in to `serve`: add, passwd, remove, list.
    #[command(subcommand)]
    User(access::UserCommand),
    /// API tokens for scripts (`Authorization: Bearer`): create, list, revoke.
    #[command(subcommand)]
    Token(access::TokenCommand),
}

/// Where and in which number format the encoders run.
#[derive(Debug, Clone, clap::Args)]
pub struct ComputeArgs {
    /// Where the encoders run.
    #[arg(long, global = true, value_enum, default_value_t = DeviceChoice::Auto)]
    pub device: DeviceChoice,

    /// Number format of the encoders. bf16 runs on CPUs with AMX (Intel Xeon 4th generation and
    /// later): on a 2-core Xeon 2-2.5× faster encoding, 1.6× faster indexing. On CPUs with
    /// AVX512_BF16 but no AMX (AMD Zen 4 and later) 1.6-1.9× faster encoding of pictures and 2×
    /// faster text queries. On CUDA GPUs bf16 and f16 run the towers on tensor cores. The test
    /// checkpoints' embeddings stay within cosine 0.999 of f32.
    #[arg(long, global = true, value_enum, default_value_t = Precision::F32)]
    pub dtype: Precision,

    /// The OpenCLIP architecture of a bare state dict given to --model (`--model
    /// RemoteCLIP-ViT-B-32.pt --arch ViT-B-32`), or of the weights in a folder or hub repository
    /// without open_clip_config.json: a name `imgsearch models` lists, or a JSON file with the
    /// model config. A file named after its architecture needs no --arch.
    #[arg(long, global = true)]
    pub arch: Option<String>,

    /// How many threads to compute with: the encoders, the pictures `index` decodes at once, the
    /// requests `serve` works on at once. Default: one per CPU this process may use (`taskset`
    /// and container CPU limits count). Fewer leave cores to other programs on a shared machine.
    #[arg(long, global = true, env = "IMGSEARCH_THREADS", value_name = "N",
          value_parser = clap::value_parser!(u16).range(1..))]
    pub threads: Option<u16>,
}

impl ComputeArgs {
    /// Resolves `model` (a folder or hub id) for this precision, and opens the device.
    pub fn open(&self, model: &str) -> imgsearch::Result<(ModelSpec, candle_core::Device)> {
        let model = match &self.arch {
            Some(arch) => format!("{model}#{arch}"),
            None => model.to_string(),
        };
        let spec = ModelSpec::resolve(&model)?.with_precision(self.dtype);
        let device = self.device.open()?;
        // Before any work: `index` loads the model only once it has walked the folders.
        spec.precision.check(&device)?;
        Ok((spec, device))
    }
}

/// Shared by every command that loads a model.
#[derive(Debug, clap::Args)]
pub struct ModelArgs {
    /// A local checkpoint folder (config.json, model.safetensors, tokenizer.json) or a Hugging Face
    /// repo id, optionally with @revision.
    #[arg(long, default_value = DEFAULT_MODEL)]
    pub model: String,
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    if let Some(threads) = cli.compute.threads {
        // Before anything uses rayon's pool, which would start it at its default size.
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads.into())
            .build_global()
            .map_err(|e| anyhow::anyhow!("cannot start {threads} compute threads: {e}"))?;
    }
    let data_dir = cli.data_dir.unwrap_or_else(imgsearch::store::default_data_dir);
    let library = imgsearch::store::Location::new(data_dir, cli.store, cli.read_store)?;
    // Commands that read a library never make one: `stats --data-dir TYPO` made the folder (in
    // a photo folder, where the typo named one) and reported an empty library, and `--store` with
    // another application's database made imgsearch's tables in it.
    let reads_a_library = matches!(
        cli.command,
        Command::Search(_)
            | Command::Similar(_)
            | Command::Stats(_)
            | Command::List(_)
            | Command::Forget(_)
            | Command::Repair
            | Command::Optimize
            | Command::Export(_)
            | Command::Migrate(_)
            | Command::Duplicates(_)
            | Command::Tags(_)
            | Command::Keywords(_)
    );
    if reads_a_library && !library.holds_a_library()? {
        match &library {
            imgsearch::store::Location::Folder(dir) => anyhow::bail!(
                "there is no library in {}: index pictures into it first (`imgsearch index PATH`), or name the folder \
                 that holds one with --data-dir",
                dir.display()
            ),
            imgsearch::store::Location::Postgres { .. } => anyhow::bail!(
                "there is no library in the database --store names: index pictures into it first (`imgsearch --store \
                 URL index PATH`), or name the database that holds one"
            ),
        }
    }
    // The model space most commands work on: the one searches use (see store/spaces.rs).
    let current = || imgsearch::store::spaces::for_search(&library, None).map(|space| space.location);
    let held = library.clone();
    let ran = match cli.command {
        Command::Index(args) => index::run(args, library, cli.compute, &cli.mounts),
        Command::Forget(args) => index::forget(args, library, &cli.mounts),
        Command::Serve(args) => serve::run(args, library, cli.compute, &cli.mounts),
        Command::Search(args) => search::search(args, library, cli.compute, &cli.mounts),
        Command::Similar(args) => search::similar(args, library, cli.compute, &cli.mounts),
        Command::Stats(args) => stats::stats(args, library, &cli.mounts),
        Command::List(args) => stats::list(args, current()?),
        Command::Repair => stats::repair(current()?),
        Command::Optimize => stats::optimize(current()?),
        Command::Export(args) => exchange::export(args, library),
        Command::Import(args) => exchange::import(args, library),
        Command::Migrate(args) => exchange::migrate(args, library),
        Command::Embed(args) => embed::run(args, cli.compute),
        Command::Bench(args) => bench::run(args, cli.compute),
        Command::Models(args) => models::run(args, &library),
        Command::Duplicates(args) => duplicates::run(args, current()?),
        Command::Tags(args) => tags::run(args, current()?, cli.compute),
        Command::Keywords(args) => stats::keywords(args, current()?),
        Command::User(command) => access::user(command, library),
        Command::Token(command) => access::token(command, library),
    };
    ran.map_err(|error| with_the_server_that_holds(error, &held))
}

/// The server `server.json` announces where `error` is a data folder found locked (see
/// `imgsearch::server::local`): a file a killed server left names one no longer there, which
/// asking it finds out.
pub fn announced_holder(
    error: &anyhow::Error,
    library: &imgsearch::store::Location,
) -> Option<imgsearch::server::local::Announcement> {
    let locked = error
        .chain()
        .any(|cause| matches!(cause.downcast_ref::<imgsearch::Error>(), Some(imgsearch::Error::DataDirLocked { .. })));
    match library {
        imgsearch::store::Location::Folder(folder) if locked => imgsearch::server::local::find(folder),
        _ => None,
    }
}

/// An error from a data folder a running server holds says which server, and what it answers.
fn with_the_server_that_holds(error: anyhow::Error, library: &imgsearch::store::Location) -> anyhow::Error {
    match announced_holder(&error, library).filter(imgsearch::server::local::answers) {
        Some(server) => error.context(format!(
            "the server at {} holds the data folder: `imgsearch search` (a text or --image, without --model or \
             --like) asks it; stop it for this command",
            server.url
        )),
        None => error,
    }
}

/// An existing index with its model loaded: what `search`, `similar` and `serve` start from.
pub struct OpenIndex {
    /// The model space it searches (see store/spaces.rs).
    pub space: imgsearch::store::Location,
    pub engine: imgsearch::search::SearchEngine,
    pub spec: ModelSpec,
    pub device: candle_core::Device,
}

/// `model`: which of the library's model spaces to search (default: the newest complete one);
/// `towers`: the model towers the command will use (a text search loads only the text tower);
/// `mounts`: `--mount`.
pub fn open_index(
    library: &imgsearch::store::Location,
    model: Option<&str>,
    compute: ComputeArgs,
    towers: imgsearch::model::Towers,
    mounts: &[(String, std::path::PathBuf)],
) -> anyhow::Result<OpenIndex> {
    use anyhow::Context;
    let space = imgsearch::store::spaces::for_search(library, model)?;
    let data = imgsearch::store::open(&space.location)?;
    let Some(info) = data.model_info()? else {
        anyhow::bail!("the library {} has no index yet: run `imgsearch index PATH` first", data.location());
    };
    let mounts = imgsearch::store::roots::Mounts::for_host(&*data, mounts)?;
    let (spec, device) = compute.open(&info.model)?;
    let clip = spec.load(&device, towers).with_context(|| format!("cannot load model {}", info.model))?;
    let engine = imgsearch::search::SearchEngine::new(data, clip).with_mounts(mounts);
    Ok(OpenIndex { space: space.location, engine, spec, device })
}

/// `text` (a path, a keyword, a reason) fit for one line of plain output: control characters
/// (a newline or an escape sequence in a file name would split a record or drive the terminal)
/// and the characters that reorder or break lines are written as escapes (`\n`, `\u{1b}`).
/// `--json` output keeps every name exact.
pub fn one_line(text: &str) -> std::borrow::Cow<'_, str> {
    let unsafe_char = |c: char| {
        c.is_control() || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    };
    if !text.contains(unsafe_char) {
        return text.into();
    }
    text.chars()
        .map(|c| if unsafe_char(c) { c.escape_default().to_string() } else { c.to_string() })
        .collect::<String>()
        .into()
}

#[cfg(test)]
mod tests {
    #[test]
    fn plain_output_escapes_what_would_break_a_line_or_drive_the_terminal() {
        assert_eq!(super::one_line("/photos/beach 2023.jpg"), "/photos/beach 2023.jpg");
        assert_eq!(super::one_line("a\nb\tc\u{1b}[2Jd\0e"), "a\\nb\\tc\\u{1b}[2Jd\\u{0}e");
        assert_eq!(super::one_line("x\u{202e}gpj.exe"), "x\\u{202e}gpj.exe");
        assert_eq!(super::one_line("日本\\語"), "日本\\語");
    }
}
