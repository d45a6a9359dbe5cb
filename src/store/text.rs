//! The text index (`tantivy`): path segments, file name, camera, date, type, place and captions
//! of every picture, for filters and hybrid search. Each commit carries the catalog generation it
//! reflects, so drift after a crash is detected (and repaired) on open.

use std::cmp::Reverse;
use std::ops::Bound;
use std::path::Path;

use tantivy::collector::{Collector, SegmentCollector, TopDocs};
use tantivy::columnar::Column;
use tantivy::directory::MmapDirectory;
use tantivy::query::{
    AllQuery, BooleanQuery, EnableScoring, Explanation, Occur, Query, RangeQuery, Scorer, TermQuery, Weight,
};
use tantivy::schema::{
    DateOptions, DateTimePrecision, Field, IndexRecordOption, Schema, TextFieldIndexing, TextOptions, INDEXED, STORED,
    STRING,
};
use tantivy::tokenizer::{Token, TokenStream, Tokenizer};
use tantivy::{
    doc, DateTime, DocId, DocSet, Index, IndexReader, IndexWriter, ReloadPolicy, Score, SegmentReader, Term, TERMINATED,
};

use super::catalog::{ImageId, ImageRecord};
use super::library::{composed, words, Filter};
use crate::error::{Error, Result};
use crate::geo::Area;

#[derive(Clone, Copy)]
struct TextFields {
    id: Field,
    path: Field,
    folder: Field,
    name: Field,
    camera: Field,
    taken: Field,
    kind: Field,
    hour: Field,
    tag: Field,
    caption: Field,
    keyword: Field,
    rating: Field,
    latitude: Field,
    longitude: Field,
}

pub struct TextIndex {
    index: Index,
    writer: IndexWriter,
    reader: IndexReader,
    fields: TextFields,
    dir: std::path::PathBuf,
}

/// The tokenizer of the fields that filters match word by word: [`words`], which the PostgreSQL
/// backend matches with too.
const WORDS: &str = "words";

#[derive(Clone)]
struct WordsTokenizer;

impl Tokenizer for WordsTokenizer {
    type TokenStream<'a> = WordStream;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> WordStream {
        WordStream { words: words(text), token: Token::default() }
    }
}

struct WordStream {
    words: std::vec::IntoIter<String>,
    token: Token,
}

impl TokenStream for WordStream {
    fn advance(&mut self) -> bool {
        let Some(word) = self.words.next() else { return false };
        self.token.text = word;
        self.token.position = self.token.position.wrapping_add(1); // from usize::MAX: 0, 1, …
        true
    }

    fn token(&self) -> &Token {
        &self.token
    }

    fn token_mut(&mut self) -> &mut Token {
        &mut self.token
    }
}

fn schema() -> (Schema, TextFields) {
    // Filters look words up one by one: no frequencies or positions are kept.
    let words = TextOptions::default().set_indexing_options(
        TextFieldIndexing::default().set_tokenizer(WORDS).set_index_option(IndexRecordOption::Basic),
    );
    let mut b = Schema::builder();
    let fields = TextFields {
        id: b.add_u64_field("id", INDEXED | STORED | tantivy::schema::FAST),
        // Every path segment, tokenised: "path:holiday" finds ~/Photos/2023 Holiday/x.jpg.
        path: b.add_text_field("path", words.clone()),
        // Each ancestor folder as one exact term, for "folder:/home/me/Photos".
        folder: b.add_text_field("folder", STRING),
        name: b.add_text_field("name", words.clone() | STORED),
        camera: b.add_text_field("camera", words.clone()),
        taken: b.add_date_field(
            "taken",
            DateOptions::from(INDEXED).set_fast().set_stored().set_precision(DateTimePrecision::Seconds),
        ),
        kind: b.add_text_field("type", STRING),
        // The hour of the day taken, for "time:night" and "hour:22-04".
        hour: b.add_u64_field("hour", INDEXED | tantivy::schema::FAST),
        // Each zero-shot tag as one exact term, for "tag:beach".
        tag: b.add_text_field("tag", STRING),
        // What people wrote (title and description; keywords and people's names), for
        // "caption:birthday" and "keyword:anna".
        caption: b.add_text_field("caption", words.clone()),
        keyword: b.add_text_field("keyword", words),
        // Stars (-1 to 5), for "rating:4".
        rating: b.add_i64_field("rating", INDEXED),
        // Where it was taken (degrees), for "near:" and "bbox:": indexed to narrow to a box,
        // fast for the exact test of a circle.
        latitude: b.add_f64_field(LATITUDE, INDEXED | tantivy::schema::FAST),
        longitude: b.add_f64_field(LONGITUDE, INDEXED | tantivy::schema::FAST),
    };
    (b.build(), fields)
}

const LATITUDE: &str = "latitude";
const LONGITUDE: &str = "longitude";

fn store_err(dir: &Path, e: impl std::fmt::Display) -> Error {
    Error::Store { path: dir.to_owned(), reason: e.to_string() }
}

impl TextIndex {
    pub fn open(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|source| Error::Io { path: dir.to_owned(), source })?;
        let (schema, fields) = schema();
        let directory = MmapDirectory::open(dir).map_err(|e| store_err(dir, e))?;
        let index = match Index::open_or_create(directory, schema.clone()) {
            Ok(index) => index,
            // An index of an older schema (before `hour`, `tag`, `latitude`, `caption`, the `words`
            // tokenizer), or a damaged one: started again, at generation 0, so the data folder
            // rebuilds it from the catalog as after a crash. The catalog's lock, taken first,
            // means no other process is using it.
            Err(e @ (tantivy::TantivyError::SchemaError(_) | tantivy::TantivyError::DataCorruption(_))) => {
                if let tantivy::TantivyError::DataCorruption(_) = e {
                    tracing::warn!("the text index {} is damaged ({e}): rebuilding it from the catalog", dir.display());
                }
                std::fs::remove_dir_all(dir).map_err(|source| Error::Io { path: dir.to_owned(), source })?;
                std::fs::create_dir_all(dir).map_err(|source| Error::Io { path: dir.to_owned(), source })?;
                Index::create_in_dir(dir, schema).map_err(|e| store_err(dir, e))?
            }
            Err(e) => return Err(store_err(dir, e)),
        };
        index.tokenizers().register(WORDS, WordsTokenizer);
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
            f.path => path.to_string_lossy().into_owned(),
            f.name => path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
            f.kind => record.format.clone(),
        );
        for ancestor in path.ancestors().skip(1) {
            if !ancestor.as_os_str().is_empty() {
                document.add_text(f.folder, composed(&ancestor.to_string_lossy()));
            }
        }
        if let Some(camera) = record.facts.camera() {
            document.add_text(f.camera, camera);
        }
        if let Some(taken) = record.facts.taken {
            document.add_date(f.taken, DateTime::from_timestamp_secs(taken));
            document.add_u64(f.hour, taken.rem_euclid(86_400) as u64 / 3600);
        }
        for tag in &record.tags {
            document.add_text(f.tag, tag);
        }
        for caption in [&record.facts.title, &record.facts.description].into_iter().flatten() {
            document.add_text(f.caption, caption);
        }
        for keyword in &record.facts.keywords {
            document.add_text(f.keyword, keyword);
        }
        if let Some(stars) = record.facts.rating {
            document.add_i64(f.rating, i64::from(stars));
        }
        if let Some((latitude, longitude)) = record.facts.place() {
            document.add_f64(f.latitude, latitude);
            document.add_f64(f.longitude, longitude);
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

    pub fn doc_count(&self) -> u64 {
        self.reader.searcher().num_docs()
    }

    /// The ids of every picture that passes all `filters`.
    pub fn matching(&self, filters: &[Filter]) -> Result<Vec<ImageId>> {
        self.reader.searcher().search(&*self.filter_query(filters), &IdCollector).map_err(|e| store_err(&self.dir, e))
    }

    /// The ids of the first `limit` pictures that pass all `filters`: newest taken first, the
    /// undated last, ties in id order (as every backend orders them).
    pub fn newest(&self, filters: &[Filter], limit: usize) -> Result<Vec<ImageId>> {
        let query: Box<dyn Query> = if filters.is_empty() { Box::new(AllQuery) } else { self.filter_query(filters) };
        let by_date_then_id = |segment: &SegmentReader| {
            let fast = segment.fast_fields();
            let (taken, ids) = (fast.date("taken").ok(), fast.u64("id").ok());
            move |doc: DocId| {
                let taken = taken.as_ref().and_then(|c| c.first(doc)).map_or(i64::MIN, |t| t.into_timestamp_secs());
                let id = ids.as_ref().and_then(|c| c.first(doc)).unwrap_or(u64::MAX);
                (taken, Reverse(id))
            }
        };
        let top = TopDocs::with_limit(limit).order_by(by_date_then_id);
        let docs = self.reader.searcher().search(&*query, &top).map_err(|e| store_err(&self.dir, e))?;
        Ok(docs.into_iter().map(|((_, Reverse(id)), _)| id).collect())
    }

    fn filter_query(&self, filters: &[Filter]) -> Box<dyn Query> {
        let f = self.fields;
        let words = |field, value: &str| -> Vec<(Occur, Box<dyn Query>)> {
            words(value)
                .map(|w| {
                    let q: Box<dyn Query> =
                        Box::new(TermQuery::new(Term::from_field_text(field, &w), IndexRecordOption::Basic));
                    (Occur::Must, q)
                })
                .collect()
        };
        let exact = |field, value: &str| -> Vec<(Occur, Box<dyn Query>)> {
            vec![(Occur::Must, Box::new(TermQuery::new(Term::from_field_text(field, value), IndexRecordOption::Basic)))]
        };
        let date = |bound: Bound<i64>| {
            // tantivy keeps dates in i64 nanoseconds (years 1678 to 2262): a bound beyond them
            // (`after:1500`) is clamped, not wrapped around into a range nothing is in.
            const NANOS_SECONDS: i64 = i64::MAX / 1_000_000_000;
            let term = |t: i64| {
                Term::from_field_date_for_search(
                    f.taken,
                    DateTime::from_timestamp_secs(t.clamp(-NANOS_SECONDS, NANOS_SECONDS)),
                )
            };
            let (lower, upper) = match bound {
                Bound::Included(t) => (Bound::Included(term(t)), Bound::Unbounded),
                Bound::Excluded(t) => (Bound::Unbounded, Bound::Excluded(term(t))),
                Bound::Unbounded => (Bound::Unbounded, Bound::Unbounded),
            };
            let q: Box<dyn Query> = Box::new(RangeQuery::new(lower, upper));
            vec![(Occur::Must, q)]
        };
        let clauses = filters
            .iter()
            .flat_map(|filter| match filter {
                Filter::Path(v) => words(f.path, v),
                Filter::Name(v) => words(f.name, v),
                Filter::Camera(v) => words(f.camera, v),
                Filter::Caption(v) => words(f.caption, v),
                Filter::Keyword(v) => words(f.keyword, v),
                Filter::Rating(stars) => {
                    let term = Term::from_field_i64(f.rating, i64::from(*stars));
                    let q: Box<dyn Query> = Box::new(RangeQuery::new(Bound::Included(term), Bound::Unbounded));
                    vec![(Occur::Must, q)]
                }
                Filter::Folder(v) => exact(f.folder, &composed(v)),
                Filter::Type(v) => exact(f.kind, v),
                Filter::Tag(v) => exact(f.tag, v),
                Filter::After(t) => date(Bound::Included(*t)),
                Filter::Before(t) => date(Bound::Excluded(*t)),
                Filter::Hour { from, until } => {
                    let hours = |from: u8, until: u8| -> Box<dyn Query> {
                        let term = |h: u8| Term::from_field_u64(f.hour, u64::from(h));
                        Box::new(RangeQuery::new(Bound::Included(term(from)), Bound::Excluded(term(until))))
                    };
                    let q: Box<dyn Query> = if from < until {
                        hours(*from, *until)
                    } else {
                        // Past midnight: from..24 or 0..until.
                        Box::new(BooleanQuery::new(vec![
                            (Occur::Should, hours(*from, 24)),
                            (Occur::Should, hours(0, *until)),
                        ]))
                    };
                    vec![(Occur::Must, q)]
                }
                Filter::Place(area) => {
                    let range = |field, (from, to): (f64, f64)| -> Box<dyn Query> {
                        let term = |v: f64| Term::from_field_f64(field, v);
                        Box::new(RangeQuery::new(Bound::Included(term(from)), Bound::Included(term(to))))
                    };
                    let bounds = area.bounds();
                    let longitudes = bounds.longitudes.into_iter().map(|r| (Occur::Should, range(f.longitude, r)));
                    vec![
                        (Occur::Must, range(f.latitude, bounds.latitudes)),
                        (Occur::Must, Box::new(BooleanQuery::new(longitudes.collect()))),
                        (Occur::Must, Box::new(AreaQuery(*area))),
                    ]
                }
            })
            .collect();
        Box::new(BooleanQuery::new(clauses))
    }
}

/// The pictures taken in an area: the exact test (a circle's distance) that the range queries
/// on latitude and longitude narrow to a box. It only checks the documents it is asked about,
/// so the ranges (or any rarer filter) lead the intersection.
#[derive(Clone, Debug)]
struct AreaQuery(Area);

impl Query for AreaQuery {
    fn weight(&self, _: EnableScoring<'_>) -> tantivy::Result<Box<dyn Weight>> {
        Ok(Box::new(AreaWeight(self.0)))
    }
}

struct AreaWeight(Area);

impl Weight for AreaWeight {
    fn scorer(&self, reader: &SegmentReader, _boost: Score) -> tantivy::Result<Box<dyn Scorer>> {
        let fast = reader.fast_fields();
        let mut scorer = AreaScorer {
            area: self.0,
            latitude: fast.f64(LATITUDE)?,
            longitude: fast.f64(LONGITUDE)?,
            max_doc: reader.max_doc(),
            doc: 0,
        };
        scorer.seek(0);
        Ok(Box::new(scorer))
    }

    fn explain(&self, reader: &SegmentReader, doc: DocId) -> tantivy::Result<Explanation> {
        if self.scorer(reader, 1.0)?.seek(doc) != doc {
            return Err(tantivy::TantivyError::InvalidArgument(format!("document {doc} is not in {:?}", self.0)));
        }
        Ok(Explanation::new("in the area", 1.0))
    }
}

struct AreaScorer {
    area: Area,
    latitude: Column<f64>,
    longitude: Column<f64>,
    max_doc: DocId,
    doc: DocId,
}

impl AreaScorer {
    fn is_in_area(&self, doc: DocId) -> bool {
        match (self.latitude.first(doc), self.longitude.first(doc)) {
            (Some(latitude), Some(longitude)) => self.area.contains(latitude, longitude),
            _ => false,
        }
    }
}

impl DocSet for AreaScorer {
    fn advance(&mut self) -> DocId {
        self.seek(self.doc + 1)
    }

    fn seek(&mut self, target: DocId) -> DocId {
        self.doc = (target.max(self.doc)..self.max_doc).find(|&doc| self.is_in_area(doc)).unwrap_or(TERMINATED);
        self.doc
    }

    fn doc(&self) -> DocId {
        self.doc
    }

    fn size_hint(&self) -> u32 {
        self.max_doc
    }
}

impl Scorer for AreaScorer {
    fn score(&mut self) -> Score {
        1.0
    }
}

/// Collects the `id` fast field of every matching document.
struct IdCollector;
struct SegmentIds(Column<u64>, Vec<u64>);

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

#[cfg(test)]
mod tests {
    use super::*;

    /// A text index of an older schema (this one predates `hour`) is started again at
    /// generation 0, which makes the data folder rebuild it from the catalog.
    #[test]
    fn an_index_of_an_older_schema_opens_empty_for_a_rebuild() {
        let dir = tempfile::tempdir().unwrap();
        let mut old = Schema::builder();
        let id = old.add_u64_field("id", INDEXED | STORED | tantivy::schema::FAST);
        let index = Index::create_in_dir(dir.path(), old.build()).unwrap();
        let mut writer: IndexWriter = index.writer_with_num_threads(1, 15_000_000).unwrap();
        writer.add_document(doc!(id => 7u64)).unwrap();
        let mut prepared = writer.prepare_commit().unwrap();
        prepared.set_payload("41");
        prepared.commit().unwrap();
        drop((writer, index));

        let reopened = TextIndex::open(dir.path()).unwrap();
        assert_eq!((reopened.committed_generation().unwrap(), reopened.doc_count()), (0, 0));
        assert!(reopened.index.schema().get_field("hour").is_ok());
    }
}
