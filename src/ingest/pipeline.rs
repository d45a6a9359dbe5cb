//! `imgsearch index`: walker → parallel read + hash + decode + preprocess → bounded queue →
//! batched encoder → one writer to the stores.
//!
//! Every queue is bounded, so memory does not grow with the library. Unchanged files
//! (same path, size and mtime) are never read; a file whose content is already indexed (moved or
//! copied) reuses that embedding; the model is loaded only when something needs embedding.
//! Each writer batch is durable in the catalog before the indexes see it, so `kill -9` at any
//! moment loses at most the batch in flight, and the next open repairs the indexes.

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use candle_core::Device;
use crossbeam_channel::{bounded, Receiver, Sender};
use indicatif::ProgressBar;
use serde::Serialize;

use super::captions;
use super::decode::{self, MinSize};
use super::exif::{photo_facts, FACTS_VERSION};
use super::walk::{self, walk, Candidate, Found};
use super::{heif, raw, video};
use crate::error::{Error, Result};
use crate::model::{Clip, ModelSpec, PreprocessedImage, Towers};
use crate::store::catalog::{
    path_from_bytes, stored_bytes, ImageRecord, IndexedRoot, PhotoFacts, SkipRecord, StoredPath,
};
use crate::store::roots::{Mounts, Root};
use crate::store::{path_too_long, Change, Known, Library, Lookup, Tagging};

/// Files larger than this are skipped unread unless `--max-file-size` says otherwise.
pub const DEFAULT_MAX_FILE_SIZE: u64 = 200 * 1024 * 1024;

/// Pictures per encoder batch unless `--batch-size` says otherwise: a GPU needs large batches
/// to be busy; on CPU larger batches gain nothing and hold more decoded pictures in memory.
pub fn default_batch_size(device: &Device) -> usize {
    if device.is_cpu() {
        16
    } else {
        128
    }
}

#[derive(Debug, Clone)]
pub struct IndexOptions {
    pub roots: Vec<Root>,
    /// Where this host mounts the library's named roots: a file under one is stored under the
    /// root's name (the named `roots` are added to these).
    pub mounts: Mounts,
    pub hidden: bool,
    pub batch_size: usize,
    pub max_pixels: u64,
    /// Files larger than this are skipped without being read.
    pub max_file_size: u64,
    pub progress: bool,
    /// A root folder that holds no file now had its pictures deleted on purpose: remove them.
    /// Otherwise an empty root is taken for a drive or share that is not mounted, and the
    /// library keeps its pictures (embedding them again would take hours).
    pub remove_from_empty: bool,
    /// A rescan of roots the library records (`serve --watch`), not a run a person asked for:
    /// a root forgotten meanwhile (another host's `forget`) is not recorded again, and what
    /// the run stored under it goes too.
    pub rescan: bool,
}

/// A file that was not indexed in this run, and why.
#[derive(Debug, Clone, Serialize)]
pub struct FileError {
    pub path: String,
    pub reason: String,
}

#[derive(Debug, Default, Serialize)]
pub struct IndexSummary {
    /// Files looked at (regular files under the roots).
    pub scanned: u64,
    /// Newly embedded pictures.
    pub indexed: u64,
    /// Pictures whose content was already indexed: under another path (moved or copied), or read
    /// again for what their file says (a new sidecar, a newer reader of facts).
    pub reused: u64,
    pub unchanged: u64,
    pub removed: u64,
    /// Files that were read and could not be indexed (listed in `errors`, and recorded: `stats`
    /// counts the same); non-images are not counted.
    pub skipped: u64,
    /// What the walk passed over without reading (listed in `errors`): pipes, devices and
    /// sockets, symbolic link loops, folders it may not read. Not counted as scanned.
    pub not_read: u64,
    /// Moments embedded from the videos among the files indexed (a frame every few seconds).
    pub video_moments: u64,
    pub errors: Vec<FileError>,
    pub seconds: f64,
}

/// Facts about one file gathered by a decode worker.
struct FileFacts {
    path: StoredPath,
    size: u64,
    mtime_ns: i128,
    hash: String,
    width: u32,
    height: u32,
    format: String,
    facts: PhotoFacts,
}

impl FileFacts {
    /// A moment of a video after its opening one: a record of its own, but not another file.
    fn is_later_moment(&self) -> bool {
        video::later_moment(&self.format, &stored_bytes(&self.path)).is_some()
    }

    fn into_record(self, id: u64, embedding: Vec<f32>) -> ImageRecord {
        ImageRecord {
            id,
            path: self.path,
            size: self.size,
            mtime_ns: self.mtime_ns,
            hash: self.hash,
            width: self.width,
            height: self.height,
            format: self.format,
            facts: self.facts,
            embedding,
            indexed_at: SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
            tags: Vec::new(),
            facts_version: FACTS_VERSION,
        }
    }
}

/// What a decode worker hands the encoder.
enum Work {
    Embed(FileFacts, PreprocessedImage),
    /// Content the library holds: its embedding is taken, nothing is decoded. `same_path`:
    /// held at this very path (only the file's time changed, or another host stored it a
    /// moment ago), so the file is unchanged, not moved or copied.
    Reuse {
        file: FileFacts,
        embedding: Vec<f32>,
        same_path: bool,
    },
    Skip(SkipRecord),
}

/// What the encoder hands the writer (which assigns ids: only it writes the catalog).
#[derive(Default)]
struct Batch {
    pictures: Vec<(FileFacts, Vec<f32>)>,
    skips: Vec<SkipRecord>,
    indexed: u64,
    reused: u64,
    unchanged: u64,
    video_moments: u64,
    /// Pictures through the encoder (a video's moments each count).
    embedded: u64,
}

impl Batch {
    fn len(&self) -> usize {
        self.pictures.len() + self.skips.len()
    }

    /// The files it finishes (a video's later moments are part of its file).
    fn files(&self) -> u64 {
        (self.pictures.iter().filter(|(file, _)| !file.is_later_moment()).count() + self.skips.len()) as u64
    }
}

/// Writer batches of reused/skipped files are flushed at this size even without embeddings.
const PASS_THROUGH_BATCH: usize = 256;

/// `loaded`: a model already in memory with its image tower (the server's), used instead of
/// loading `spec` again; without one the model loads only once something needs embedding.
pub fn run(
    mut data: impl DataAccess,
    spec: &ModelSpec,
    loaded: Option<&Clip>,
    device: &Device,
    options: &IndexOptions,
) -> Result<IndexSummary> {
    let started = Instant::now();
    let catalog = data.with(|data| data.check_model(&spec.info()).map(|()| data.lookup()))?;
    let tagging = data.with(|data| data.tagging())?;
    // A first run into an empty PostgreSQL library builds the vector index once at its end.
    data.with(|data| data.begin_bulk_load())?;
    let mut mounts = options.mounts.clone();
    let mut roots = Vec::with_capacity(options.roots.len());
    for root in &options.roots {
        let path = std::fs::canonicalize(&root.path).map_err(|source| match source.kind() {
            std::io::ErrorKind::NotFound => Error::RootNotFound { path: root.path.clone() },
            _ => Error::Io { path: root.path.clone(), source },
        })?;
        if let Some(name) = &root.name {
            mounts.insert(name.clone(), path.clone());
        }
        roots.push(path);
    }
    let mounts = &mounts;
    let queued = AtomicU64::new(0);
    let progress = progress_bar(options.progress);
    let workers = crate::cpu_threads();
    let batch_size = options.batch_size.max(1);

    let (jobs_tx, jobs_rx) = bounded::<Candidate>(256);
    let (work_tx, work_rx) = bounded::<Work>(batch_size * 2);
    let (batch_tx, batch_rx) = bounded::<Result<Batch>>(4);

    let mut summary = IndexSummary::default();
    let (walk_result, write_result) = std::thread::scope(|scope| {
        let walker = scope.spawn(|| {
            let result = walk_and_queue(&roots, options.hidden, mounts, &*catalog, &jobs_tx, &queued);
            drop(jobs_tx);
            result
        });
        for _ in 0..workers {
            let (jobs_rx, work_tx, catalog) = (jobs_rx.clone(), work_tx.clone(), catalog.clone());
            scope.spawn(move || {
                if device.is_cpu() {
                    yield_cores_to_the_encoder();
                }
                let send = |work| work_tx.send(work).is_ok();
                for job in jobs_rx {
                    if !examine(job, mounts, &*catalog, spec, options, &send) {
                        break; // the run was aborted
                    }
                }
            });
        }
        drop((jobs_rx, work_tx));
        scope.spawn(move || encode(work_rx, batch_tx, (spec, loaded), device, batch_size));

        let write_result = write_batches(&mut data, tagging.as_ref(), &batch_rx, &mut summary, &progress, &queued);
        drop(batch_rx); // unblocks every stage if the writer stopped early
        (walker.join().expect("walker thread panicked"), write_result)
    });
    write_result?;
    let walked = walk_result?;
    summary.scanned = walked.scanned;
    summary.unchanged += walked.unchanged;
    summary.not_read = walked.errors.len() as u64;
    summary.errors.extend(walked.errors);

    // Whatever was recorded under these roots and not seen now is gone; so is what was recorded
    // under a named root's own path before it had its name (it was stored again under the name,
    // reusing its embedding).
    let recorded_under: Vec<PathBuf> = roots.iter().flat_map(|r| [mounts.stored(r).to_path_buf(), r.clone()]).collect();
    let empty_roots: Vec<PathBuf> = match options.remove_from_empty {
        true => Vec::new(),
        false => roots
            .iter()
            .map(|r| mounts.stored(r).to_path_buf())
            .filter(|root| !walked.seen.iter().any(|seen| path_from_bytes(seen).starts_with(root)))
            .collect(),
    };
    let mut kept_in_empty = vec![0u64; empty_roots.len()];
    let empty_root_of = |path: &[u8]| empty_roots.iter().position(|root| path_from_bytes(path).starts_with(root));
    let is_gone = |path: &[u8]| {
        let as_path = path_from_bytes(path);
        recorded_under.iter().any(|r| as_path.starts_with(r))
            && !walked.seen.contains(path)
            && !walked.unreadable.iter().any(|u| as_path.starts_with(u))
    };
    let mut gone = Vec::new();
    for entry in catalog.paths() {
        let (path, _) = entry?;
        // A video's moments go with their file, and with the version of it they were taken from.
        let moment_of = video::split_moment(&path).filter(|_| !walked.seen.contains(&path)).map(|(file, _)| file);
        let remove = match moment_of {
            Some(file) => {
                is_gone(file) || (walked.queued_videos.contains(file) && is_stale_moment(&*catalog, &path, file)?)
            }
            None => is_gone(&path),
        };
        if let (true, Some(root)) = (remove, empty_root_of(&path)) {
            kept_in_empty[root] += u64::from(moment_of.is_none());
        } else if remove {
            summary.removed += u64::from(moment_of.is_none());
            gone.push(Change::Remove(StoredPath::from_bytes(path)));
        }
    }
    for record in catalog.skipped() {
        let record = record?;
        let path = stored_bytes(&record.path);
        if is_gone(&path) && empty_root_of(&path).is_none() {
            gone.push(Change::Remove(record.path));
        }
    }
    for (root, kept) in empty_roots.iter().zip(kept_in_empty).filter(|(_, kept)| *kept > 0) {
        summary.errors.push(FileError {
            path: root.display().to_string(),
            reason: format!(
                "the folder holds no file now, but the library holds {kept} pictures from it: they are kept, in case \
                 a drive or share is not mounted. If they were deleted on purpose, index it again with \
                 --remove-from-empty"
            ),
        });
    }
    data.with(|data| {
        data.apply(&gone)?;
        data.end_bulk_load(&progress)?;
        data.save()
    })?;
    progress.finish_and_clear();
    summary.seconds = started.elapsed().as_secs_f64();
    let mut indexed: Vec<IndexedRoot> = roots
        .iter()
        .zip(&options.roots)
        .map(|(path, root)| IndexedRoot {
            path: path.clone(),
            name: root.name.clone(),
            hidden: options.hidden,
            max_pixels: options.max_pixels,
            max_file_size: options.max_file_size,
        })
        .collect();
    let run = serde_json::json!({
        "finished_at": SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
        "roots": roots.iter().map(|r| r.display().to_string()).collect::<Vec<_>>(),
        "scanned": summary.scanned, "indexed": summary.indexed, "reused": summary.reused,
        "unchanged": summary.unchanged, "removed": summary.removed, "skipped": summary.skipped,
        "not_read": summary.not_read,
        "seconds": summary.seconds,
    });
    if options.rescan {
        let recorded: Vec<PathBuf> = data.with(|data| data.indexed_roots())?.iter().map(IndexedRoot::key).collect();
        for root in indexed.iter().filter(|root| !recorded.contains(&root.key())) {
            data.with(|data| crate::store::forget::forget(data, &root.key()))?;
        }
        indexed.retain(|root| recorded.contains(&root.key()));
        if indexed.is_empty() {
            return Ok(summary);
        }
    }
    let covered = roots_covered_by_others(&mut indexed, &data.with(|data| data.indexed_roots())?, mounts);
    data.with(|data| {
        if !covered.is_empty() {
            data.forget_roots(&covered)?;
        }
        data.record_run(&indexed, &run)
    })?;
    Ok(summary)
}

/// A folder inside another root is that root's to rescan: recorded as a root of its own,
/// `--watch` would walk it twice (with its own settings, undoing the outer root's), and `stats`
/// would list it beside the root that holds it. Drops from `indexed` what lies inside another
/// root (recorded, or indexed now), and returns the keys of recorded roots that lie inside
/// another (recorded by an older imgsearch, or inside one indexed now). Compared in the stored
/// form, so that a named root covers its folders however this host mounts it.
fn roots_covered_by_others(indexed: &mut Vec<IndexedRoot>, recorded: &[IndexedRoot], mounts: &Mounts) -> Vec<PathBuf> {
    let stored = |root: &IndexedRoot| match root.name {
        Some(_) => root.key(),
        None => mounts.stored(&root.path).to_path_buf(),
    };
    let inside = |inner: &Path, outer: &Path| inner != outer && inner.starts_with(outer);
    let now: Vec<PathBuf> = indexed.iter().map(stored).collect();
    let before: Vec<PathBuf> = recorded.iter().map(stored).collect();
    let covered = recorded
        .iter()
        .zip(&before)
        .filter(|(_, was)| now.iter().chain(&before).any(|outer| inside(was, outer)))
        .map(|(root, _)| root.key())
        .collect();
    let mut own = now.iter();
    indexed.retain(|_| {
        let this = own.next().expect("one stored form per root");
        !now.iter().chain(&before).any(|outer| inside(this, outer))
    });
    covered
}

/// Whether a moment of a video that was read again this run belongs to an earlier version of the
/// file (its moments now fall elsewhere), or to a video that is no longer indexed (a decode that
/// failed half-way, an interrupted run).
fn is_stale_moment(catalog: &dyn Lookup, moment: &[u8], file: &[u8]) -> Result<bool> {
    let version = |record: Option<ImageRecord>| record.map(|r| (r.size, r.mtime_ns));
    let file_version = version(catalog.image_at(file)?);
    Ok(file_version.is_none() || version(catalog.image_at(moment)?) != file_version)
}

fn progress_bar(enabled: bool) -> ProgressBar {
    let bar = crate::progress::bar(
        "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} new files · {msg} · ETA {eta}",
        !enabled,
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

struct Walked {
    scanned: u64,
    unchanged: u64,
    errors: Vec<FileError>,
    /// Every path seen under the roots (as bytes), to find what disappeared.
    seen: HashSet<Vec<u8>>,
    /// Paths (stored form) the walk could not read (a folder it was refused, a flaky share): what
    /// was indexed below them is kept, not taken for deleted.
    unreadable: Vec<PathBuf>,
    /// The videos read again (new or changed): their moments of earlier versions are removed.
    queued_videos: HashSet<Vec<u8>>,
    /// Every file queued, so that none is queued twice.
    queued: HashSet<Vec<u8>>,
}

/// Files the walk looks up in the library at once.
const LOOKUP_BATCH: usize = 512;

/// Walks the roots and queues every new or changed file; unchanged ones stop here.
fn walk_and_queue(
    roots: &[PathBuf],
    hidden: bool,
    mounts: &Mounts,
    catalog: &dyn Lookup,
    jobs: &Sender<Candidate>,
    queued: &AtomicU64,
) -> Result<Walked> {
    let mut walked = Walked {
        scanned: 0,
        unchanged: 0,
        errors: Vec::new(),
        seen: HashSet::new(),
        unreadable: Vec::new(),
        queued_videos: HashSet::new(),
        queued: HashSet::new(),
    };
    let mut changed_sidecars = Vec::new();
    // Files are looked up in the library a batch at a time: one round trip each to PostgreSQL,
    // where a rescan of a large library otherwise spent its time.
    let mut found_files = Vec::with_capacity(LOOKUP_BATCH);
    let mut walking = walk(roots, hidden).peekable();
    while let Some(found) = walking.next() {
        match found {
            Found::File(candidate) => match path_too_long(catalog, &mounts.stored_bytes(&candidate.path)) {
                Some(reason) => walked.errors.push(FileError { path: candidate.path.display().to_string(), reason }),
                None => found_files.push(candidate),
            },
            Found::Problem { path, reason } => {
                walked.errors.push(FileError { path: path.display().to_string(), reason });
                walked.seen.insert(mounts.stored_bytes(&path));
                walked.unreadable.push(mounts.stored(&path).to_path_buf());
            }
            // Reported, and not seen: a picture the library held there is removed.
            Found::NotAPicture { path, reason } => {
                walked.errors.push(FileError { path: path.display().to_string(), reason });
            }
        }
        if found_files.is_empty() || (found_files.len() < LOOKUP_BATCH && walking.peek().is_some()) {
            continue;
        }
        let keys: Vec<Vec<u8>> = found_files.iter().map(|candidate| mounts.stored_bytes(&candidate.path)).collect();
        let known = catalog.known_at(&keys)?;
        for ((candidate, key), known) in found_files.drain(..).zip(keys).zip(known) {
            walked.scanned += 1;
            walked.seen.insert(key.clone());
            match known {
                Known::Picture(record) if is_current(&record, &candidate) => {
                    walked.unchanged += 1;
                    continue;
                }
                Known::Skipped(skip)
                    if skip.size == candidate.size && skip.mtime_ns == candidate.mtime_ns && !skip.worth_retrying() =>
                {
                    if !skip.ignored {
                        let path = candidate.path.display().to_string();
                        walked.errors.push(FileError { path, reason: skip.reason });
                    }
                    continue;
                }
                _ => {}
            }
            if captions::is_sidecar(&candidate.path) {
                changed_sidecars.push(candidate.path.clone());
            }
            if !walked.queue(candidate, key, jobs, queued) {
                return Ok(walked); // the writer stopped (an error is on its way)
            }
        }
    }
    // A sidecar deleted since the last run (its record is of a skipped file): its pictures lose
    // what it said.
    for record in catalog.skipped() {
        let record = record?;
        if walked.seen.contains(&stored_bytes(&record.path)) {
            continue;
        }
        if let Some(local) = mounts.local(&record.path) {
            if captions::is_sidecar(&local) && roots.iter().any(|root| local.starts_with(root)) && !local.exists() {
                changed_sidecars.push(local);
            }
        }
    }
    queue_described_pictures(&changed_sidecars, &mut walked, mounts, catalog, jobs, queued)?;
    Ok(walked)
}

impl Walked {
    /// Sends a file to the decode workers. `false`: the writer stopped.
    fn queue(&mut self, candidate: Candidate, key: Vec<u8>, jobs: &Sender<Candidate>, queued: &AtomicU64) -> bool {
        queued.fetch_add(1, Ordering::Relaxed);
        if video::has_video_extension(&candidate.path) {
            self.queued_videos.insert(key.clone());
        }
        self.queued.insert(key);
        jobs.send(candidate).is_ok()
    }
}

/// Whether a picture's record still says what its file does: the same size and time, read by
/// this version's reader of facts. A video's facts are not read again for a newer reader: that
/// would decode it again.
fn is_current(record: &ImageRecord, file: &Candidate) -> bool {
    record.size == file.size
        && record.mtime_ns == file.mtime_ns
        && (record.facts_version >= FACTS_VERSION || video::is_video_format(&record.format))
}

/// A sidecar that is new, changed or deleted (a keyword added in Lightroom, a title in
/// darktable) makes the pictures it describes read again, though their own files did not change;
/// their embeddings are kept (same content).
fn queue_described_pictures(
    sidecars: &[PathBuf],
    walked: &mut Walked,
    mounts: &Mounts,
    catalog: &dyn Lookup,
    jobs: &Sender<Candidate>,
    queued: &AtomicU64,
) -> Result<()> {
    let mut folders: HashMap<PathBuf, Vec<PathBuf>> = HashMap::new();
    for sidecar in sidecars {
        let Some(folder) = sidecar.parent() else { continue };
        let siblings = folders.entry(folder.to_owned()).or_insert_with(|| {
            let entries = std::fs::read_dir(folder).into_iter().flatten().flatten();
            entries.map(|entry| entry.path()).collect()
        });
        for picture in captions::described_by(sidecar, siblings) {
            let key = mounts.stored_bytes(picture);
            // Pictures queued already, or not walked (hidden), stay as they are; a video's facts
            // come from its container.
            if walked.queued.contains(&key)
                || video::has_video_extension(picture)
                || !walked.seen.contains(&key)
                || catalog.image_at(&key)?.is_none()
            {
                continue;
            }
            let Ok(meta) = std::fs::metadata(picture) else { continue };
            walked.unchanged = walked.unchanged.saturating_sub(1); // the walk found its file unchanged
            if !walked.queue(Candidate::new(picture.clone(), &meta), key, jobs, queued) {
                return Ok(());
            }
        }
    }
    Ok(())
}

/// Extensions people give pictures; a file with one that fails to decode is an error worth
/// reporting, anything else that is not an image is silently ignored.
const IMAGE_EXTENSIONS: &[&str] = &[
    "jpg", "jpeg", "jpe", "png", "gif", "webp", "bmp", "tif", "tiff", "heic", "heif", "avif", "ico", "tga", "pnm",
    "qoi",
];

/// Reads (bounded), hashes, and — unless the content is already indexed — decodes one file, and
/// sends what it found on. `false`: the run was aborted.
fn examine(
    job: Candidate,
    mounts: &Mounts,
    catalog: &dyn Lookup,
    spec: &ModelSpec,
    options: &IndexOptions,
    send: &dyn Fn(Work) -> bool,
) -> bool {
    let path = mounts.stored(&job.path);
    if video::has_video_extension(&job.path) {
        return examine_video(&job, path, spec, options, send);
    }
    send(examine_picture(job, path, catalog, spec, options))
}

fn examine_picture(
    job: Candidate,
    path: StoredPath,
    catalog: &dyn Lookup,
    spec: &ModelSpec,
    options: &IndexOptions,
) -> Work {
    let looks_like_image = job
        .path
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
        || raw::raw_extension(&job.path).is_some();
    let skip = |reason: String, ignored: bool, retry: bool| {
        Work::Skip(SkipRecord { path: path.clone(), size: job.size, mtime_ns: job.mtime_ns, reason, ignored, retry })
    };
    if job.size > options.max_file_size {
        return skip(
            format!("file is {} bytes, over the {}-byte limit (--max-file-size)", job.size, options.max_file_size),
            false,
            true,
        );
    }
    let mut bytes = Vec::new();
    let read =
        walk::open_regular_file(&job.path).and_then(|f| f.take(options.max_file_size + 1).read_to_end(&mut bytes));
    if let Err(e) = read {
        return skip(format!("cannot read: {e}"), false, true);
    }
    if bytes.is_empty() {
        return skip("empty file".into(), !looks_like_image, false);
    }
    let Some(format) = file_format(&bytes, &job.path) else {
        return skip("not an image (unrecognised content)".into(), !looks_like_image, false);
    };
    let hash = blake3::hash(&bytes).to_hex().to_string();
    let facts = photo_facts(&bytes, &job.path);
    let mut file = FileFacts {
        path: path.clone(),
        size: job.size,
        mtime_ns: job.mtime_ns,
        hash,
        width: 0,
        height: 0,
        format,
        facts,
    };
    if let Ok(Some(known)) = catalog.image_with_hash(&file.hash) {
        if known.embedding.len() == spec.dim() {
            (file.width, file.height) = (known.width, known.height);
            let at_path = catalog.image_at(&stored_bytes(&path));
            let same_path = at_path.ok().flatten().is_some_and(|held| held.hash == file.hash);
            return Work::Reuse { file, embedding: known.embedding, same_path };
        }
    }
    match decode::model_input(&bytes, &job.path, &spec.preprocess, options.max_pixels) {
        Ok((pixels, (width, height))) => {
            (file.width, file.height) = (width, height);
            Work::Embed(file, pixels)
        }
        Err(e) => skip(e.to_string(), false, worth_retrying(&e)),
    }
}

/// Whether a file that failed to decode is tried again unchanged: only a corrupt file stays
/// skipped until it changes; a limit or a decoder may change, and ffmpeg may fail to start.
fn worth_retrying(error: &Error) -> bool {
    matches!(error, Error::TooLarge { .. } | Error::NoDecoder { .. } | Error::Io { .. })
}

/// A video: its moments, each embedded as a picture, the opening one (stored under the file's own
/// path, which the next run compares) sent last, so that a run stopped half-way reads it again.
/// Videos are streamed through ffmpeg, never held in memory: `--max-file-size` does not apply.
fn examine_video(
    job: &Candidate,
    path: StoredPath,
    spec: &ModelSpec,
    options: &IndexOptions,
    send: &dyn Fn(Work) -> bool,
) -> bool {
    let skip = |reason: String, ignored: bool, retry: bool| {
        Work::Skip(SkipRecord { path: path.clone(), size: job.size, mtime_ns: job.mtime_ns, reason, ignored, retry })
    };
    let hash = match walk::open_regular_file(&job.path)
        .and_then(|file| blake3::Hasher::new().update_reader(file).map(|h| h.finalize()))
    {
        Ok(hash) => hash.to_hex().to_string(),
        Err(e) => return send(skip(format!("cannot read: {e}"), false, true)),
    };
    let info = match video::probe(&job.path) {
        Ok(Some(info)) => info,
        Ok(None) => return send(skip("not a video (it has no pictures)".into(), true, false)),
        Err(e) => return send(skip(e.to_string(), false, worth_retrying(&e))),
    };
    let pixels = info.width as u64 * info.height as u64;
    if pixels > options.max_pixels {
        let e = Error::TooLarge {
            path: job.path.clone(),
            width: info.width,
            height: info.height,
            pixels,
            limit: options.max_pixels,
            admitting: pixels,
        };
        return send(skip(e.to_string(), false, true));
    }
    let min_size = MinSize::for_model(&spec.preprocess);
    let moments = match video::moments(&job.path, &info, min_size) {
        Ok(moments) => moments,
        Err(e) => return send(skip(e.to_string(), false, worth_retrying(&e))),
    };
    let file = stored_bytes(&path);
    let format = job.path.extension().map(|e| e.to_string_lossy().to_ascii_lowercase()).unwrap_or_default();
    let mut opening = None;
    for moment in moments {
        let (seconds, frame) = match moment {
            Ok(moment) => moment,
            // The moments sent so far are removed at the end of the run (their file has no record).
            Err(e) => return send(skip(e.to_string(), false, false)),
        };
        let facts = FileFacts {
            path: StoredPath::from_bytes(video::moment_path(&file, seconds)),
            size: job.size,
            mtime_ns: job.mtime_ns,
            hash: video::moment_hash(&hash, seconds),
            width: info.width,
            height: info.height,
            format: format.clone(),
            facts: info.facts.clone(),
        };
        let work = Work::Embed(facts, spec.preprocess.apply(&frame));
        if seconds > 0.0 {
            if !send(work) {
                return false;
            }
        } else {
            opening = Some(work);
        }
    }
    send(opening.unwrap_or_else(|| skip("the video has no frame that can be decoded".into(), false, false)))
}

/// The format of a file's `bytes`: a camera RAW format (by its magic number, or by the name of a
/// file whose TIFF container does not tell), else by content alone ([`sniff_format`]), else, for
/// a format with no magic number, by name.
pub fn file_format(bytes: &[u8], path: &std::path::Path) -> Option<String> {
    raw::raw_format(bytes, path)
        .or_else(|| sniff_format(bytes))
        .or_else(|| decode::format_by_name_only(path).map(|format| format.extensions_str()[0].to_string()))
}

/// The format by content (magic bytes), not by file name.
pub fn sniff_format(bytes: &[u8]) -> Option<String> {
    if let Some(format) = heif::format(bytes) {
        return Some(format.into()); // the image crate knows AVIF by name only, and HEIF not at all
    }
    let format = image::guess_format(bytes).ok()?;
    Some(format.extensions_str().first().copied().unwrap_or("image").replace("jpg", "jpeg"))
}

/// Lowers the calling (decode) thread's scheduling priority to the minimum.
///
/// On CPU the encoder runs each layer as a fork-join over all cores; a decode thread that
/// preempts one of its workers stalls the whole join, and `index` ran at 0.55 of the encoder's
/// speed although decoding is 3x faster than encoding. At the lowest priority, decoding takes the
/// cores only when the encoder leaves them idle (between batches, at its serial steps).
fn yield_cores_to_the_encoder() {
    // Linux gives every thread its own nice value; `who = 0` is the calling thread.
    #[cfg(target_os = "linux")]
    // SAFETY: setpriority only reads its integer arguments.
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, 0, 19);
    }
}

/// Batches decoded pictures through the model (loaded on first need) and passes the rest on.
fn encode(
    work: Receiver<Work>,
    out: Sender<Result<Batch>>,
    (spec, loaded): (&ModelSpec, Option<&Clip>),
    device: &Device,
    batch_size: usize,
) {
    let mut own: Option<Clip> = None;
    let mut batch = Batch::default();
    let mut pending: Vec<(FileFacts, PreprocessedImage)> = Vec::with_capacity(batch_size);
    let embed = |clip: &Clip, pending: &mut Vec<(FileFacts, PreprocessedImage)>, batch: &mut Batch| -> Result<()> {
        if pending.is_empty() {
            return Ok(());
        }
        let (files, images): (Vec<FileFacts>, Vec<PreprocessedImage>) = pending.drain(..).unzip();
        let embeddings = clip.embed_images(&images)?;
        batch.embedded += embeddings.len() as u64;
        for (file, embedding) in files.into_iter().zip(embeddings) {
            if video::is_video_format(&file.format) {
                batch.video_moments += 1;
            }
            if !file.is_later_moment() {
                batch.indexed += 1;
            }
            batch.pictures.push((file, embedding));
        }
        Ok(())
    };
    for item in work {
        match item {
            Work::Embed(file, pixels) => {
                // Loaded at the first picture to embed, not when its batch is full, so the load
                // overlaps decoding the rest of that batch; never for a run with nothing new.
                if loaded.is_none() && own.is_none() {
                    match spec.load(device, Towers::Image) {
                        Ok(clip) => own = Some(clip),
                        Err(e) => {
                            let _ = out.send(Err(e));
                            return;
                        }
                    }
                }
                pending.push((file, pixels));
            }
            Work::Reuse { file, embedding, same_path } => {
                batch.pictures.push((file, embedding));
                match same_path {
                    true => batch.unchanged += 1,
                    false => batch.reused += 1,
                }
            }
            Work::Skip(record) => batch.skips.push(record),
        }
        // Only full batches are embedded: reused and skipped files go to the writer on their
        // own, so a stream of them (an incremental run) never forces a part-filled encoder batch.
        let full = pending.len() >= batch_size;
        if full {
            let clip = loaded.or(own.as_ref()).expect("loaded at the first picture to embed");
            if let Err(e) = embed(clip, &mut pending, &mut batch) {
                let _ = out.send(Err(e));
                return;
            }
        }
        if (full || batch.len() >= PASS_THROUGH_BATCH) && out.send(Ok(std::mem::take(&mut batch))).is_err() {
            return;
        }
    }
    let last = match loaded.or(own.as_ref()) {
        Some(clip) => embed(clip, &mut pending, &mut batch).map(|()| batch),
        None => Ok(batch), // nothing was left to embed
    };
    let _ = out.send(last);
}

/// How a run reaches its library: `index` owns it (`&mut dyn Library`); `serve --watch` shares
/// it with searches and takes its write lock only while a batch is written, so queries keep
/// answering through a long rescan.
pub trait DataAccess {
    fn with<R>(&mut self, f: impl FnOnce(&mut dyn Library) -> R) -> R;
}

impl DataAccess for &mut (dyn Library + 'static) {
    fn with<R>(&mut self, f: impl FnOnce(&mut dyn Library) -> R) -> R {
        f(&mut **self)
    }
}

/// The one writer: turns batches into catalog changes and applies them, showing progress.
/// `tagging`: the library's label set, that tags every new picture.
fn write_batches(
    data: &mut impl DataAccess,
    tagging: Option<&Tagging>,
    batches: &Receiver<Result<Batch>>,
    summary: &mut IndexSummary,
    progress: &ProgressBar,
    queued: &AtomicU64,
) -> Result<()> {
    let started = Instant::now();
    let (mut done, mut embedded) = (0u64, 0u64);
    for batch in batches {
        let batch = batch?;
        done += batch.files();
        for skip in batch.skips.iter().filter(|skip| !skip.ignored) {
            summary.skipped += 1;
            summary.errors.push(FileError { path: skip.path.display(), reason: skip.reason.clone() });
        }
        let (pictures, skips) = (batch.pictures, batch.skips);
        data.with(|data| {
            let mut records = Vec::with_capacity(pictures.len());
            for (file, embedding) in pictures {
                records.push(file.into_record(data.new_id()?, embedding));
            }
            if let Some(tagging) = tagging {
                tagging.tag(&mut records)?;
            }
            let changes: Vec<Change> =
                records.into_iter().map(Change::Upsert).chain(skips.into_iter().map(Change::Skip)).collect();
            data.apply(&changes)
        })?;
        summary.indexed += batch.indexed;
        summary.reused += batch.reused;
        summary.unchanged += batch.unchanged;
        summary.video_moments += batch.video_moments;
        embedded += batch.embedded;
        let rate = embedded as f64 / started.elapsed().as_secs_f64().max(1e-3);
        let moments = match summary.video_moments {
            0 => String::new(),
            n => format!(" ({n} video moments)"),
        };
        progress.set_length(queued.load(Ordering::Relaxed));
        progress.set_position(done);
        progress.set_message(format!(
            "{} embedded{moments}, {} reused, {} skipped, {rate:.1} images/s",
            summary.indexed, summary.reused, summary.skipped
        ));
    }
    Ok(())
}
