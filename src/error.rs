//! The library's one error type. Every variant names what went wrong and, where there is one,
//! what the user can do about it; the binary prints the chain and maps it to an exit code.

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{path} does not exist. If the folder moved, index it where it is now (its pictures' embeddings are reused), then `imgsearch forget {path}`")]
    RootNotFound { path: PathBuf },

    #[error("{path} is not a usable model checkpoint: {reason}")]
    BadCheckpoint { path: PathBuf, reason: String },

    #[error("model {path} has no {missing}. imgsearch reads Hugging Face CLIP and SigLIP folders (config.json, model.safetensors or pytorch_model.bin, tokenizer.json), OpenCLIP folders (open_clip_config.json, open_clip_model.safetensors) and bare OpenCLIP state dicts (file.pt with --arch); `imgsearch models` lists them")]
    MissingModelFile { path: PathBuf, missing: String },

    #[error("cannot serve HTTPS with {path}: {reason}. --tls-cert takes the PEM certificate chain, --tls-key its PEM private key")]
    Tls { path: PathBuf, reason: String },

    #[error("cannot fetch {file} of model {repo} from the Hugging Face hub: {reason}. {hint}")]
    Download { repo: String, file: String, reason: String, hint: String },

    #[error("cannot decode {path}: {reason}")]
    Decode { path: PathBuf, reason: String },

    /// A picture in a format whose decoder this machine lacks (libheif for HEIC and AVIF): not
    /// the file's fault, and worth trying again once the decoder is installed.
    #[error("cannot decode {path}: {reason}")]
    NoDecoder { path: PathBuf, reason: String },

    #[error(
        "image {path} is {width}x{height} = {pixels} pixels, over the limit of {limit} for its kind of pixel; if it is \
         genuine, give `index` or `serve` --max-pixels {admitting} or more"
    )]
    TooLarge { path: PathBuf, width: u32, height: u32, pixels: u64, limit: u64, admitting: u64 },

    #[error("tokenizer: {0}")]
    Tokenizer(String),

    #[error("device {requested} is not available: {reason}")]
    Device { requested: String, reason: String },

    #[error("--dtype {requested} is not available here: {reason}")]
    Precision { requested: &'static str, reason: &'static str },

    #[error("the data folder {path} is in use by another imgsearch process (an `index` or `serve` still running?); wait for it to finish or stop it, then retry")]
    DataDirLocked { path: PathBuf },

    #[error("{path}: permission denied. imgsearch opens its catalog for writing even to search: run it as the user who owns the data folder, or give this user write access to it")]
    NoWriteAccess { path: PathBuf },

    #[error("storage error in {path}: {reason}. If the disk is full, free space and re-run: work done so far is kept")]
    Store { path: PathBuf, reason: String },

    #[error(
        "the disk holding {path} has {free_mib} MiB free, and imgsearch keeps {needed_mib} MiB free there while it \
         writes (a disk that fills while the catalog is written can damage it), so it stopped before writing. Free \
         space on that disk (or set IMGSEARCH_MIN_FREE_MB lower), then re-run: work done so far is kept"
    )]
    DiskFull { path: PathBuf, free_mib: u64, needed_mib: u64 },

    #[error("{what} is damaged: {reason}")]
    Corrupt { what: String, reason: String },

    #[error("the library {library} was indexed with model {recorded}, not {requested}: embeddings of different models cannot be mixed. Use --model with the recorded one, another library (--data-dir or --store), or delete it to re-index")]
    ModelMismatch { library: String, recorded: String, requested: String },

    #[error("database {location}: {reason}")]
    Database { location: String, reason: String },

    #[error("cannot listen on {addr}: {reason}")]
    Listen { addr: String, reason: String },

    /// An export or import that cannot go ahead (a file without the needed columns, of another
    /// model, ...): the message says why and what to do.
    #[error("{0}")]
    Exchange(String),

    /// A zero-shot label set that cannot be used (the message says why and what to do).
    #[error("{0}")]
    LabelSet(String),

    #[error("bad query: {0}")]
    BadQuery(String),

    #[error("cannot read the query as written in {language:?}: {reason}")]
    UnknownLanguage { language: String, reason: String },

    #[error("{what} does not exist")]
    NotFound { what: String },

    #[error("{path} changed since it was indexed; index its folder again (`serve --watch` does so by itself) to search and show the new version")]
    FileChanged { path: PathBuf },

    #[error("{path} holds other content than was indexed, under the size and modification time indexing compares: `touch` it, then index its folder again (`serve --watch` does so by itself)")]
    ContentChanged { path: PathBuf },

    #[error("this host does not know where the root `{name}` is mounted: give `--mount {name}=PATH` (or run `imgsearch index {name}=PATH` here once)")]
    UnknownRoot { name: String },

    #[error("this library has no embeddings of {model} ({held}); `imgsearch index --model {model} PATH` makes them")]
    UnknownModelSpace { model: String, held: String },

    #[error("the {0} tower of the model was not loaded (a bug in imgsearch: please report it)")]
    TowerNotLoaded(&'static str),
    #[error("model computation failed: {0}")]
    Candle(#[from] candle_core::Error),
}
