//! Export and import of a library as Parquet: one row per picture with its path, embedding and
//! metadata, and the model in the file's key-value metadata. Embeddings computed elsewhere (a
//! GPU cluster, clip-retrieval's output) become a searchable library without embedding anything
//! again; an export moves a library between machines or into other tools (pandas, DuckDB).

use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use arrow_array::builder::{
    BinaryBuilder, Float32Builder, Float64Builder, Int64Builder, Int8Builder, ListBuilder, StringBuilder,
    TimestampSecondBuilder, UInt32Builder, UInt64Builder,
};
use arrow_array::cast::AsArray;
use arrow_array::types::{Float32Type, Float64Type, Int64Type, Int8Type, TimestampSecondType, UInt32Type, UInt64Type};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use indicatif::ProgressBar;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use serde::Serialize;

use super::catalog::{path_bytes, ImageRecord, ModelInfo, PhotoFacts, StoredPath};
use super::{path_too_long, Change, Library};
use crate::error::{Error, Result};
use crate::ingest::exif::photo_facts;
use crate::ingest::pipeline::file_format;
use crate::ingest::raw::raw_format;

/// The file metadata key holding the model (a JSON [`ModelInfo`]).
pub const MODEL_KEY: &str = "imgsearch.model";
/// Rows per record batch written, and per catalog transaction on import.
const BATCH_ROWS: usize = 8192;
/// How much of a file import reads for its format, size and EXIF when the row lacks them.
const HEADER_BYTES: u64 = 256 * 1024;

/// The columns `export` writes; `import` needs only `path` and `embedding` and reads the others
/// when present.
fn schema() -> Schema {
    let timestamp = DataType::Timestamp(TimeUnit::Second, None);
    Schema::new(vec![
        Field::new("path", DataType::Utf8, false),
        Field::new("id", DataType::UInt64, false),
        Field::new("embedding", DataType::List(Arc::new(Field::new_list_field(DataType::Float32, true))), false),
        Field::new("size", DataType::UInt64, false),
        Field::new("mtime_ns", DataType::Int64, false),
        Field::new("hash", DataType::Utf8, true),
        Field::new("width", DataType::UInt32, false),
        Field::new("height", DataType::UInt32, false),
        Field::new("format", DataType::Utf8, false),
        // Camera local time, as EXIF records it (no time zone).
        Field::new("taken", timestamp.clone(), true),
        Field::new("camera_make", DataType::Utf8, true),
        Field::new("camera_model", DataType::Utf8, true),
        Field::new("gps_latitude", DataType::Float64, true),
        Field::new("gps_longitude", DataType::Float64, true),
        Field::new("title", DataType::Utf8, true),
        Field::new("description", DataType::Utf8, true),
        Field::new("keywords", DataType::List(Arc::new(Field::new_list_field(DataType::Utf8, true))), true),
        // Stars, 1 to 5 (0 unrated, -1 rejected).
        Field::new("rating", DataType::Int8, true),
        Field::new("indexed_at", timestamp, false),
        // The path's bytes where they are not UTF-8 (an old archive's Latin-1 names), which
        // `path` can only show with replacement characters; null for every other path.
        Field::new("path_bytes", DataType::Binary, true),
    ])
}

fn parquet_error(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Store { path: path.to_owned(), reason: e.to_string() }
}

/// A file `import` cannot read as Parquet (not Parquet, cut short, damaged).
fn unreadable_parquet(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Corrupt { what: format!("the Parquet file {}", path.display()), reason: e.to_string() }
}

/// Where `export` writes for `file`: the file a symbolic link names (the rename that replaces
/// the file atomically would otherwise replace the link), never anything but a regular file:
/// `/dev/full` was replaced by a Parquet file, a FIFO by a regular file.
fn export_destination(file: &Path) -> Result<std::path::PathBuf> {
    let mut target = file.to_owned();
    for _ in 0..40 {
        match std::fs::symlink_metadata(&target) {
            Ok(meta) if meta.file_type().is_symlink() => {
                let link = std::fs::read_link(&target).map_err(|source| Error::Io { path: target.clone(), source })?;
                target = target.parent().map_or(link.clone(), |dir| dir.join(&link));
            }
            Ok(meta) if !meta.is_file() => {
                return Err(Error::Exchange(format!(
                    "{} is not a regular file (a folder, a device or a pipe): name the Parquet file to write",
                    target.display()
                )))
            }
            _ => return Ok(target),
        }
    }
    Err(Error::Exchange(format!("{}: too many levels of symbolic links", file.display())))
}

/// Writes every picture of the library to `file` (replaced atomically: a `.partial` file is
/// renamed into place once complete). Returns the number of rows.
pub fn export(data: &dyn Library, file: &Path, progress: &ProgressBar) -> Result<u64> {
    let model = data.model_info()?.ok_or_else(|| Error::Exchange("the library is empty: nothing to export".into()))?;
    let file = &export_destination(file)?;
    let partial = file.with_extension("parquet.partial");
    let out = File::create(&partial).map_err(|source| Error::Write { path: partial.clone(), source })?;
    let properties = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_key_value_metadata(Some(vec![KeyValue::new(
            MODEL_KEY.to_string(),
            serde_json::to_string(&model).expect("model info serialises"),
        )]))
        .build();
    let schema = Arc::new(schema());
    let mut writer = ArrowWriter::try_new(out, schema.clone(), Some(properties)).map_err(|e| parquet_error(file, e))?;
    progress.set_length(data.image_count() as u64);
    let mut rows = 0u64;
    let mut batch = Vec::with_capacity(BATCH_ROWS);
    let mut records = data.images().peekable();
    while records.peek().is_some() {
        batch.clear();
        for record in records.by_ref().take(BATCH_ROWS) {
            batch.push(record?);
        }
        let columns = export_columns(&batch, model.dim);
        let record_batch = RecordBatch::try_new(schema.clone(), columns).map_err(|e| parquet_error(file, e))?;
        writer.write(&record_batch).map_err(|e| parquet_error(file, e))?;
        rows += batch.len() as u64;
        progress.inc(batch.len() as u64);
    }
    writer.close().map_err(|e| parquet_error(file, e))?;
    std::fs::rename(&partial, file).map_err(|source| Error::Write { path: file.to_owned(), source })?;
    Ok(rows)
}

fn export_columns(records: &[ImageRecord], dim: usize) -> Vec<ArrayRef> {
    let n = records.len();
    let mut path = StringBuilder::with_capacity(n, n * 64);
    let mut id = UInt64Builder::with_capacity(n);
    let mut embedding = ListBuilder::with_capacity(Float32Builder::with_capacity(n * dim), n);
    let mut size = UInt64Builder::with_capacity(n);
    let mut mtime = Int64Builder::with_capacity(n);
    let mut hash = StringBuilder::with_capacity(n, n * 64);
    let mut width = UInt32Builder::with_capacity(n);
    let mut height = UInt32Builder::with_capacity(n);
    let mut format = StringBuilder::with_capacity(n, n * 4);
    let mut taken = TimestampSecondBuilder::with_capacity(n);
    let mut make = StringBuilder::new();
    let mut camera = StringBuilder::new();
    let mut latitude = Float64Builder::with_capacity(n);
    let mut longitude = Float64Builder::with_capacity(n);
    let mut title = StringBuilder::new();
    let mut description = StringBuilder::new();
    let mut keywords = ListBuilder::new(StringBuilder::new());
    let mut rating = Int8Builder::with_capacity(n);
    let mut indexed_at = TimestampSecondBuilder::with_capacity(n);
    let mut raw_path = BinaryBuilder::new();
    for r in records {
        path.append_value(r.path.display());
        raw_path.append_option(match &r.path {
            StoredPath::Raw(bytes) => Some(bytes),
            StoredPath::Utf8(_) => None,
        });
        id.append_value(r.id);
        embedding.values().append_slice(&r.embedding);
        embedding.append(true);
        size.append_value(r.size);
        // Nanoseconds since 1970 fit an i64 until 2262.
        mtime.append_value(r.mtime_ns.clamp(i64::MIN.into(), i64::MAX.into()) as i64);
        hash.append_option((!r.hash.is_empty()).then_some(&r.hash));
        width.append_value(r.width);
        height.append_value(r.height);
        format.append_value(&r.format);
        taken.append_option(r.facts.taken);
        make.append_option(r.facts.camera_make.as_deref());
        camera.append_option(r.facts.camera_model.as_deref());
        latitude.append_option(r.facts.gps.map(|g| g.0));
        longitude.append_option(r.facts.gps.map(|g| g.1));
        title.append_option(r.facts.title.as_deref());
        description.append_option(r.facts.description.as_deref());
        keywords.append_value(r.facts.keywords.iter().map(Some));
        rating.append_option(r.facts.rating);
        indexed_at.append_value(r.indexed_at as i64);
    }
    vec![
        Arc::new(path.finish()),
        Arc::new(id.finish()),
        Arc::new(embedding.finish()),
        Arc::new(size.finish()),
        Arc::new(mtime.finish()),
        Arc::new(hash.finish()),
        Arc::new(width.finish()),
        Arc::new(height.finish()),
        Arc::new(format.finish()),
        Arc::new(taken.finish()),
        Arc::new(make.finish()),
        Arc::new(camera.finish()),
        Arc::new(latitude.finish()),
        Arc::new(longitude.finish()),
        Arc::new(title.finish()),
        Arc::new(description.finish()),
        Arc::new(keywords.finish()),
        Arc::new(rating.finish()),
        Arc::new(indexed_at.finish()),
        Arc::new(raw_path.finish()),
    ]
}

/// What an import did.
#[derive(Debug, Default, Serialize)]
pub struct ImportSummary {
    pub rows: u64,
    pub imported: u64,
    /// Already in the library with the same file, facts and embedding (a re-run after an
    /// interruption).
    pub unchanged: u64,
    /// Rows without a path or a usable embedding; the first few are described in `problems`.
    pub skipped: u64,
    pub problems: Vec<String>,
}

/// How many skipped rows an import describes.
const PROBLEMS_SHOWN: usize = 10;

fn open_parquet(file: &Path) -> Result<ParquetRecordBatchReaderBuilder<File>> {
    // Never a pipe or a device, whose read would wait for good.
    let opened =
        crate::ingest::walk::open_regular_file(file).map_err(|source| Error::Io { path: file.to_owned(), source })?;
    ParquetRecordBatchReaderBuilder::try_new(opened).map_err(|e| unreadable_parquet(file, e))
}

/// The model a Parquet file's metadata says made its embeddings, if it says.
fn named_model(builder: &ParquetRecordBatchReaderBuilder<File>, file: &Path) -> Result<Option<ModelInfo>> {
    builder
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .and_then(|pairs| pairs.iter().find(|kv| kv.key == MODEL_KEY))
        .and_then(|kv| kv.value.as_deref())
        .map(|json| {
            let damaged = |reason: String| Error::Corrupt {
                what: format!("{} (its {MODEL_KEY} metadata)", file.display()),
                reason,
            };
            let model = serde_json::from_str::<ModelInfo>(json).map_err(|e| damaged(e.to_string()))?;
            match (1..=MAX_DIM).contains(&model.dim) {
                true => Ok(model),
                false => Err(damaged(format!("no model makes embeddings of {} numbers", model.dim))),
            }
        })
        .transpose()
}

/// The widest embedding a model file may name (the largest CLIPs make 1,280 numbers).
const MAX_DIM: usize = 65_536;

/// The model whose embeddings `file` holds, by its metadata (`None` if it does not say).
pub fn file_model(file: &Path) -> Result<Option<ModelInfo>> {
    named_model(&open_parquet(file)?, file)
}

/// Reads `file` into the library. The model is `model` when given, else the one the file's
/// metadata names; an empty library takes it, an existing one must match it (and the rows its
/// dimension). Embeddings are L2-normalised on the way in. Rows whose path the library already
/// holds with the same file, facts and embedding are left alone, so an interrupted import can be
/// re-run; a row that says something new replaces the library's record.
pub fn import(
    data: &mut dyn Library,
    file: &Path,
    model: Option<ModelInfo>,
    progress: &ProgressBar,
) -> Result<ImportSummary> {
    let builder = open_parquet(file)?;
    let metadata = builder.metadata().file_metadata();
    let named = named_model(&builder, file)?;
    for needed in ["path", "embedding"] {
        if builder.schema().field_with_name(needed).is_err() {
            return Err(Error::Exchange(format!(
                "{} has no `{needed}` column; an import needs `path` (string) and `embedding` (list of float32)",
                file.display()
            )));
        }
    }
    progress.set_length(metadata.num_rows().max(0) as u64);
    let model = match (model.or(named), data.model_info()?) {
        (Some(model), _) => {
            data.check_model(&model)?;
            model
        }
        (None, Some(recorded)) => recorded,
        (None, None) => {
            return Err(Error::Exchange(format!(
                "{} does not say which model made its embeddings, and the library is empty: pass --model \
                 with that model (a hub id or a checkpoint folder)",
                file.display()
            )))
        }
    };
    let mut reader = builder.with_batch_size(BATCH_ROWS).build().map_err(|e| unreadable_parquet(file, e))?;
    let mut read_next = move || -> Option<Result<(ImportRows, usize)>> {
        let batch = match reader.next()? {
            Ok(batch) => batch,
            Err(e) => return Some(Err(unreadable_parquet(file, e))),
        };
        Some(ImportRows::read(&batch, file).map(|rows| (rows, batch.num_rows())))
    };
    let tagging = data.tagging()?;
    data.begin_bulk_load()?;
    let mut summary = ImportSummary::default();
    // The row that first gave each path (by a 64-bit hash of the path: 8 bytes a row), so that
    // a path given again is a row skipped, not a picture imported twice.
    let mut first_row_of: HashMap<u64, u64> = HashMap::new();
    let lookup = data.lookup();
    // An error after batches were stored says so: they stay, and a run again skips them.
    let stopped = |e: Error, imported: u64| match imported {
        0 => e,
        n => Error::Exchange(format!(
            "{e}. The {n} rows imported before it stay in the library; importing the file again (once it is \
             mended) skips them"
        )),
    };
    let mut next = read_next();
    while let Some(read) = next {
        let (rows, row_count) = read.map_err(|e| stopped(e, summary.imported))?;
        // What the library holds at the batch's paths, in one look (one round trip to PostgreSQL).
        let keys: Vec<Vec<u8>> =
            (0..row_count).filter_map(|row| rows.path(row)).map(|p| path_bytes(&p.to_path_buf())).collect();
        let known: HashMap<Vec<u8>, ImageRecord> =
            keys.iter().cloned().zip(data.images_at(&keys)?).filter_map(|(key, record)| Some((key, record?))).collect();
        let mut records = Vec::with_capacity(row_count);
        for row in 0..row_count {
            let row_number = summary.rows + 1;
            summary.rows += 1;
            // A path the library cannot keep, or one an earlier row gave: the row is skipped.
            let refused = rows.path(row).and_then(|path| {
                let bytes = path_bytes(&path.to_path_buf());
                let reason = path_too_long(lookup.as_ref(), &bytes).or_else(|| {
                    let first = *first_row_of.entry(path_hash(&bytes)).or_insert(row_number);
                    (first != row_number).then(|| format!("the same path as row {first}, which is kept"))
                })?;
                Some(format!("{}: {reason}", path.display()))
            });
            let record = match refused {
                Some(reason) => Err(RowProblem::Skip(reason)),
                None => rows.record(row, model.dim, &known),
            };
            match record {
                Ok(Some(mut record)) => {
                    record.id = data.new_id()?;
                    records.push(record);
                }
                Ok(None) => summary.unchanged += 1,
                Err(RowProblem::Fatal(e)) => return Err(stopped(e, summary.imported)),
                Err(RowProblem::Skip(reason)) => {
                    summary.skipped += 1;
                    if summary.problems.len() < PROBLEMS_SHOWN {
                        summary.problems.push(format!("row {row_number}: {reason}"));
                    }
                }
            }
        }
        if let Some(tagging) = &tagging {
            tagging.tag(&mut records)?;
        }
        summary.imported += records.len() as u64;
        let changes: Vec<Change> = records.into_iter().map(Change::Upsert).collect();
        // The next batch is decoded while this one is stored, on the same rayon pool (a thread
        // of its own would oversubscribe the cores the graph's inserts keep busy).
        let (applied, read) = rayon::join(|| data.apply(&changes), &mut read_next);
        applied?;
        next = read;
        progress.inc(row_count as u64);
    }
    data.end_bulk_load(progress)?;
    data.save()?;
    Ok(summary)
}

enum RowProblem {
    /// The row is left out; the import goes on.
    Skip(String),
    /// The file cannot be imported (an embedding of another dimension: another model's file).
    Fatal(Error),
}

/// One record batch's columns, cast to the types `export` writes.
struct ImportRows {
    path: ArrayRef,
    path_bytes: Option<ArrayRef>,
    embedding: ArrayRef,
    size: Option<ArrayRef>,
    mtime_ns: Option<ArrayRef>,
    hash: Option<ArrayRef>,
    width: Option<ArrayRef>,
    height: Option<ArrayRef>,
    format: Option<ArrayRef>,
    taken: Option<ArrayRef>,
    camera_make: Option<ArrayRef>,
    camera_model: Option<ArrayRef>,
    gps_latitude: Option<ArrayRef>,
    gps_longitude: Option<ArrayRef>,
    title: Option<ArrayRef>,
    description: Option<ArrayRef>,
    keywords: Option<ArrayRef>,
    rating: Option<ArrayRef>,
}

impl ImportRows {
    fn read(batch: &RecordBatch, file: &Path) -> Result<Self> {
        let schema = schema();
        // Any type arrow can cast (LargeUtf8 paths, fixed-size or float64 lists, ...) is accepted.
        let column = |name: &str| -> Result<Option<ArrayRef>> {
            let Some(array) = batch.column_by_name(name) else { return Ok(None) };
            let wanted = schema.field_with_name(name).expect("a column of the export schema").data_type();
            arrow_cast::cast(array, wanted).map(Some).map_err(|e| {
                Error::Exchange(format!(
                    "{}: column `{name}` is {}, which cannot be read as {wanted}: {e}",
                    file.display(),
                    array.data_type()
                ))
            })
        };
        let required = |name: &str| column(name).map(|c| c.expect("checked before reading"));
        Ok(Self {
            path: required("path")?,
            path_bytes: column("path_bytes")?,
            embedding: required("embedding")?,
            size: column("size")?,
            mtime_ns: column("mtime_ns")?,
            hash: column("hash")?,
            width: column("width")?,
            height: column("height")?,
            format: column("format")?,
            taken: column("taken")?,
            camera_make: column("camera_make")?,
            camera_model: column("camera_model")?,
            gps_latitude: column("gps_latitude")?,
            gps_longitude: column("gps_longitude")?,
            title: column("title")?,
            description: column("description")?,
            keywords: column("keywords")?,
            rating: column("rating")?,
        })
    }

    /// Row `row`'s path as stored (its exact bytes where `path_bytes` has them), if it has one.
    fn path(&self, row: usize) -> Option<StoredPath> {
        // An empty value says no more than a null one: `path` holds the name then.
        if let Some(raw) = self.path_bytes.as_ref().filter(|column| column.is_valid(row)) {
            let raw = raw.as_binary::<i32>().value(row);
            if !raw.is_empty() {
                return Some(StoredPath::from_bytes(raw.to_vec()));
            }
        }
        self.path.is_valid(row).then(|| StoredPath::Utf8(self.path.as_string::<i32>().value(row).to_string()))
    }

    /// The record of row `row` (its id left for the caller to give), or `None` when the
    /// library's record at its path (in `known`, by path) already says the same.
    fn record(
        &self,
        row: usize,
        dim: usize,
        known: &HashMap<Vec<u8>, ImageRecord>,
    ) -> Result<Option<ImageRecord>, RowProblem> {
        let present = |column: &Option<ArrayRef>| column.as_ref().filter(|c| c.is_valid(row)).cloned();
        let text = |column: Option<ArrayRef>| column.map(|c| c.as_string::<i32>().value(row).to_string());
        let stored = self.path(row).filter(|path| !path.display().is_empty());
        let stored = stored.ok_or_else(|| RowProblem::Skip("no path".into()))?;
        let (file_path, path) = (stored.to_path_buf(), stored.display());
        // As the library stores paths: absolute, or under a named root (`photos:/2024/x.jpg`).
        let under_named_root = path.split_once(':').is_some_and(|(name, _)| !name.is_empty() && !name.contains('/'));
        if !file_path.is_absolute() && !under_named_root {
            return Err(RowProblem::Skip(format!(
                "{path}: not an absolute path (nor one under a named root, NAME:/...), so no file is found by it"
            )));
        }
        // As the library stores paths: without `.` or `..`, which would name a picture it holds
        // under a second path (or reach out of a named root).
        if path.split('/').any(|part| part == "." || part == "..") {
            return Err(RowProblem::Skip(format!("{path}: a path with `.` or `..` in it (write it without them)")));
        }
        if !self.embedding.is_valid(row) {
            return Err(RowProblem::Skip(format!("{path}: no embedding")));
        }
        let list = self.embedding.as_list::<i32>().value(row);
        let values = list.as_primitive::<Float32Type>();
        if values.len() != dim {
            return Err(RowProblem::Fatal(Error::Exchange(format!(
                "{path}: its embedding has {} numbers, the library's model makes {dim}; this file holds another \
                 model's embeddings (import it into another --data-dir)",
                values.len()
            ))));
        }
        if values.null_count() > 0 || values.values().iter().any(|v| !v.is_finite()) {
            return Err(RowProblem::Skip(format!("{path}: the embedding holds a missing or non-finite number")));
        }
        let norm = values.values().iter().map(|v| f64::from(*v) * f64::from(*v)).sum::<f64>().sqrt();
        if norm == 0.0 {
            return Err(RowProblem::Skip(format!("{path}: the embedding is all zeros")));
        }
        // Rows already of unit length (an export's) are kept bit for bit: dividing by a norm
        // within rounding of 1 would still move last bits, and a round trip would not be exact.
        let embedding: Vec<f32> = if (norm - 1.0).abs() <= 1e-6 {
            values.values().to_vec()
        } else {
            values.values().iter().map(|v| (f64::from(*v) / norm) as f32).collect()
        };
        let mut record = ImageRecord {
            id: 0,
            path: stored,
            size: present(&self.size).map_or(0, |c| c.as_primitive::<UInt64Type>().value(row)),
            mtime_ns: present(&self.mtime_ns).map_or(0, |c| c.as_primitive::<Int64Type>().value(row).into()),
            // Empty: unknown (a foreign row for a file not on this machine).
            hash: text(present(&self.hash)).unwrap_or_default(),
            width: present(&self.width).map_or(0, |c| c.as_primitive::<UInt32Type>().value(row)),
            height: present(&self.height).map_or(0, |c| c.as_primitive::<UInt32Type>().value(row)),
            format: text(present(&self.format)).unwrap_or_default(),
            facts: PhotoFacts {
                taken: present(&self.taken).map(|c| c.as_primitive::<TimestampSecondType>().value(row)),
                camera_make: text(present(&self.camera_make)),
                camera_model: text(present(&self.camera_model)),
                // No place that is none (NaN, out of range): stored, a NaN reads back as null and
                // the record no more (a JSON record cannot hold it).
                gps: present(&self.gps_latitude)
                    .zip(present(&self.gps_longitude))
                    .map(|(lat, lon)| {
                        (lat.as_primitive::<Float64Type>().value(row), lon.as_primitive::<Float64Type>().value(row))
                    })
                    .filter(|(lat, lon)| crate::geo::is_valid(*lat, *lon)),
                title: text(present(&self.title)),
                description: text(present(&self.description)),
                keywords: present(&self.keywords)
                    .map(|c| {
                        let list = c.as_list::<i32>().value(row);
                        list.as_string::<i32>().iter().flatten().map(str::to_string).collect()
                    })
                    .unwrap_or_default(),
                rating: present(&self.rating)
                    .map(|c| c.as_primitive::<Int8Type>().value(row))
                    .filter(|stars| (-1..=5).contains(stars)),
            },
            embedding,
            indexed_at: SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
            tags: Vec::new(),
            // Rows carry their facts (or `fill_from_file` reads them): an `index` of the folder
            // must not read every imported file again, and re-embed those without a hash.
            facts_version: crate::ingest::exif::FACTS_VERSION,
        };
        if self.size.is_none() || self.mtime_ns.is_none() {
            fill_from_file(&mut record, &file_path);
        }
        match known.get(&path_bytes(&file_path)) {
            Some(known) if says_the_same(known, &record) => Ok(None),
            _ => Ok(Some(record)),
        }
    }
}

fn path_hash(path: &[u8]) -> u64 {
    let hash = blake3::hash(path);
    u64::from_le_bytes(hash.as_bytes()[..8].try_into().expect("8 bytes"))
}

/// Whether the library's record already says what an imported one does (the same file, facts
/// and embedding): an import run again, after an interruption or of the same file.
fn says_the_same(known: &ImageRecord, imported: &ImageRecord) -> bool {
    let file = |r: &ImageRecord| (r.size, r.mtime_ns, r.hash.clone(), r.width, r.height, r.format.clone());
    file(known) == file(imported)
        && known.facts == imported.facts
        && known.embedding.len() == imported.embedding.len()
        && known.embedding.iter().zip(&imported.embedding).all(|(a, b)| (a - b).abs() <= 1e-6)
}

/// A row with only a path and an embedding (clip-retrieval's output): what the file on this
/// machine says, from its metadata and first bytes (never decoded), so that a later `index` of
/// its folder finds it unchanged and filters by date, camera and type work.
fn fill_from_file(record: &mut ImageRecord, path: &Path) {
    // Never a pipe or a device, whose open or read would wait for good.
    let Ok(file) = crate::ingest::walk::open_regular_file(path) else { return };
    let Ok(meta) = file.metadata() else { return };
    record.size = meta.len();
    record.mtime_ns = crate::ingest::walk::mtime_ns(&meta);
    let mut head = Vec::new();
    if file.take(HEADER_BYTES).read_to_end(&mut head).is_err() {
        return;
    }
    if record.format.is_empty() {
        record.format = file_format(&head, path).unwrap_or_default();
    }
    if record.facts == PhotoFacts::default() {
        record.facts = photo_facts(&head, path);
    }
    // A RAW file's TIFF header describes its thumbnail or sensor data, not the picture.
    if (record.width == 0 || record.height == 0) && raw_format(&head, path).is_none() {
        let reader = image::ImageReader::new(std::io::Cursor::new(&head)).with_guessed_format();
        if let Ok((width, height)) = reader.map_err(|_| ()).and_then(|r| r.into_dimensions().map_err(|_| ())) {
            (record.width, record.height) = (width, height);
        }
    }
}
