//! Zero-shot tags: CLIP as a classifier. Each label of the library's label set (a built-in list
//! of about a thousand everyday concepts, plus the user's files) is embedded once through a few
//! prompt templates ("a photo of {label}."), averaged and normalised, as CLIP's zero-shot
//! classifiers are built.
//!
//! **Calibration.** A raw cosine means different things for different pictures and models (a
//! matching caption scores ≈ 0.3 with CLIP). So a label is weighed against neutral prompts ("a
//! photo.") that describe any picture: its *margin* on a picture is the picture's cosine with
//! the label minus its cosine with the neutral prompts, and its probability is
//! `sigmoid(temperature × margin)`, the two-way softmax of "the label" against "just a photo" at
//! the model's own logit scale (CLIP's 100, SigLIP's learnt one). Labels whose probability
//! reaches the threshold become the picture's tags, the most probable first, at most
//! `max_tags`. Since the margin is one dot product with (label − neutral), a new threshold or
//! label set retags a library from its stored embeddings, embedding no picture again.

use std::collections::{HashMap, HashSet};

use candle_core::{Device, Tensor};

use crate::error::{Error, Result};
use crate::model::Clip;
use crate::store::{Change, ImageRecord, Library, Tagging};

/// The built-in label set: one label per line, `#` comments.
pub const BUILTIN_LABELS: &str = include_str!("labels.txt");

/// What a label is embedded as (the embeddings of all of them averaged).
const TEMPLATES: &[&str] = &["a photo of {}.", "a photo of a {}.", "a picture showing {}."];

/// Prompts that fit any picture: what a label must beat to become a tag.
const NEUTRAL_PROMPTS: &[&str] = &["a photo.", "a picture.", "an image.", "a photo of something."];

/// Not measured on trained weights (none here): a label must beat "a photo." by a cosine margin
/// of ln(0.95/0.05)/100 ≈ 0.03 with CLIP, about a tenth of a matching caption's score.
pub const DEFAULT_THRESHOLD: f32 = 0.95;
pub const DEFAULT_MAX_TAGS: usize = 10;

/// CLIP's logit scale (its learnt temperature reaches the cap of 100 in every released CLIP).
const CLIP_TEMPERATURE: f32 = 100.0;

/// How many pictures are read and scored at a time.
const CHUNK: usize = 4096;

/// The most margins one matrix product holds (64 MB): a long label list scores fewer pictures
/// per product.
const MARGINS_PER_PRODUCT: usize = 16 << 20;

/// The most labels a label set may have (each is a row of every product, and stored).
pub const MAX_LABELS: usize = 20_000;

/// The labels of a label file: one per line, blank lines and `#` comments skipped, the first of
/// labels that differ only in case kept.
pub fn parse_labels(text: &str) -> Vec<String> {
    let mut seen = HashSet::new();
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .filter(|label| seen.insert(tag_of(label)))
        .map(str::to_string)
        .collect()
}

/// The tag a label gives (what `tag:` matches): lower-case words between single spaces. `_`
/// and `"` separate words too: the query language writes a label's spaces as `_`
/// (`tag:golden_retriever`) and cannot write a quote, so a label holding either stays findable.
pub fn tag_of(label: &str) -> String {
    label
        .split(|c: char| c.is_whitespace() || c == '_' || c == '"')
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

/// Labels with where they came from ("built-in", a file's path), for people.
pub struct LabelSet {
    pub labels: Vec<String>,
    pub sources: Vec<String>,
}

impl LabelSet {
    pub fn builtin() -> Self {
        Self { labels: parse_labels(BUILTIN_LABELS), sources: vec!["built-in".to_string()] }
    }
}

/// A label set for the library's model: the labels `previous` already holds keep their
/// embeddings; only new ones go through the text tower (`clip`, needed only then).
pub fn build_tagging(
    model: &str,
    load_text_model: &dyn Fn() -> Result<Clip>,
    LabelSet { labels, sources }: LabelSet,
    threshold: f32,
    max_tags: usize,
    previous: Option<&Tagging>,
    progress: &dyn Fn(usize, usize),
) -> Result<Tagging> {
    if labels.len() > MAX_LABELS {
        return Err(Error::LabelSet(format!(
            "{} labels: a label set holds at most {MAX_LABELS}; keep the ones people search for",
            labels.len()
        )));
    }
    let known: std::collections::HashMap<&str, &Vec<f32>> = previous
        .filter(|p| p.model == model)
        .map(|p| p.labels.iter().map(String::as_str).zip(&p.directions).collect())
        .unwrap_or_default();
    let missing: Vec<&String> = labels.iter().filter(|l| !known.contains_key(l.as_str())).collect();
    let mut embedded = std::collections::HashMap::new();
    let mut temperature = previous.filter(|p| p.model == model).map(|p| p.temperature);
    if !missing.is_empty() || temperature.is_none() {
        let clip = load_text_model()?;
        temperature = Some(clip.sigmoid_score().map_or(CLIP_TEMPERATURE, |s| s.logit_scale.exp()));
        let neutral = unit_mean(&clip.embed_texts(NEUTRAL_PROMPTS)?);
        // Many labels' prompts per call (the text tower batches them), and progress between.
        const LABELS_PER_CALL: usize = 64;
        for (done, group) in missing.chunks(LABELS_PER_CALL).enumerate() {
            progress(done * LABELS_PER_CALL, missing.len());
            let prompts: Vec<String> =
                group.iter().flat_map(|label| TEMPLATES.iter().map(move |t| t.replace("{}", label))).collect();
            let embedded_prompts = clip.embed_texts(&prompts.iter().map(String::as_str).collect::<Vec<_>>())?;
            for (label, embeddings) in group.iter().zip(embedded_prompts.chunks(TEMPLATES.len())) {
                let direction = unit_mean(embeddings).iter().zip(&neutral).map(|(l, n)| l - n).collect();
                embedded.insert(label.as_str(), direction);
            }
        }
        progress(missing.len(), missing.len());
    }
    let directions =
        labels.iter().map(|l| embedded.remove(l.as_str()).unwrap_or_else(|| known[l.as_str()].clone())).collect();
    Ok(Tagging {
        model: model.to_string(),
        labels,
        directions,
        threshold,
        temperature: temperature.expect("set above"),
        max_tags,
        sources,
    })
}

/// The unit mean of unit embeddings.
fn unit_mean(embeddings: &[Vec<f32>]) -> Vec<f32> {
    let mut mean = vec![0.0f32; embeddings[0].len()];
    for e in embeddings {
        mean.iter_mut().zip(e).for_each(|(m, v)| *m += v);
    }
    let norm = mean.iter().map(|v| v * v).sum::<f32>().sqrt().max(f32::MIN_POSITIVE);
    mean.into_iter().map(|v| v / norm).collect()
}

impl Tagging {
    /// The margin a label needs: sigmoid(temperature × margin) ≥ threshold.
    fn min_margin(&self) -> f32 {
        let p = self.threshold.clamp(1e-6, 1.0 - 1e-6);
        (p / (1.0 - p)).ln() / self.temperature
    }

    /// The probability that `label` describes the picture of this margin.
    pub fn probability(&self, margin: f32) -> f32 {
        1.0 / (1.0 + (-self.temperature * margin).exp())
    }

    /// The tags of each picture (unit embeddings), best first.
    pub fn tags_for(&self, embeddings: &[&[f32]]) -> Result<Vec<Vec<String>>> {
        if self.labels.is_empty() || embeddings.is_empty() {
            return Ok(vec![Vec::new(); embeddings.len()]);
        }
        let dim = self.directions[0].len();
        if let Some(bad) = embeddings.iter().find(|e| e.len() != dim) {
            return Err(Error::Corrupt {
                what: "the library's tag labels".into(),
                reason: format!(
                    "{dim}-dimensional, but a picture's embedding has {}: run `imgsearch tags --rebuild`",
                    bad.len()
                ),
            });
        }
        let labels = Tensor::from_iter(self.directions.iter().flatten().copied(), &Device::Cpu)?
            .reshape((self.labels.len(), dim))?
            .t()?;
        let min_margin = self.min_margin();
        let mut out = Vec::with_capacity(embeddings.len());
        for chunk in embeddings.chunks((MARGINS_PER_PRODUCT / self.labels.len()).clamp(1, CHUNK)) {
            let pictures = Tensor::from_iter(chunk.iter().flat_map(|e| e.iter().copied()), &Device::Cpu)?
                .reshape((chunk.len(), dim))?;
            let margins: Vec<Vec<f32>> = pictures.matmul(&labels)?.to_vec2()?;
            for row in margins {
                let mut passing: Vec<(usize, f32)> =
                    row.into_iter().enumerate().filter(|(_, margin)| *margin >= min_margin).collect();
                passing.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
                passing.truncate(self.max_tags);
                out.push(passing.into_iter().map(|(i, _)| tag_of(&self.labels[i])).collect());
            }
        }
        Ok(out)
    }

    /// Sets each record's tags.
    pub fn tag(&self, records: &mut [ImageRecord]) -> Result<()> {
        let embeddings: Vec<&[f32]> = records.iter().map(|r| r.embedding.as_slice()).collect();
        let tags = self.tags_for(&embeddings)?;
        records.iter_mut().zip(tags).for_each(|(record, tags)| record.tags = tags);
        Ok(())
    }
}

/// A tag and how many pictures carry it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TagCount {
    pub tag: String,
    pub count: u64,
}

/// Every tag of the library, the most frequent first (ties by name).
pub fn counts(library: &dyn Library) -> Result<Vec<TagCount>> {
    Ok(most_frequent_first(library.tag_counts()?).map(|(tag, count)| TagCount { tag, count }).collect())
}

/// A keyword people gave pictures (or a person's name) and how many pictures carry it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct KeywordCount {
    pub keyword: String,
    pub count: u64,
}

/// Every keyword of the library, the most frequent first (ties by name). Keywords that differ
/// only in case ("Beach", "beach") are one, as the `keyword:` filter finds them, under the
/// spelling most pictures have.
pub fn keyword_counts(library: &dyn Library) -> Result<Vec<KeywordCount>> {
    let mut by_word: HashMap<String, (String, u64, u64)> = HashMap::new(); // spelling, its count, total
    for (keyword, count) in library.keyword_counts()? {
        let entry = by_word.entry(keyword.to_lowercase()).or_insert_with(|| (keyword.clone(), 0, 0));
        if count > entry.1 || (count == entry.1 && keyword < entry.0) {
            (entry.0, entry.1) = (keyword, count);
        }
        entry.2 += count;
    }
    let merged = by_word.into_values().map(|(spelling, _, total)| (spelling, total)).collect();
    Ok(most_frequent_first(merged).map(|(keyword, count)| KeywordCount { keyword, count }).collect())
}

fn most_frequent_first(counts: HashMap<String, u64>) -> impl Iterator<Item = (String, u64)> {
    let mut counts: Vec<(String, u64)> = counts.into_iter().collect();
    counts.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    counts.into_iter()
}

/// Retags every picture of the library with its label set (none: clears every tag), from the
/// stored embeddings; writes only the pictures whose tags change. Returns how many changed.
pub fn retag(library: &mut dyn Library, progress: &dyn Fn(usize, usize)) -> Result<usize> {
    let tagging = library.tagging()?;
    let total = library.image_count();
    let mut changes = Vec::new();
    let mut chunk: Vec<ImageRecord> = Vec::with_capacity(CHUNK);
    let mut seen = 0;
    let flush = |chunk: &mut Vec<ImageRecord>, changes: &mut Vec<Change>| -> Result<()> {
        let embeddings: Vec<&[f32]> = chunk.iter().map(|r| r.embedding.as_slice()).collect();
        let tags = match &tagging {
            Some(tagging) => tagging.tags_for(&embeddings)?,
            None => vec![Vec::new(); chunk.len()],
        };
        for (record, tags) in chunk.drain(..).zip(tags) {
            if record.tags != tags {
                changes.push(Change::Tag { id: record.id, tags });
            }
        }
        Ok(())
    };
    for record in library.images() {
        chunk.push(record?);
        seen += 1;
        if chunk.len() == CHUNK {
            flush(&mut chunk, &mut changes)?;
            progress(seen, total);
        }
    }
    flush(&mut chunk, &mut changes)?;
    progress(seen, total);
    for batch in changes.chunks(10_000) {
        library.apply(batch)?;
    }
    library.save()?;
    Ok(changes.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(v: &[f32]) -> Vec<f32> {
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.iter().map(|x| x / n).collect()
    }

    fn tagging(directions: Vec<Vec<f32>>, threshold: f32, max_tags: usize) -> Tagging {
        Tagging {
            model: "m".into(),
            labels: (0..directions.len()).map(|i| format!("Label {i}")).collect(),
            directions,
            threshold,
            // Low enough that the margins below give probabilities short of 1 in f32.
            temperature: 10.0,
            max_tags,
            sources: vec!["test".into()],
        }
    }

    #[test]
    fn a_label_is_a_tag_when_its_margin_over_the_neutral_prompts_reaches_the_threshold() {
        // Label directions along axes 0 and 1; a picture between them leaning to axis 0.
        let t = tagging(vec![vec![1.0, 0.0, 0.0], vec![0.0, 1.0, 0.0], vec![0.0, 0.0, -1.0]], 0.95, 10);
        let picture = unit(&[0.9, 0.3, 0.3]);
        let margins = [picture[0], picture[1], -picture[2]];
        let expected: Vec<String> = [(0, margins[0]), (1, margins[1])]
            .into_iter()
            .filter(|(_, m)| t.probability(*m) >= 0.95)
            .map(|(i, _)| format!("label {i}"))
            .collect();
        assert_eq!(t.tags_for(&[&picture]).unwrap(), vec![expected.clone()]);
        assert_eq!(expected, ["label 0", "label 1"], "margins 0.90 and 0.30 at temperature 10: p 0.9999 and 0.953");
        // A threshold just above label 1's probability drops it, and only it.
        let strict = Tagging { threshold: t.probability(margins[1]) + 1e-4, ..t.clone() };
        assert_eq!(strict.tags_for(&[&picture]).unwrap(), vec![vec!["label 0".to_string()]]);
        // max_tags keeps the most probable.
        let one = Tagging { max_tags: 1, ..t.clone() };
        assert_eq!(one.tags_for(&[&picture]).unwrap(), vec![vec!["label 0".to_string()]]);
        // A margin of exactly logit(p)/T is the boundary.
        assert!((t.probability(t.min_margin()) - 0.95).abs() < 1e-5);
    }

    #[test]
    fn label_files_skip_comments_blank_lines_and_repeats() {
        let labels = parse_labels("# scenes\nBeach\n\n  golden   retriever \nbeach\nStrand\n");
        assert_eq!(labels, ["Beach", "golden   retriever", "Strand"]);
        assert_eq!(tag_of(&labels[1]), "golden retriever");
        assert_eq!(tag_of("Ice_Cream"), "ice cream");
        assert_eq!(tag_of("a \"quoted\" label"), "a quoted label");
        let builtin = parse_labels(BUILTIN_LABELS);
        assert!((900..=1100).contains(&builtin.len()), "{} built-in labels", builtin.len());
    }
}
