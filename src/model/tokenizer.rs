//! Text → token ids, from the checkpoint's `tokenizer.json` (any kind the `tokenizers` crate
//! reads: CLIP's byte-level BPE, SentencePiece unigram, Gemma's BPE with byte fallback).

use std::path::Path;

use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::{EncodeInput, InputSequence, Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

use super::languages;
use super::text_cleaning::{open_clip_clean, TextCleaning};
use crate::error::{Error, Result};

const END_OF_TEXT: &str = "<|endoftext|>";
const START_OF_TEXT: &str = "<|startoftext|>";

/// The CLIP BPE tokenizer (OpenAI's vocabulary, as `openai/clip-vit-base-patch32` ships it in
/// `tokenizer.json`), for OpenCLIP checkpoints, which publish no tokenizer file of their own.
const CLIP_TOKENIZER_GZ: &[u8] = include_bytes!("clip_tokenizer.json.gz");

/// Token ids of one text, and the position the text tower pools its embedding from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenizedText {
    pub ids: Vec<u32>,
    pub end_position: usize,
}

/// Where a text tower reads its embedding, which decides how texts are padded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pooling {
    /// CLIP: at the first end-of-text token. The tower is causal, so nothing after it matters
    /// and texts are not padded.
    EndOfText,
    /// SigLIP: at the last position of a text padded to the full context with `pad_id`, as the
    /// model was trained (`padding="max_length"`); without the padding the embedding differs.
    /// The padding goes before the text where `pad_left` (the tokenizer's `padding_side`).
    LastPosition { pad_id: u32, pad_left: bool },
    /// At a token that sees the whole text but not its padding (CoCa's class token after the
    /// text; the mean or the first token of OpenCLIP's Hugging Face text towers): every token
    /// is kept, also those after a typed end token, and none is added.
    WholeText,
}

pub struct TextTokenizer {
    inner: Tokenizer,
    /// CLIP: the end-of-text id (`<|endoftext|>`, MetaCLIP 2's `</s>`); SigLIP: unused.
    end_of_text: u32,
    pooling: Pooling,
    max_length: usize,
    /// OpenCLIP checkpoints: texts are cleaned and split into words as open_clip does.
    open_clip: Option<OpenClipWords>,
    /// OpenCLIP's Hugging Face tokenizers: texts are cleaned as open_clip's `HFTokenizer`
    /// cleans them, then tokenized by `tokenizer.json` as they are.
    open_clip_hf_cleaning: Option<TextCleaning>,
    /// The model's vocabulary size: a token id at or past it is a tokenizer of another model.
    vocab_size: Option<u32>,
    /// NLLB's tokenizer: where every text has its language's code.
    language_code: Option<LanguageCode>,
    /// open_clip's `strip_sep_token`: this id (BERT's `[SEP]`) becomes token 0 wherever it is.
    stripped_token: Option<u32>,
}

/// Where NLLB's tokenizer puts the code of the text's language (`eng_Latn` unless a query says
/// otherwise): before the text, or after its `</s>` (`legacy_behaviour`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LanguageCode {
    First,
    Last,
}

/// How open_clip's own tokenizer (`SimpleTokenizer`) splits a cleaned text into the words it
/// gives the BPE, which differs from `tokenizer.json`'s split in three ways: its special tokens
/// are `<start_of_text>` and `<end_of_text>` (typed, they are those tokens; `<|endoftext|>` is
/// text), a run of punctuation may swallow the `<` of one, and the contractions match case
/// insensitively (`'ſ` is `'s`, as Python's `re.IGNORECASE` folds it).
struct OpenClipWords {
    pattern: regex::Regex,
    start_of_text: u32,
}

impl OpenClipWords {
    const START: &str = "<start_of_text>";
    const END: &str = "<end_of_text>";

    fn new(inner: &Tokenizer) -> std::result::Result<Self, String> {
        let pattern = regex::Regex::new(
            r"(?i)<start_of_text>|<end_of_text>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+",
        )
        .expect("a valid pattern");
        let start_of_text = inner
            .token_to_id(START_OF_TEXT)
            .ok_or_else(|| format!("the vocabulary has no {START_OF_TEXT} token (is this a CLIP tokenizer?)"))?;
        Ok(Self { pattern, start_of_text })
    }
}

impl TextTokenizer {
    /// `max_length` is the text tower's context (77 for every OpenAI CLIP): longer texts are cut,
    /// keeping the special tokens, exactly as `transformers` does with `truncation=True`.
    pub fn from_file(path: &Path, max_length: usize, padding: PaddingSource) -> Result<Self> {
        let bad = |reason: String| Error::BadCheckpoint { path: path.to_owned(), reason };
        let inner = Tokenizer::from_file(path).map_err(|e| bad(e.to_string()))?;
        Self::new(inner, max_length, padding).map_err(bad)
    }

    /// BERT's WordPiece tokenizer from its `vocab.txt` (Chinese-CLIP ships no tokenizer.json),
    /// as `transformers` builds `BertTokenizer`: BERT's normalizer as `tokenizer_config.json`
    /// sets it (`do_lower_case`, `strip_accents`, `tokenize_chinese_chars`), its pre-tokenizer,
    /// `[CLS] … [SEP]`, and the special tokens matched whole where they are typed.
    pub fn from_bert_vocab(
        vocab: &Path,
        tokenizer_config: Option<&Path>,
        max_length: usize,
        padding: PaddingSource,
    ) -> Result<Self> {
        use tokenizers::models::wordpiece::WordPiece;
        use tokenizers::normalizers::bert::BertNormalizer;
        use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
        use tokenizers::processors::bert::BertProcessing;
        let bad = |path: &Path, reason: String| Error::BadCheckpoint { path: path.to_owned(), reason };
        let config = match tokenizer_config {
            Some(path) => read_tokenizer_config(path).map_err(|reason| bad(path, reason))?,
            None => serde_json::json!({}),
        };
        let flag = |key: &str, default: bool| config.get(key).and_then(|v| v.as_bool()).unwrap_or(default);
        let token = |key: &str, default: &str| token_named(&config, key).unwrap_or(default).to_string();
        let vocab_path = vocab.to_str().ok_or_else(|| bad(vocab, "the path is not UTF-8".into()))?;
        let unknown = token("unk_token", "[UNK]");
        let model = WordPiece::from_file(vocab_path)
            .unk_token(unknown.clone())
            .build()
            .map_err(|e| bad(vocab, format!("not a WordPiece vocabulary: {e}")))?;
        let mut inner = Tokenizer::new(model);
        let lowercase = flag("do_lower_case", true);
        // `strip_accents` unset: accents go with lowercasing, as in BertTokenizer.
        let strip_accents = config.get("strip_accents").and_then(|v| v.as_bool());
        let failed = |e: tokenizers::Error| bad(vocab, e.to_string());
        inner
            .with_normalizer(Some(BertNormalizer::new(
                true,
                flag("tokenize_chinese_chars", true),
                strip_accents,
                lowercase,
            )))
            .map_err(failed)?;
        inner.with_pre_tokenizer(Some(BertPreTokenizer));
        let (cls, sep) = (token("cls_token", "[CLS]"), token("sep_token", "[SEP]"));
        let id = |token: &str| {
            inner.token_to_id(token).ok_or_else(|| bad(vocab, format!("the vocabulary has no {token} token")))
        };
        let processing = BertProcessing::new((sep.clone(), id(&sep)?), (cls.clone(), id(&cls)?));
        inner.with_post_processor(Some(processing));
        let specials: Vec<tokenizers::AddedToken> =
            [unknown, sep, token("pad_token", "[PAD]"), cls, token("mask_token", "[MASK]")]
                .into_iter()
                .filter(|token| inner.token_to_id(token).is_some())
                .map(|token| tokenizers::AddedToken::from(token, true))
                .collect();
        inner.add_special_tokens(specials).map_err(failed)?;
        Self::new(inner, max_length, padding).map_err(|reason| bad(vocab, reason))
    }

    /// The CLIP tokenizer built into the binary (OpenCLIP's; or any family's, for timing).
    pub fn builtin_clip(max_length: usize, padding: PaddingSource) -> Result<Self> {
        let mut json = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(CLIP_TOKENIZER_GZ), &mut json)
            .expect("the built-in tokenizer is valid gzip");
        let inner = Tokenizer::from_bytes(&json).expect("the built-in tokenizer is valid");
        Self::new(inner, max_length, padding).map_err(Error::Tokenizer)
    }

    fn new(mut inner: Tokenizer, max_length: usize, padding: PaddingSource) -> std::result::Result<Self, String> {
        let end_of_text = match &padding {
            PaddingSource::EndOfText { tokenizer_config } => end_of_text_id(&inner, tokenizer_config.as_deref())?,
            PaddingSource::Unpadded | PaddingSource::PadToLength { .. } => 0,
        };
        let pooling = match padding {
            PaddingSource::EndOfText { .. } => Pooling::EndOfText,
            PaddingSource::Unpadded => Pooling::WholeText,
            PaddingSource::PadToLength { tokenizer_config, fallback_pad_id, siglip2_tokenizer } => {
                let pad_id = pad_id(&inner, tokenizer_config.as_deref(), fallback_pad_id)?;
                let pad_left = pads_left(&inner, tokenizer_config.as_deref(), siglip2_tokenizer)?;
                Pooling::LastPosition { pad_id, pad_left }
            }
        };
        inner
            .with_truncation(Some(TruncationParams {
                max_length,
                strategy: TruncationStrategy::LongestFirst,
                direction: TruncationDirection::Right,
                stride: 0,
            }))
            .map_err(|e| e.to_string())?;
        inner.with_padding(None);
        Ok(Self {
            inner,
            end_of_text,
            pooling,
            max_length,
            open_clip: None,
            open_clip_hf_cleaning: None,
            vocab_size: None,
            language_code: None,
            stripped_token: None,
        })
    }

    /// Holds the ids to the model's token table of `vocab_size` rows, checked at once on the
    /// ids every text gets (start, end, padding): a tokenizer of another model is refused at
    /// load, not at the first search.
    pub fn for_vocab_size(mut self, vocab_size: usize) -> Result<Self> {
        self.vocab_size = Some(u32::try_from(vocab_size).unwrap_or(u32::MAX));
        self.encode("")?;
        Ok(self)
    }

    /// This tokenizer as open_clip runs it: each text cleaned first (ftfy, HTML entities,
    /// whitespace, lowercase: [`text_cleaning`](super::text_cleaning)) and split into words as
    /// open_clip splits them ([`OpenClipWords`]), in place of `tokenizer.json`'s own normalizer
    /// (NFC, whitespace, lowercase) and split; the BPE and its vocabulary are the same.
    pub fn cleaning_texts_as_open_clip(mut self) -> Result<Self> {
        let words = OpenClipWords::new(&self.inner).map_err(Error::Tokenizer)?;
        let failed = |e: tokenizers::Error| Error::Tokenizer(e.to_string());
        self.inner.with_normalizer(None::<tokenizers::NormalizerWrapper>).map_err(failed)?;
        // Each word only mapped from bytes to the BPE's characters, as open_clip does.
        self.inner.with_pre_tokenizer(Some(ByteLevel::new(false, false, false)));
        self.open_clip = Some(words);
        Ok(self)
    }

    /// This tokenizer as open_clip's `HFTokenizer` runs it: each text cleaned first as
    /// `tokenizer_kwargs.clean` says, then `tokenizer.json` as it is.
    pub fn cleaning_texts_as_open_clip_hf(mut self, cleaning: TextCleaning) -> Self {
        self.open_clip_hf_cleaning = Some(cleaning);
        self
    }

    /// Lowercases texts before the tokenizer's own normalizer, as `transformers`'
    /// `Siglip2Tokenizer` does (SigLIP 2 was trained on lowercased texts).
    pub fn lowercasing_first(mut self) -> Result<Self> {
        use tokenizers::normalizers::{Lowercase, Sequence};
        let mut parts = vec![tokenizers::NormalizerWrapper::Lowercase(Lowercase)];
        parts.extend(self.inner.get_normalizer().cloned());
        self.inner.with_normalizer(Some(Sequence::new(parts))).map_err(|e| Error::Tokenizer(e.to_string()))?;
        Ok(self)
    }

    /// Splits texts at whitespace before the tokenizer's own pre-tokenizer, as `transformers`'
    /// `XLMRobertaTokenizer` does whatever `tokenizer.json` holds (and sentencepiece itself, which
    /// drops extra whitespace): a space at either end of a text, or a run of them, makes no `▁`
    /// token of its own.
    pub fn splitting_at_whitespace_first(mut self) -> Self {
        use tokenizers::pre_tokenizers::{sequence::Sequence, whitespace::WhitespaceSplit};
        let mut parts = vec![tokenizers::PreTokenizerWrapper::WhitespaceSplit(WhitespaceSplit)];
        parts.extend(self.inner.get_pre_tokenizer().cloned());
        self.inner.with_pre_tokenizer(Some(Sequence::new(parts)));
        self
    }

    /// open_clip's `strip_sep_token` (CLIPA): the separator token the tokenizer ends a text
    /// with (`sep_token` of `tokenizer_config.json`, else BERT's `[SEP]`) becomes token 0, as
    /// open_clip's `HFTokenizer` replaces it after tokenizing.
    pub fn stripping_sep_token(mut self, tokenizer_config: Option<&Path>) -> Result<Self> {
        let named = match tokenizer_config {
            Some(path) => {
                let config = read_tokenizer_config(path)
                    .map_err(|reason| Error::BadCheckpoint { path: path.to_owned(), reason })?;
                token_named(&config, "sep_token").map(str::to_string)
            }
            None => None,
        };
        let sep = named.unwrap_or_else(|| "[SEP]".into());
        let id = self.inner.token_to_id(&sep).ok_or_else(|| {
            Error::Tokenizer(format!("strip_sep_token: the tokenizer has no separator token {sep:?} to strip"))
        })?;
        self.stripped_token = Some(id);
        Ok(self)
    }

    /// The special tokens `transformers` puts around a text where its tokenizer class sets them
    /// itself, whatever `tokenizer.json` holds: NLLB's `NllbTokenizer` puts the source
    /// language's code first and `</s>` last (`src_lang` of `tokenizer_config.json`, `eng_Latn`
    /// when it names none; with `legacy_behaviour`, `</s>` then the code).
    pub fn with_special_tokens_of_its_class(mut self, tokenizer_config: Option<&Path>) -> Result<Self> {
        let Some(path) = tokenizer_config else { return Ok(self) };
        let bad = |reason: String| Error::BadCheckpoint { path: path.to_owned(), reason };
        let config = read_tokenizer_config(path).map_err(bad)?;
        let text_of = |key: &str, default: &str| token_named(&config, key).unwrap_or(default).to_string();
        if !config.get("tokenizer_class").and_then(|c| c.as_str()).is_some_and(|c| c.starts_with("Nllb")) {
            return Ok(self);
        }
        let (language, end) = (text_of("src_lang", "eng_Latn"), text_of("eos_token", "</s>"));
        let id = |token: &str| {
            self.inner.token_to_id(token).ok_or_else(|| bad(format!("the vocabulary has no {token:?} token")))
        };
        let special = vec![(language.clone(), id(&language)?), (end.clone(), id(&end)?)];
        let legacy = config.get("legacy_behaviour").and_then(|v| v.as_bool()).unwrap_or(false);
        let template = match legacy {
            true => vec!["$A".to_string(), end, language],
            false => vec![language, "$A".to_string(), end],
        };
        self.language_code = Some(if legacy { LanguageCode::Last } else { LanguageCode::First });
        let processor = tokenizers::processors::template::TemplateProcessing::builder()
            .try_single(template)
            .map_err(bad)?
            .special_tokens(special)
            .build()
            .map_err(|e| bad(e.to_string()))?;
        self.inner.with_post_processor(Some(processor));
        Ok(self)
    }

    /// open_clip's token ids of `text`: the start token, each word's BPE (a typed special token
    /// as its id), cut to the context with the end token last, up to the first end token.
    fn open_clip_ids(&self, words: &OpenClipWords, text: &str) -> Result<Vec<u32>> {
        let cleaned = open_clip_clean(text, TextCleaning::Lower);
        let mut ids = vec![words.start_of_text];
        let mut run: Vec<&str> = Vec::new();
        let encode_run = |run: &mut Vec<&str>, ids: &mut Vec<u32>| -> Result<()> {
            if !run.is_empty() {
                let input = EncodeInput::Single(InputSequence::from(run.as_slice()));
                let encoding = self.inner.encode(input, false).map_err(|e| Error::Tokenizer(e.to_string()))?;
                ids.extend_from_slice(encoding.get_ids());
                run.clear();
            }
            Ok(())
        };
        for word in words.pattern.find_iter(&cleaned).map(|m| m.as_str()) {
            let special = match word {
                OpenClipWords::START => Some(words.start_of_text),
                OpenClipWords::END => Some(self.end_of_text),
                _ => None,
            };
            match special {
                Some(id) => {
                    encode_run(&mut run, &mut ids)?;
                    ids.push(id);
                }
                None => run.push(word),
            }
        }
        encode_run(&mut run, &mut ids)?;
        ids.truncate(self.max_length - 1);
        ids.push(self.end_of_text);
        if self.pooling == Pooling::EndOfText {
            // The tower pools at the first end token and is causal: what a typed one leaves
            // after it changes nothing (open_clip computes it anyway).
            let first_end = ids.iter().position(|&id| id == self.end_of_text).expect("the end token was pushed");
            ids.truncate(first_end + 1);
        }
        Ok(ids)
    }

    pub fn encode(&self, text: &str) -> Result<TokenizedText> {
        self.encode_in(text, None)
    }

    /// Whether texts are read differently by their language (NLLB's tokenizer: see
    /// [`languages`]); other tokenizers read every text alike, whatever `encode_in` is told.
    pub fn reads_language(&self) -> bool {
        self.language_code.is_some()
    }

    /// `text` as written in `language` (a FLORES-200 code or a language tag), where this
    /// tokenizer reads languages; as [`encode`](Self::encode) elsewhere.
    pub fn encode_in(&self, text: &str, language: Option<&str>) -> Result<TokenizedText> {
        let mut ids = match &self.open_clip {
            Some(words) => self.open_clip_ids(words, text)?,
            None => {
                let cleaned = self.open_clip_hf_cleaning.map(|cleaning| open_clip_clean(text, cleaning));
                let text = cleaned.as_deref().unwrap_or(text);
                self.inner.encode(text, true).map_err(|e| Error::Tokenizer(e.to_string()))?.get_ids().to_vec()
            }
        };
        if let Some(stripped) = self.stripped_token {
            ids.iter_mut().filter(|id| **id == stripped).for_each(|id| *id = 0);
        }
        if let (Some(place), Some(language)) = (self.language_code, language) {
            let code = self.language_id(language)?;
            let slot = match place {
                LanguageCode::First => ids.first_mut(),
                LanguageCode::Last => ids.last_mut(),
            };
            if let Some(slot) = slot {
                *slot = code;
            }
        }
        if let Some((id, vocab_size)) =
            self.vocab_size.and_then(|size| Some((*ids.iter().find(|&&id| id >= size)?, size)))
        {
            return Err(Error::Tokenizer(format!(
                "token id {id} is past the model's vocab_size {vocab_size}: the tokenizer is another model's"
            )));
        }
        match self.pooling {
            Pooling::EndOfText => {
                // CLIP pools at the *first* end-of-text token (transformers: first eos, or argmax
                // of the ids for legacy configs: the same token, since it has the largest id).
                let end_position = ids.iter().position(|&id| id == self.end_of_text).ok_or_else(|| {
                    let end = self.inner.id_to_token(self.end_of_text).unwrap_or_default();
                    Error::Tokenizer(format!("tokenizer.json does not append {end}, the end the text tower is read at"))
                })?;
                Ok(TokenizedText { ids, end_position })
            }
            Pooling::LastPosition { pad_id, pad_left } => {
                let padding = std::iter::repeat_n(pad_id, self.max_length.saturating_sub(ids.len()));
                match pad_left {
                    true => ids.splice(0..0, padding),
                    false => ids.splice(ids.len().., padding),
                };
                Ok(TokenizedText { ids, end_position: self.max_length - 1 })
            }
            Pooling::WholeText => {
                let end_position = ids.len().checked_sub(1).ok_or_else(|| Error::Tokenizer("no tokens".into()))?;
                Ok(TokenizedText { ids, end_position })
            }
        }
    }

    /// The id of `language`'s code in this tokenizer's vocabulary.
    fn language_id(&self, language: &str) -> Result<u32> {
        let unknown = |reason: String| Error::UnknownLanguage { language: language.to_string(), reason };
        let code = languages::flores_code(language)
            .ok_or_else(|| unknown(format!("it names no language imgsearch knows; give {}", languages::NAMED_AS)))?;
        self.inner.token_to_id(&code).ok_or_else(|| {
            let mut known: Vec<String> = self
                .inner
                .get_added_tokens_decoder()
                .into_values()
                .map(|token| token.content)
                .filter(|token| languages::is_flores_code(token))
                .collect();
            known.sort();
            let shown = known.iter().take(12).cloned().collect::<Vec<_>>().join(", ");
            let more = if known.len() > 12 { ", …" } else { "" };
            unknown(format!(
                "the model's tokenizer has no code {code}; it reads {} languages: {shown}{more}",
                known.len()
            ))
        })
    }

    /// This tokenizer for a tower pooled at a class token after the text (OpenCLIP's CoCa).
    pub fn pooled_after_the_text(mut self) -> Self {
        self.pooling = Pooling::WholeText;
        self
    }
}

/// How a tokenizer learns its padding.
#[derive(Debug, Clone)]
pub enum PaddingSource {
    /// CLIP: no padding, the tower pools at the end-of-text token: `<|endoftext|>` where the
    /// vocabulary has it, else the `eos_token` of `tokenizer_config.json` (MetaCLIP 2's XLM-V
    /// tokenizer: `</s>`).
    EndOfText { tokenizer_config: Option<std::path::PathBuf> },
    /// OpenCLIP's Hugging Face text towers: no padding, which they would mask out anyway.
    Unpadded,
    /// SigLIP: pad to the context. The pad id is the first found of: `tokenizer.json`'s padding
    /// section, the `pad_token` of `tokenizer_config.json`, the model config's `pad_token_id`.
    /// The side is the one `transformers` takes (`pads_left`); `siglip2_tokenizer`: the model is
    /// read by `transformers`' `Siglip2Tokenizer`, whose own side is the left.
    PadToLength { tokenizer_config: Option<std::path::PathBuf>, fallback_pad_id: Option<u32>, siglip2_tokenizer: bool },
}

/// A `tokenizer_config.json`, or what is wrong with it.
fn read_tokenizer_config(path: &Path) -> std::result::Result<serde_json::Value, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{} is not JSON: {e}", path.display()))
}

/// The token a `tokenizer_config.json` names under `key`: `"</s>"` or `{"content": "</s>", …}`
/// (an AddedToken).
fn token_named<'a>(config: &'a serde_json::Value, key: &str) -> Option<&'a str> {
    config.get(key).and_then(|t| t.as_str().or_else(|| t.get("content")?.as_str()))
}

/// The id a CLIP-style tower is read at (see [`PaddingSource::EndOfText`]).
fn end_of_text_id(inner: &Tokenizer, tokenizer_config: Option<&Path>) -> std::result::Result<u32, String> {
    if let Some(id) = inner.token_to_id(END_OF_TEXT) {
        return Ok(id);
    }
    let config = tokenizer_config.map(read_tokenizer_config).transpose()?;
    let eos = config.as_ref().and_then(|config| token_named(config, "eos_token")).ok_or_else(|| {
        format!("the vocabulary has no {END_OF_TEXT} token, and no tokenizer_config.json names an eos_token to read the text at")
    })?;
    inner
        .token_to_id(eos)
        .ok_or_else(|| format!("tokenizer_config.json names eos_token {eos:?}, which the vocabulary lacks"))
}

/// Whether texts are padded before the text, as `transformers` decides it: the `padding_side` of
/// `tokenizer_config.json`, else the direction of `tokenizer.json`'s padding section, else the
/// tokenizer class's own (`GemmaTokenizer` and `Siglip2Tokenizer` pad on the left, the rest on
/// the right).
fn pads_left(
    inner: &Tokenizer,
    tokenizer_config: Option<&Path>,
    siglip2_tokenizer: bool,
) -> std::result::Result<bool, String> {
    let config = tokenizer_config.map(read_tokenizer_config).transpose()?;
    let field = |key: &str| config.as_ref().and_then(|c| c.get(key)).and_then(|v| v.as_str());
    if let Some(side) = field("padding_side") {
        return match side {
            "left" => Ok(true),
            "right" => Ok(false),
            other => Err(format!("padding_side {other:?} is neither \"left\" nor \"right\"")),
        };
    }
    if let Some(padding) = inner.get_padding() {
        return Ok(matches!(padding.direction, tokenizers::PaddingDirection::Left));
    }
    let class = field("tokenizer_class").map(|name| name.trim_end_matches("Fast"));
    Ok(siglip2_tokenizer || class == Some("GemmaTokenizer"))
}

fn pad_id(
    inner: &Tokenizer,
    tokenizer_config: Option<&Path>,
    fallback: Option<u32>,
) -> std::result::Result<u32, String> {
    if let Some(padding) = inner.get_padding() {
        return Ok(padding.pad_id);
    }
    if let Some(path) = tokenizer_config {
        let config = read_tokenizer_config(path)?;
        if let Some(token) = token_named(&config, "pad_token") {
            return inner
                .token_to_id(token)
                .ok_or_else(|| format!("{} names pad_token {token:?}, which the vocabulary lacks", path.display()));
        }
    }
    fallback.ok_or_else(|| {
        "no pad token: tokenizer.json has no padding section, and neither tokenizer_config.json nor config.json \
         names one"
            .to_string()
    })
}
