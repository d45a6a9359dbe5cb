//! The text index (`tantivy`): path segments, file name, camera, date and type of every
//! picture, for filters and hybrid search. Each commit carries the catalog generation it
//! reflects, so drift after a crash is detected (and repaired) on open.

use std::path::Path;

use tantivy::collector::{Collector, SegmentCollector};
use tantivy::columnar::Column;
use tantivy::directory::MmapDirectory;
use tantivy::schema::{DateOptions, DateTimePrecision, Field, Schema, INDEXED, STORED, STRING, TEXT};
use tantivy::{doc, DateTime, DocId, Index, IndexReader, IndexWriter, ReloadPolicy, Score, SegmentReader, Term};

use super::catalog::{ImageId, ImageRecord};
use crate::error::{Error, Result};

#[derive(Clone, Copy)]
pub struct TextFields {
    pub id: Field,
    pub path: Field,
    pub folder: Field,
    pub name: Field,
    pub camera: Field,
    pub taken: Field,
    pub kind: Field,
}

pub struct TextIndex {
    index: Index,
    writer: IndexWriter,
    reader: IndexReader,
    pub fields: TextFields,
    dir: std::path::PathBuf,
}

fn schema() -> (Schema, TextFields) {
    let mut b = Schema::builder();
    let fields = TextFields {
        id: b.add_u64_field("id", INDEXED | STORED | tantivy::schema::FAST),
        // Every path segment, tokenised: "path:holiday" finds ~/Photos/2023 Holiday/x.jpg.
        path: b.add_text_field("path", TEXT),
        // Each ancestor folder as one exact term, for "folder:/home/me/Photos".
        folder: b.add_text_field("folder", STRING),
        name: b.add_text_field("name", TEXT | STORED),
        camera: b.add_text_field("camera", TEXT),
        taken: b.add_date_field(
            "taken",
            DateOptions::from(INDEXED).set_fast().set_stored().set_precision(DateTimePrecision::Seconds),
        ),
        kind: b.add_text_field("type", STRING),
    };
    (b.build(), fields)
}

fn store_err(dir: &Path, e: impl std::fmt::Display) -> Error {
    Error::Store { path: dir.to_owned(), reason: e.to_string() }
}

impl TextIndex {
    pub fn open(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|source| Error::Io { path: dir.to_owned(), source })?;
        let (schema, fields) = schema();
        let directory = MmapDirectory::open(dir).map_err(|e| store_err(dir, e))?;
        let index = Index::open_or_create(directory, schema).map_err(|e| store_err(dir, e))?;
        let writer = index.writer_with_num_threads(1, 15_000_000).map_err(|e| match e {
            tantivy::TantivyError::LockFailure(..) => {
                Error::DataDirLocked { path: dir.parent().unwrap_or(dir).to_owned() }
            }
            e => store_err(dir, e),
        })?;
        let reader =
            index.reader_builder().reload_policy(ReloadPolicy::Manual).try_into().map_err(|e| store_err(dir, e))?;
        Ok(Self { index, writer, reader, fields, dir: dir.to_owned() })
    }

    /// Catalog generation of the last commit.
    pub fn committed_generation(&self) -> Result<u64> {
        let metas = self.index.load_metas().map_err(|e| store_err(&self.dir, e))?;
        Ok(metas.payload.and_then(|p| p.parse().ok()).unwrap_or(0))
    }

    pub fn add(&mut self, record: &ImageRecord) -> Result<()> {
        let f = &self.fields;
        let path = record.path.to_path_buf();
        let mut document = doc!(
            f.id => record.id,
            f.path => path.to_string_lossy().replace(['/', '\\', '_', '-', '.'], " "),
            f.name => path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
            f.kind => record.format.clone(),
        );
        for ancestor in path.ancestors().skip(1) {
            if !ancestor.as_os_str().is_empty() {
                document.add_text(f.folder, ancestor.to_string_lossy());
            }
        }
        if let Some(camera) = record.facts.camera() {
            document.add_text(f.camera, camera);
        }
        if let Some(taken) = record.facts.taken {
            document.add_date(f.taken, DateTime::from_timestamp_secs(taken));
        }
        self.writer.add_document(document).map_err(|e| store_err(&self.dir, e))?;
        Ok(())
    }

    pub fn remove(&mut self, id: ImageId) {
        self.writer.delete_term(Term::from_field_u64(self.fields.id, id));
    }

    pub fn remove_all(&mut self) -> Result<()> {
        self.writer.delete_all_documents().map_err(|e| store_err(&self.dir, e))?;
        Ok(())
    }

    pub fn commit(&mut self, generation: u64) -> Result<()> {
        let mut prepared = self.writer.prepare_commit().map_err(|e| store_err(&self.dir, e))?;
        prepared.set_payload(&generation.to_string());
        prepared.commit().map_err(|e| store_err(&self.dir, e))?;
        self.reader.reload().map_err(|e| store_err(&self.dir, e))?;
        Ok(())
    }

    pub fn searcher(&self) -> tantivy::Searcher {
        self.reader.searcher()
    }

    pub fn doc_count(&self) -> u64 {
        self.reader.searcher().num_docs()
    }

    /// The ids of every document matching `query`.
    pub fn matching_ids(&self, query: &dyn tantivy::query::Query) -> Result<Vec<ImageId>> {
        self.searcher().search(query, &IdCollector).map_err(|e| store_err(&self.dir, e))
    }
}

/// Collects the `id` fast field of every matching document.
pub struct IdCollector;
pub struct SegmentIds(Column<u64>, Vec<u64>);

impl Collector for IdCollector {
    type Fruit = Vec<u64>;
    type Child = SegmentIds;

    fn for_segment(&self, _: u32, reader: &SegmentReader) -> tantivy::Result<SegmentIds> {
        Ok(SegmentIds(reader.fast_fields().u64("id")?, Vec::new()))
    }

    fn requires_scoring(&self) -> bool {
        false
    }

    fn merge_fruits(&self, fruits: Vec<Vec<u64>>) -> tantivy::Result<Vec<u64>> {
        Ok(fruits.concat())
    }
}

impl SegmentCollector for SegmentIds {
    type Fruit = Vec<u64>;

    fn collect(&mut self, doc: DocId, _: Score) {
        if let Some(id) = self.0.first(doc) {
            self.1.push(id);
        }
    }

    fn harvest(self) -> Vec<u64> {
        self.1
    }
}
