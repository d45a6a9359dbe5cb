//! The query engine: text or picture → CLIP embedding → the library's nearest pictures that
//! pass the filters (exact cosine scores) → hits, paged and sorted; filter-only queries list
//! the newest pictures. Which storage answers is the library's business ([`Library`]).

mod dates;
pub mod duplicates;
pub mod query;
mod stacks;
pub use stacks::ShotFile;
pub mod tags;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::Serialize;

use crate::error::{Error, Result};
use crate::model::{Clip, SigmoidScore};
use crate::store::roots::Mounts;
use crate::store::{ImageId, ImageRecord, Library};
pub use query::{parse, parse_filters_only, Filter, ParsedQuery, MAX_PARTS, MAX_WEIGHT};

/// Largest `k` a request may ask for.
pub const MAX_K: usize = 1000;
/// How far from 1 a query vector's L2 norm may be: f32 embeddings written as decimal text and
/// read back stay within 1e-6; 1e-3 leaves room for f16 storage, not for unnormalised vectors.
pub const UNIT_LENGTH_TOLERANCE: f64 = 1e-3;
/// `sort=date` orders this many best semantic matches by date taken.
const DATE_SORT_POOL: usize = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum SortOrder {
    /// Most similar first (or newest first for filter-only listings).
    #[default]
    Score,
    /// Newest first, after the semantic cut.
    Date,
}

#[derive(Debug, Clone)]
pub struct SearchParams {
    pub k: usize,
    pub offset: usize,
    pub min_score: Option<f32>,
    /// Drop text matches less probable than this (0..1): models with a calibrated sigmoid
    /// (SigLIP) only.
    pub min_prob: Option<f32>,
    pub sort: SortOrder,
    /// The language the query's texts are written in (a FLORES-200 code or a language tag), for
    /// models that read texts by their language (NLLB-CLIP); the others read every text alike.
    pub language: Option<String>,
}

impl Default for SearchParams {
    fn default() -> Self {
        Self { k: 20, offset: 0, min_score: None, min_prob: None, sort: SortOrder::Score, language: None }
    }
}

/// (Deserialize: the command line reads the hits of a server it asks, see `server::local`.)
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct SearchHit {
    pub id: ImageId,
    /// The file (a video's, for a moment of one).
    pub path: String,
    /// The path's exact bytes, where they are not UTF-8: `path` writes those bytes `\xNN`, which
    /// a name holding a real `\x` may read as too.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path_bytes: Option<Vec<u8>>,
    /// For a moment of a video: how many seconds into it (see `ingest::video`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub at_seconds: Option<f64>,
    /// Cosine similarity to the query (absent for filter-only listings).
    pub score: Option<f32>,
    /// For a text query on a model with calibrated scores (SigLIP): the model's probability
    /// that text and picture match, `sigmoid(score * exp(logit_scale) + logit_bias)`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prob: Option<f32>,
    pub width: u32,
    pub height: u32,
    /// Date taken (EXIF), ISO 8601.
    pub taken: Option<String>,
    pub camera: Option<String>,
    /// The title people gave it (a photo manager's, in its file or sidecar).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// The stars people gave it (1–5; 0 unrated, -1 rejected).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rating: Option<i8>,
    /// The words of a text query that what people wrote about the picture holds (its title,
    /// description or keywords): why it ranks above its score.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub described: Vec<String>,
    /// Zero-shot tags, best first.
    pub tags: Vec<String>,
    pub thumbnail: String,
    /// The other files of the same shot (a RAW beside its JPEG), folded into this hit.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub also: Vec<stacks::ShotFile>,
}

/// A query of several parts: texts with weights, texts to move away from, and example pictures
/// ("like these, but at night"). Its embedding is the weighted sum of the parts' unit
/// embeddings, with those to move away from subtracted, normalised again.
#[derive(Debug, Clone, Default)]
pub struct Composition {
    pub texts: Vec<(String, f32)>,
    pub not: Vec<String>,
    pub like: Vec<Example>,
}

/// An example picture of a composed query.
#[derive(Debug, Clone)]
pub enum Example {
    /// A picture of the library: its stored embedding.
    Indexed(ImageId),
    /// A picture from elsewhere, embedded by the caller ([`SearchEngine::embed_picture`]).
    Embedding(Vec<f32>),
}

/// A query, resolved to what the vector search needs.
#[derive(Default)]
struct Probe {
    embedding: Option<Vec<f32>>,
    /// Indexed pictures with exactly the query's content: shown first.
    duplicates: Vec<ImageId>,
    /// Left out of the results with the other files of its shot (its file's path tells them):
    /// "more like this" leaves out the picture itself, and its RAW.
    exclude: Option<(ImageId, PathBuf)>,
    /// Whether the embedding is one text's own: SigLIP's probabilities are calibrated for that
    /// text's pairs with pictures, not for a picture's, nor for a mix of texts (`-people`, two
    /// weighted parts), whose scores no sigmoid of the model's was fit to.
    one_text: bool,
    /// The words of the query's texts looked for in what people wrote about the pictures
    /// ([`query::described_words`]).
    words: Vec<String>,
}

/// Text embeddings kept for repeated queries: the UI's infinite scroll asks for the same text
/// page after page, and a text tower pass costs milliseconds where a graph search costs tenths.
const QUERY_CACHE_ENTRIES: usize = 1024;

/// How the cache of query embeddings has served (`/api/stats`).
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct QueryCacheStats {
    pub hits: u64,
    pub misses: u64,
    pub entries: usize,
}

/// An LRU of (text, language) → embedding, with its counts. The model is the engine's, so it is
/// not part of the key.
struct QueryCache {
    entries: lru::LruCache<(String, Option<String>), Vec<f32>>,
    hits: u64,
    misses: u64,
}

impl QueryCache {
    fn new() -> Mutex<Self> {
        let capacity = std::num::NonZeroUsize::new(QUERY_CACHE_ENTRIES).expect("a cache holds something");
        Mutex::new(Self { entries: lru::LruCache::new(capacity), hits: 0, misses: 0 })
    }
}

pub struct SearchEngine {
    library: Box<dyn Library>,
    query_cache: Mutex<QueryCache>,
    /// Shared so that `serve --watch` can embed new pictures without holding the engine's lock.
    /// None for an engine that only searches by vector (no checkpoint needed).
    clip: Option<Arc<Clip>>,
    /// Where this host mounts the library's named roots.
    mounts: Mounts,
}

impl SearchEngine {
    /// `clip`: a model, or one shared with other engines (two servers in one process).
    pub fn new(library: Box<dyn Library>, clip: impl Into<Arc<Clip>>) -> Self {
        Self { library, query_cache: QueryCache::new(), clip: Some(clip.into()), mounts: Mounts::default() }
    }

    /// An engine for searches by vector only: the library's model need not be on this machine.
    pub fn without_model(library: Box<dyn Library>) -> Self {
        Self { library, query_cache: QueryCache::new(), clip: None, mounts: Mounts::default() }
    }

    /// Where this host mounts the library's named roots (see `store::roots`).
    pub fn with_mounts(self, mounts: Mounts) -> Self {
        Self { mounts, ..self }
    }

    pub fn mounts(&self) -> &Mounts {
        &self.mounts
    }

    /// The indexed picture that is this local file, if any (under whatever path or root name it
    /// is stored).
    pub fn indexed_file(&self, local: &Path) -> Result<Option<ImageRecord>> {
        match std::fs::canonicalize(local) {
            Ok(path) => self.library.image_at(&self.mounts.stored_bytes(&path)),
            Err(_) => Ok(None),
        }
    }

    /// The embeddings of query texts, from the cache where it has them; the others are embedded
    /// together, and kept.
    /// `language`: what they are written in (see [`SearchParams::language`]).
    fn embed_query_texts(&self, texts: &[&str], language: Option<&str>) -> Result<Vec<Vec<f32>>> {
        let clip = self.clip("text")?;
        // A model that reads every text alike keeps one entry per text, whatever the language.
        let language = language.filter(|_| clip.tokenizer().reads_language());
        let key = |text: &str| (text.to_string(), language.map(str::to_string));
        let mut found: Vec<Option<Vec<f32>>> = {
            let mut cache = self.cache();
            texts.iter().map(|text| cache.entries.get(&key(text)).cloned()).collect()
        };
        let missing: Vec<&str> = texts.iter().zip(&found).filter(|(_, f)| f.is_none()).map(|(t, _)| *t).collect();
        let embedded = if missing.is_empty() { Vec::new() } else { clip.embed_texts_in(&missing, language)? };
        let mut cache = self.cache();
        cache.hits += (texts.len() - missing.len()) as u64;
        cache.misses += missing.len() as u64;
        let mut embedded = missing.iter().zip(embedded);
        for slot in found.iter_mut().filter(|f| f.is_none()) {
            let (text, embedding) = embedded.next().expect("one embedding per missing text");
            cache.entries.put(key(text), embedding.clone());
            *slot = Some(embedding);
        }
        Ok(found.into_iter().map(|f| f.expect("every text embedded")).collect())
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, QueryCache> {
        self.query_cache.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn query_cache_stats(&self) -> QueryCacheStats {
        let cache = self.cache();
        QueryCacheStats { hits: cache.hits, misses: cache.misses, entries: cache.entries.len() }
    }

    pub fn library(&self) -> &dyn Library {
        &*self.library
    }

    /// For writers that share the engine's library (`serve --watch`).
    pub fn library_mut(&mut self) -> &mut dyn Library {
        &mut *self.library
    }

    /// The model; `tower` names what the caller needed it for, in the error of a model-less engine.
    pub fn clip(&self, tower: &'static str) -> Result<&Arc<Clip>> {
        self.clip.as_ref().ok_or(Error::TowerNotLoaded(tower))
    }

    /// A search-box query: free text (CLIP), composed or not, and/or filters.
    pub fn search_text(&self, query: &str, params: &SearchParams) -> Result<Vec<SearchHit>> {
        self.search_parsed(parse(query).map_err(|e| Error::BadQuery(e.0))?, params)
    }

    /// A query already read with [`parse`] (the server reads it once, to say how it read it).
    pub fn search_parsed(&self, parsed: ParsedQuery, params: &SearchParams) -> Result<Vec<SearchHit>> {
        if !parsed.is_plain() {
            let composition = Composition { texts: parsed.parts, not: parsed.not, like: Vec::new() };
            return self.search_composed(&composition, &parsed.filters, params);
        }
        let embedding = if parsed.text.trim().is_empty() {
            None
        } else {
            Some(self.embed_query_texts(&[parsed.text.as_str()], params.language.as_deref())?.remove(0))
        };
        let words = query::described_words(&parsed.text);
        self.run(Probe { embedding, one_text: true, words, ..Probe::default() }, &parsed.filters, params)
    }

    /// Reverse image search with a picture's bytes (`label` names it in errors).
    pub fn search_image(
        &self,
        bytes: &[u8],
        label: &Path,
        max_pixels: u64,
        filters: &[Filter],
        params: &SearchParams,
    ) -> Result<Vec<SearchHit>> {
        let duplicates = self.library.images_with_hash(&blake3::hash(bytes).to_hex())?;
        let embedding = self.embed_picture(bytes, label, max_pixels)?;
        self.run(Probe { embedding: Some(embedding), duplicates, ..Probe::default() }, filters, params)
    }

    /// A picture's embedding from its file's bytes (`label` names it in errors).
    pub fn embed_picture(&self, bytes: &[u8], label: &Path, max_pixels: u64) -> Result<Vec<f32>> {
        let clip = self.clip("image")?;
        let (pixels, _) = crate::ingest::decode::model_input(bytes, label, clip.preprocess_config(), max_pixels)?;
        Ok(clip.embed_images(&[pixels])?.remove(0))
    }

    /// A composed query (see [`Composition`]).
    pub fn search_composed(
        &self,
        composition: &Composition,
        filters: &[Filter],
        params: &SearchParams,
    ) -> Result<Vec<SearchHit>> {
        let embedding = self.compose(composition, params.language.as_deref())?;
        // One text of any weight points where the text does: its probabilities hold.
        let one_text = composition.like.is_empty() && composition.not.is_empty() && composition.texts.len() == 1;
        let texts: Vec<&str> = composition.texts.iter().map(|(text, _)| text.as_str()).collect();
        let words = query::described_words(&texts.join(" "));
        self.run(Probe { embedding: Some(embedding), one_text, words, ..Probe::default() }, filters, params)
    }

    /// The embedding of a composed query: Σ wᵢ·tᵢ + Σ pⱼ − Σ nₖ over the unit embeddings of its
    /// texts t (weights w), example pictures p and texts to move away from n, normalised again;
    /// the texts written in `language`.
    fn compose(&self, composition: &Composition, language: Option<&str>) -> Result<Vec<f32>> {
        let Composition { texts, not, like } = composition;
        if texts.is_empty() && like.is_empty() {
            return Err(Error::BadQuery(
                "a composed query needs something to look for (a text or an example picture), not only what to \
                 move away from"
                    .into(),
            ));
        }
        if let Some((text, weight)) = texts.iter().find(|(_, w)| !(w.is_finite() && *w > 0.0 && *w <= MAX_WEIGHT)) {
            return Err(Error::BadQuery(format!(
                "the weight {weight} of {text:?} is not a number above 0 and at most {MAX_WEIGHT}"
            )));
        }
        let all_texts: Vec<&str> =
            texts.iter().map(|(t, _)| t.as_str()).chain(not.iter().map(String::as_str)).collect();
        let embedded = self.embed_query_texts(&all_texts, language)?;
        let weights = texts.iter().map(|(_, w)| f64::from(*w)).chain(not.iter().map(|_| -1.0));
        let mut sum: Vec<f64> = Vec::new();
        let mut add = |weight: f64, embedding: &[f32]| {
            sum.resize(embedding.len(), 0.0);
            for (s, e) in sum.iter_mut().zip(embedding) {
                *s += weight * f64::from(*e);
            }
        };
        for (weight, embedding) in weights.zip(&embedded) {
            add(weight, embedding);
        }
        for example in like {
            let embedding = match example {
                Example::Indexed(id) => {
                    self.library.image(*id)?.ok_or(Error::NotFound { what: format!("image {id}") })?.embedding
                }
                Example::Embedding(embedding) => embedding.clone(),
            };
            add(1.0, &embedding);
        }
        let norm = sum.iter().map(|x| x * x).sum::<f64>().sqrt();
        if norm < 1e-6 {
            return Err(Error::BadQuery(
                "the parts of the query cancel each other out (e.g. `beach -beach`): nothing is left to look for"
                    .into(),
            ));
        }
        Ok(sum.iter().map(|x| (x / norm) as f32).collect())
    }

    /// "More like this": neighbours of an indexed picture's stored embedding.
    pub fn similar_to(&self, id: ImageId, params: &SearchParams) -> Result<Vec<SearchHit>> {
        let record = self.library.image(id)?.ok_or(Error::NotFound { what: format!("image {id}") })?;
        let duplicates = self.library.images_with_hash(&record.hash)?.into_iter().filter(|d| *d != id).collect();
        let file = record.file_path().to_path_buf();
        self.run(
            Probe { embedding: Some(record.embedding), duplicates, exclude: Some((id, file)), ..Probe::default() },
            &[],
            params,
        )
    }

    /// Search by an embedding computed elsewhere. It must have the library's dimension, finite
    /// values and unit length (within [`UNIT_LENGTH_TOLERANCE`]): a vector of another model or an
    /// unnormalised one would give scores that look valid and mean nothing.
    pub fn search_vector(&self, vector: &[f32], filters: &[Filter], params: &SearchParams) -> Result<Vec<SearchHit>> {
        let Some(model) = self.library.model_info()? else {
            return Err(Error::BadQuery("the library is empty: index pictures before searching it".into()));
        };
        if vector.len() != model.dim {
            return Err(Error::BadQuery(format!(
                "the vector has {} numbers; the library's model {} makes embeddings of {}",
                vector.len(),
                model.model,
                model.dim
            )));
        }
        if let Some(i) = vector.iter().position(|x| !x.is_finite()) {
            return Err(Error::BadQuery(format!("the vector's number at index {i} is {}", vector[i])));
        }
        let norm = vector.iter().map(|x| f64::from(*x) * f64::from(*x)).sum::<f64>().sqrt();
        if (norm - 1.0).abs() > UNIT_LENGTH_TOLERANCE {
            return Err(Error::BadQuery(format!(
                "the vector's length is {norm:.6}, not 1: divide it by its L2 norm first (cosine scores need unit vectors)"
            )));
        }
        self.run(Probe { embedding: Some(vector.to_vec()), ..Probe::default() }, filters, params)
    }

    fn run(&self, probe: Probe, filters: &[Filter], params: &SearchParams) -> Result<Vec<SearchHit>> {
        if params.k == 0 || params.k > MAX_K {
            return Err(Error::BadQuery(format!("k must be between 1 and {MAX_K}")));
        }
        let calibration = self.clip.as_ref().and_then(|clip| clip.sigmoid_score()).filter(|_| probe.one_text);
        let Some(embedding) = probe.embedding else {
            if params.min_prob.is_some() {
                return Err(Error::BadQuery("min_prob needs a text to look for".into()));
            }
            if params.min_score.is_some() {
                return Err(Error::BadQuery(
                    "min_score needs a text or a picture to score against; filters alone list pictures without \
                     scores"
                        .into(),
                ));
            }
            return self.list_by_date(filters, params);
        };
        if params.min_prob.is_some() && calibration.is_none() {
            return Err(Error::BadQuery(
                "min_prob needs one text to look for on a model with calibrated probabilities (SigLIP); this model, \
                 or a query that mixes texts or pictures (-people, weights, examples), gives cosine scores only: use \
                 min_score"
                    .into(),
            ));
        }
        // By score: the top `offset + k`. By date: the same pool of best matches for every page
        // and either search path, so paging through it neither repeats nor skips pictures. Twice
        // as many files: a shot's files fold into one hit (`stacks`).
        let wanted = match params.sort {
            SortOrder::Score => params.offset + params.k,
            SortOrder::Date => DATE_SORT_POOL.max(params.offset + params.k),
        };
        let files = 2 * wanted;
        let excluded_id = probe.exclude.as_ref().map(|(id, _)| *id);
        let mut scored = self.library.nearest(&embedding, files + probe.duplicates.len(), filters, excluded_id)?;
        let described = self.described(&embedding, &probe.words, files, filters, excluded_id)?;
        if !described.is_empty() {
            scored = rank_described(scored, &described, probe.words.len());
        }
        // Exact duplicates of the query first, whatever the index said.
        let duplicates = self.library.passing(&probe.duplicates, filters)?;
        scored.retain(|(id, _)| !duplicates.contains(id));
        let mut ranked: Vec<(ImageId, f32)> = duplicates.into_iter().map(|id| (id, 1.0)).chain(scored).collect();
        // The thresholds cut the visual tail; a picture described with the query's words stays.
        if let Some(min) = params.min_score {
            ranked.retain(|(id, s)| *s >= min || described.contains_key(id));
        }
        if let (Some(min), Some(calibration)) = (params.min_prob, calibration) {
            ranked.retain(|(id, s)| calibration.probability(*s) >= min || described.contains_key(id));
        }
        let shown: Vec<(ImageId, f32)> = ranked.into_iter().take(files).collect();
        let scores: HashMap<ImageId, f32> = shown.iter().copied().collect();
        let ids: Vec<ImageId> = shown.iter().map(|(id, _)| *id).collect();
        let records = self.library.images_meta(&ids)?;
        let hits = records.iter().map(|record| SearchHit {
            described: described.get(&record.id).map(|d| d.words.clone()).unwrap_or_default(),
            ..hit(record, scores.get(&record.id).copied(), calibration)
        });
        let mut shots = shots(hits, &records, probe.exclude.as_ref().map(|(_, path)| path.as_path()));
        if params.sort == SortOrder::Date {
            // The pool of the best `wanted` shots, newest first.
            let taken: std::collections::HashMap<ImageId, Option<i64>> =
                records.iter().map(|record| (record.id, record.facts.taken)).collect();
            shots.truncate(wanted);
            shots.sort_by_key(|shot| std::cmp::Reverse(taken.get(&shot.id).copied().flatten()));
        }
        Ok(shots.into_iter().skip(params.offset).take(params.k).collect())
    }

    /// The pictures (passing `filters`, but `exclude`) whose caption or keywords hold words of
    /// `words`, each with the words it holds: among each word's pictures, the `k` nearest to the
    /// query. Most words are in no caption: both backends count a filter's pictures before they
    /// search, and score the few that pass one exactly, so such a word costs an index lookup.
    fn described(
        &self,
        embedding: &[f32],
        words: &[String],
        k: usize,
        filters: &[Filter],
        exclude: Option<ImageId>,
    ) -> Result<HashMap<ImageId, Described>> {
        let mut described: HashMap<ImageId, Described> = HashMap::new();
        for word in words {
            for field in [Filter::Caption(word.clone()), Filter::Keyword(word.clone())] {
                let with_word: Vec<Filter> = filters.iter().cloned().chain([field]).collect();
                for (id, score) in self.library.nearest(embedding, k, &with_word, exclude)? {
                    let held = &mut described.entry(id).or_insert(Described { score, words: Vec::new() }).words;
                    if !held.contains(word) {
                        held.push(word.clone());
                    }
                }
            }
        }
        Ok(described)
    }

    /// Filter-only queries: newest first.
    fn list_by_date(&self, filters: &[Filter], params: &SearchParams) -> Result<Vec<SearchHit>> {
        let ids = self.library.newest(filters, 2 * (params.offset + params.k))?;
        let records = self.library.images_meta(&ids)?;
        let shots = shots(records.iter().map(|record| hit(record, None, None)), &records, None);
        Ok(shots.into_iter().skip(params.offset).take(params.k).collect())
    }
}

/// `scored` (the query's nearest pictures, best first) with the pictures `described` with the
/// query's words (`words` of them) joined, each moved up by its share of the words times the
/// spread of the scores (best − worst): a picture that holds every word is never below a
/// picture that holds none, and one that holds half of them half of the way. The spread, not a
/// constant, because each model scores on its own scale (CLIP's text matches lie near 0.3,
/// SigLIP's near 0.1). Scores stay cosines.
fn rank_described(
    mut scored: Vec<(ImageId, f32)>,
    described: &HashMap<ImageId, Described>,
    words: usize,
) -> Vec<(ImageId, f32)> {
    let known: std::collections::HashSet<ImageId> = scored.iter().map(|(id, _)| *id).collect();
    scored.extend(described.iter().filter(|(id, _)| !known.contains(id)).map(|(id, d)| (*id, d.score)));
    let best = scored.iter().map(|(_, s)| *s).fold(f32::MIN, f32::max);
    let worst = scored.iter().map(|(_, s)| *s).fold(f32::MAX, f32::min);
    let ranked = |(id, score): &(ImageId, f32)| {
        let held = described.get(id).map_or(0, |d| d.words.len());
        score + (best - worst) * held as f32 / words.max(1) as f32
    };
    scored.sort_by(|a, b| ranked(b).total_cmp(&ranked(a)).then(a.0.cmp(&b.0)));
    scored
}

/// A picture whose caption or keywords hold words of a text query.
struct Described {
    /// Its cosine similarity to the query.
    score: f32,
    /// The query's words it holds.
    words: Vec<String>,
}

/// `hits` (ranked, each of the record beside it) with the files of a shot folded into one hit,
/// and the shot of the file `left_out` left out.
fn shots(hits: impl Iterator<Item = SearchHit>, records: &[ImageRecord], left_out: Option<&Path>) -> Vec<SearchHit> {
    let with_paths = hits.zip(records).map(|(hit, record)| (hit, record.file_path().to_path_buf())).collect();
    stacks::fold(with_paths, left_out)
}

/// `calibration`: the model's, where the query's scores have a probability.
fn hit(record: &ImageRecord, score: Option<f32>, calibration: Option<SigmoidScore>) -> SearchHit {
    SearchHit {
        id: record.id,
        path: record.file_path().display(),
        path_bytes: record.file_path().raw_bytes().map(<[u8]>::to_vec),
        at_seconds: record.video_seconds(),
        score,
        prob: score.zip(calibration).map(|(score, c)| c.probability(score)),
        width: record.width,
        height: record.height,
        taken: record.facts.taken.map(iso_date),
        camera: record.facts.camera(),
        title: record.facts.title.clone(),
        rating: record.facts.rating,
        described: Vec::new(),
        tags: record.tags.clone(),
        thumbnail: format!("/api/images/{}/thumbnail", record.id),
        also: Vec::new(),
    }
}

/// Unix seconds → "YYYY-MM-DDTHH:MM:SS".
pub fn iso_date(secs: i64) -> String {
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = crate::ingest::exif::civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    #[test]
    fn iso_dates_round_trip_exif_dates() {
        let secs = crate::ingest::exif::parse_exif_datetime("2021:05:03 14:22:01").unwrap();
        assert_eq!(super::iso_date(secs), "2021-05-03T14:22:01");
        assert_eq!(super::iso_date(0), "1970-01-01T00:00:00");
    }
}
