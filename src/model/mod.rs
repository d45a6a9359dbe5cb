//! Image–text models (CLIP, SigLIP, OpenCLIP checkpoints): checkpoint loading (local folder,
//! file or hub), tokenizer, preprocessing and the two encoders, behind one [`Clip`] handle that
//! turns pictures and texts into L2-normalised embeddings of one space.

pub mod checkpoint;
pub mod clip;
pub mod config;
mod convnext;
pub mod device;
mod eva;
mod hf_text;
mod hub;
pub mod kernels;
pub mod languages;
mod mclip;
pub mod openclip;
pub mod preprocess;
mod resnet;
mod text_cleaning;
pub mod tokenizer;

use std::path::Path;

use candle_core::{DType, Device, Tensor};

pub use checkpoint::{CheckpointFiles, Layout, DEFAULT_MODEL};
pub use config::{Family, ModelConfig, PreprocessConfig};
pub use device::{DeviceChoice, Precision};
pub use preprocess::{Coverage, Normalization, Pixels, PreprocessedImage};

use crate::error::{Error, Result};
use crate::store::ModelInfo;
use clip::{l2_normalize_rows, ClipModel, Weights};
pub use clip::{SigmoidScore, Towers};
use tokenizer::{PaddingSource, TextTokenizer};

/// An L2-normalised embedding.
pub type Embedding = Vec<f32>;

/// The name recorded with an index, from which the same model loads again: the repo id, the
/// canonical folder path, or for a bare state dict (or a folder) its canonical path with what
/// follows `#` (an architecture, or an M-CLIP's image model: a file or folder by its canonical
/// path).
fn model_id(model: &str) -> String {
    let canonical = |p: &Path| std::fs::canonicalize(p).map(|p| p.to_string_lossy().into_owned());
    let canonical_if_a_path =
        |s: &str| if Path::new(s).exists() { canonical(Path::new(s)).unwrap_or(s.into()) } else { s.into() };
    if let Some((file, arch)) = checkpoint::bare_state_dict(model) {
        return format!(
            "{}#{}",
            canonical(file).unwrap_or_else(|_| file.display().to_string()),
            canonical_if_a_path(&arch)
        );
    }
    if let Some((folder, after)) = model.rsplit_once('#').filter(|(folder, _)| Path::new(folder).is_dir()) {
        return format!("{}#{}", canonical_if_a_path(folder), canonical_if_a_path(after));
    }
    match std::fs::canonicalize(model) {
        Ok(dir) if dir.is_dir() => dir.to_string_lossy().into_owned(),
        _ => model.to_string(),
    }
}

/// How a family's texts are padded: CLIP not at all, SigLIP to the full context.
fn padding_source(config: &ModelConfig, tokenizer_config: Option<std::path::PathBuf>) -> PaddingSource {
    match config.family {
        // open_clip's Hugging Face towers mask the padding out, whichever family's image tower
        // they are paired with.
        _ if config.text_config.hf_encoder.is_some() => PaddingSource::Unpadded,
        Family::Clip if !config.text_config.bidirectional => PaddingSource::EndOfText { tokenizer_config },
        // A tower that sees every position is read padded to its context (SigLIP's, CLIPA's).
        Family::Clip | Family::Siglip => PaddingSource::PadToLength {
            tokenizer_config,
            fallback_pad_id: config.text_config.pad_token_id,
            siglip2_tokenizer: config.text_config.siglip2_tokenizer,
        },
    }
}

/// Texts are encoded in batches of this many, sorted by length so padding stays short.
const TEXT_BATCH: usize = 32;

/// Every picture's bytes and the normalisation they share, if all are still bytes (a batch
/// comes from one model's pipeline; only tests hand in values already normalised).
fn shared_bytes<'a>(images: &[&'a PreprocessedImage]) -> Option<(Vec<&'a [u8]>, Normalization)> {
    let mut rows = Vec::with_capacity(images.len());
    let mut shared = None;
    for image in images {
        let Pixels::Bytes { values, normalize } = &image.pixels else { return None };
        if shared.is_some_and(|first| first != *normalize) {
            return None;
        }
        shared = Some(*normalize);
        rows.push(values.as_slice());
    }
    Some((rows, shared?))
}

/// Runs a forward pass on one of rayon's threads (on CPU). Every layer starts several parallel
/// loops; started from any other thread, each one hands its work to the pool and puts the caller
/// to sleep until it is done, ~100 thread hand-overs per short text query. From a pool thread
/// the loops split work with the other threads directly.
fn on_pool_thread<T: Send>(device: &Device, forward: impl FnOnce() -> T + Send) -> T {
    if !device.is_cpu() || rayon::current_thread_index().is_some() {
        return forward();
    }
    rayon::join(forward, || ()).0
}

/// A loaded checkpoint: everything needed to embed pictures and texts into one space.
pub struct Clip {
    model: ClipModel,
    tokenizer: TextTokenizer,
    preprocess: PreprocessConfig,
    device: Device,
    model_id: String,
}

/// A checkpoint resolved to local files, with its configuration read but weights not loaded:
/// enough to know the embedding size and preprocessing before paying for the weights.
#[derive(Clone)]
pub struct ModelSpec {
    files: CheckpointFiles,
    pub config: ModelConfig,
    pub preprocess: PreprocessConfig,
    /// The name recorded with an index: the repo id, or the canonical folder path.
    pub model_id: String,
    /// The number format the encoders will run in (f32 unless asked otherwise).
    pub precision: Precision,
}

impl ModelSpec {
    /// `model`: a local checkpoint folder or a Hugging Face repo id (`owner/name[@revision]`).
    pub fn resolve(model: &str) -> Result<Self> {
        let files = CheckpointFiles::resolve(model)?;
        let (config, preprocess) = Self::configs(&files)?;
        Ok(Self { model_id: model_id(model), files, config, preprocess, precision: Precision::F32 })
    }

    /// The model's configuration and its preprocessing, as its files describe them.
    fn configs(files: &CheckpointFiles) -> Result<(ModelConfig, PreprocessConfig)> {
        Ok(match &files.layout {
            Layout::HuggingFace { config } => {
                let config = ModelConfig::from_file(config)?;
                let preprocess = match &files.preprocessor {
                    Some(path) => {
                        let pre = PreprocessConfig::from_file(path, &config)?;
                        pre.check_matches_model(&config.vision_config, path)?;
                        pre
                    }
                    None => PreprocessConfig::model_default(&config),
                };
                (config, preprocess)
            }
            Layout::OpenClip { config, source, text_model } => {
                let model_config = config.model_config(source, text_model.as_deref())?;
                let preprocess = config.preprocess(model_config.vision_config.image_size as u32, source)?;
                (model_config, preprocess)
            }
            // The image model's config and preprocessing, M-CLIP's text tower.
            Layout::MClip { config, mclip, text_model, image } => {
                let (image_config, preprocess) = Self::configs(image)?;
                let bad = |reason: String| Error::BadCheckpoint { path: config.clone(), reason };
                if image_config.family != Family::Clip || image_config.projection_dim != mclip.dim {
                    let family = if image_config.family == Family::Clip { "CLIP" } else { "SigLIP" };
                    return Err(bad(format!(
                        "its image model embeds {}-wide {family} embeddings, where M-CLIP's text tower puts out \
                         {}-wide CLIP ones: name the CLIP it was distilled to after '#'",
                        image_config.projection_dim, mclip.dim
                    )));
                }
                let json = serde_json::json!({
                    "model_type": "clip",
                    "projection_dim": mclip.dim,
                    "text_config": mclip.text_config(text_model, config)?,
                    "vision_config": image_config.vision_config,
                });
                (ModelConfig::from_json(json, config)?, preprocess)
            }
        })
    }

    pub fn with_precision(self, precision: Precision) -> Self {
        Self { precision, ..self }
    }

    pub fn dim(&self) -> usize {
        self.config.projection_dim
    }

    /// What an index built with this model must record (and match on reuse).
    pub fn info(&self) -> ModelInfo {
        ModelInfo {
            model: self.model_id.clone(),
            dim: self.dim(),
            preprocess: serde_json::to_string(&self.preprocess).expect("preprocess config serialises"),
        }
    }

    /// Loads the towers asked for; embedding with a tower that was not loaded is an error.
    pub fn load(&self, device: &Device, towers: Towers) -> Result<Clip> {
        self.precision.check(device)?;
        let max_length = self.config.text_config.context_length();
        let padding = padding_source(&self.config, self.files.tokenizer_config.clone());
        let tokenizer = match &self.files.tokenizer {
            Some(path) if path.file_name().is_some_and(|name| name == "vocab.txt") => {
                TextTokenizer::from_bert_vocab(path, self.files.tokenizer_config.as_deref(), max_length, padding)?
            }
            Some(path) => TextTokenizer::from_file(path, max_length, padding)?,
            None => TextTokenizer::builtin_clip(max_length, PaddingSource::EndOfText { tokenizer_config: None })?,
        };
        let tokenizer = match (&self.files.layout, self.config.text_config.open_clip_cleaning) {
            (checkpoint::Layout::OpenClip { .. }, Some(cleaning)) => {
                let tokenizer = tokenizer
                    .cleaning_texts_as_open_clip_hf(cleaning)
                    .with_special_tokens_of_its_class(self.files.tokenizer_config.as_deref())?;
                match self.config.text_config.strip_sep_token {
                    true => tokenizer.stripping_sep_token(self.files.tokenizer_config.as_deref())?,
                    false => tokenizer,
                }
            }
            (checkpoint::Layout::OpenClip { .. }, None) => tokenizer.cleaning_texts_as_open_clip()?,
            // multilingual-clip tokenizes with `transformers`' class of its modelBase, which
            // splits XLM-RoBERTa's texts at whitespace first (BERT's are split there anyway).
            (checkpoint::Layout::MClip { .. }, _) => tokenizer.splitting_at_whitespace_first(),
            (checkpoint::Layout::HuggingFace { .. }, _) if self.config.text_config.siglip2_tokenizer => {
                tokenizer.lowercasing_first()?
            }
            (checkpoint::Layout::HuggingFace { .. }, _) => tokenizer,
        }
        .for_vocab_size(self.config.text_config.vocab_size)?;
        let tokenizer = match self.config.text_config.class_token {
            true => tokenizer.pooled_after_the_text(),
            false => tokenizer,
        };
        let weights_of = |files: &CheckpointFiles, towers: Towers| -> Result<Weights> {
            Ok(Weights::new(files.open_tensors(towers)?, device, files.weights.clone())
                .in_dtype(self.precision.tensor_dtype(device)))
        };
        let model = match &self.files.layout {
            // Each tower from its own checkpoint.
            Layout::MClip { image, .. } => {
                let vision = towers.has_image().then(|| weights_of(image, Towers::Image)).transpose()?;
                let text = towers.has_text().then(|| weights_of(&self.files, Towers::Text)).transpose()?;
                ClipModel::load_towers(vision.as_ref(), text.as_ref(), &self.config, self.precision)?
            }
            _ => ClipModel::load(&weights_of(&self.files, towers)?, &self.config, towers, self.precision)?,
        };
        Ok(Clip {
            model,
            tokenizer,
            preprocess: self.preprocess.clone(),
            device: device.clone(),
            model_id: self.model_id.clone(),
        })
    }
}

impl Clip {
    /// Loads both towers of `model`: a local checkpoint folder or a Hugging Face repo id
    /// (`owner/name[@revision]`).
    pub fn load(model: &str, device: &Device) -> Result<Self> {
        ModelSpec::resolve(model)?.load(device, Towers::Both)
    }

    /// A model of the given shape with random weights and the given tokenizer (`None`: the
    /// built-in CLIP BPE): for benchmarks, which need the real architecture (e.g. ViT-B/32) but
    /// not trained weights.
    pub fn with_random_weights(
        config: ModelConfig,
        tokenizer: Option<&Path>,
        device: &Device,
        precision: Precision,
    ) -> Result<Self> {
        precision.check(device)?;
        let max_length = config.text_config.context_length();
        let padding = padding_source(&config, None);
        let tokenizer = match tokenizer {
            Some(path) => TextTokenizer::from_file(path, max_length, padding)?,
            None => TextTokenizer::builtin_clip(max_length, padding)?,
        };
        let weights = Weights::random(device).in_dtype(precision.tensor_dtype(device));
        let model = ClipModel::load(&weights, &config, Towers::Both, precision)?;
        let preprocess = PreprocessConfig::model_default(&config);
        Ok(Self { model, tokenizer, preprocess, device: device.clone(), model_id: "random-weights".into() })
    }

    /// Writes a complete checkpoint folder (config.json, model.safetensors with random weights,
    /// tokenizer.json) in the given shape: for benchmarks that run the real pipeline on a
    /// realistically sized model, which this machine has no trained copy of.
    pub fn write_random_checkpoint(config: &ModelConfig, tokenizer: &Path, dir: &Path) -> Result<()> {
        let io = |path: &Path, source| Error::Io { path: path.to_owned(), source };
        std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
        let weights = Weights::random(&Device::Cpu);
        ClipModel::load(&weights, config, Towers::Both, Precision::F32)?;
        weights.save_random(&dir.join("model.safetensors"))?;
        let config_json = serde_json::to_string_pretty(config).expect("config serialises");
        std::fs::write(dir.join("config.json"), config_json).map_err(|e| io(dir, e))?;
        std::fs::copy(tokenizer, dir.join("tokenizer.json")).map_err(|e| io(tokenizer, e))?;
        Ok(())
    }

    pub fn model_id(&self) -> &str {
        &self.model_id
    }

    /// Length of every embedding this model produces.
    pub fn dim(&self) -> usize {
        self.model.config.projection_dim
    }

    pub fn config(&self) -> &ModelConfig {
        &self.model.config
    }

    /// SigLIP's cosine → probability calibration, where the model has one.
    pub fn sigmoid_score(&self) -> Option<SigmoidScore> {
        self.model.sigmoid_score
    }

    pub fn preprocess_config(&self) -> &PreprocessConfig {
        &self.preprocess
    }

    pub fn tokenizer(&self) -> &TextTokenizer {
        &self.tokenizer
    }

    /// Embeds a batch of preprocessed pictures in one forward pass.
    pub fn embed_images(&self, images: &[PreprocessedImage]) -> Result<Vec<Embedding>> {
        // Pictures of one size go through the tower together. Only SigLIP 2 NaFlex gives
        // pictures sizes of their own; each size runs alone, where its reference pads them all to
        // the most patches and masks the padding out (the same embeddings, without the padding's work).
        let mut sizes: Vec<(usize, usize)> = images.iter().map(|i| (i.height, i.width)).collect();
        sizes.sort_unstable();
        sizes.dedup();
        let mut embeddings = vec![Vec::new(); images.len()];
        for size in sizes {
            let (positions, same_size): (Vec<usize>, Vec<&PreprocessedImage>) =
                images.iter().enumerate().filter(|(_, i)| (i.height, i.width) == size).unzip();
            for (position, embedding) in positions.into_iter().zip(self.embed_same_size(&same_size)?) {
                embeddings[position] = embedding;
            }
        }
        Ok(embeddings)
    }

    /// `images`, all of one size.
    fn embed_same_size(&self, images: &[&PreprocessedImage]) -> Result<Vec<Embedding>> {
        let Some(first) = images.first() else { return Ok(Vec::new()) };
        let (h, w) = (first.height, first.width);
        let pixels = match shared_bytes(images) {
            Some((rows, normalize)) => {
                // Channel-major across the batch, so that each channel's normalisation is one
                // contiguous pass (a broadcast over (n, 3, h, w) took 10% of an f16 batch on a GPU).
                let planes = (3, images.len(), h, w);
                let bytes = match &self.device {
                    #[cfg(feature = "cuda")]
                    Device::Cuda(gpu) => kernels::cuda::upload_planes(&rows, planes, gpu)?,
                    _ => {
                        let mut bytes = vec![0u8; rows.iter().map(|r| r.len()).sum()];
                        preprocess::gather_planes(&rows, &mut bytes);
                        Tensor::from_vec(bytes, planes, &self.device)?
                    }
                };
                let values = bytes.to_dtype(DType::F32)?;
                let channels = normalize
                    .iter()
                    .enumerate()
                    .map(|(c, &(multiply, subtract))| values.get(c)?.affine(multiply.into(), (-subtract).into()))
                    .collect::<candle_core::Result<Vec<_>>>()?;
                Tensor::stack(&channels, 1)?
            }
            None => Tensor::from_vec(
                images.iter().flat_map(|i| i.normalized()).collect(),
                (images.len(), 3, h, w),
                &self.device,
            )?,
        };
        let vision = self.model.vision.as_ref().ok_or(Error::TowerNotLoaded("image"))?;
        l2_normalize_rows(&on_pool_thread(&self.device, || vision.forward(&pixels))?)
    }

    /// Embeds texts (any string, the empty one included).
    pub fn embed_texts(&self, texts: &[&str]) -> Result<Vec<Embedding>> {
        self.embed_texts_in(texts, None)
    }

    /// Texts written in `language` (a FLORES-200 code or a language tag): read as such by
    /// models whose tokenizer names languages (NLLB's), as any text by the others.
    pub fn embed_texts_in(&self, texts: &[&str], language: Option<&str>) -> Result<Vec<Embedding>> {
        let tower = self.model.text.as_ref().ok_or(Error::TowerNotLoaded("text"))?;
        let tokenized = texts.iter().map(|t| self.tokenizer.encode_in(t, language)).collect::<Result<Vec<_>>>()?;
        // Sort by length so each batch pads only up to similar lengths. The padding is harmless:
        // CLIP's tower is causal, CoCa's and the Hugging Face towers read each row up to its end.
        let mut order: Vec<usize> = (0..texts.len()).collect();
        order.sort_by_key(|&i| tokenized[i].end_position);
        let mut out = vec![Vec::new(); texts.len()];
        for chunk in order.chunks(TEXT_BATCH) {
            let seq = chunk.iter().map(|&i| tokenized[i].end_position + 1).max().unwrap_or(1);
            let mut ids = Vec::with_capacity(chunk.len() * seq);
            let mut ends = Vec::with_capacity(chunk.len());
            for &i in chunk {
                let t = &tokenized[i];
                // Only the tokens up to the end token matter; pad with it.
                let used = &t.ids[..=t.end_position];
                ids.extend_from_slice(used);
                ids.extend(std::iter::repeat_n(t.ids[t.end_position], seq - used.len()));
                ends.push(t.end_position);
            }
            let ids = Tensor::from_vec(ids, (chunk.len(), seq), &self.device)?;
            let embeddings = l2_normalize_rows(&on_pool_thread(&self.device, || tower.forward(&ids, &ends))?)?;
            for (&i, e) in chunk.iter().zip(embeddings) {
                out[i] = e;
            }
        }
        Ok(out)
    }
}
