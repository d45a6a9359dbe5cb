//! CLIP's byte-level BPE tokenizer, from the checkpoint's `tokenizer.json`.

use std::path::Path;

use tokenizers::{Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

use crate::error::{Error, Result};

const END_OF_TEXT: &str = "<|endoftext|>";

/// Token ids of one text, and where its end-of-text token (the pooled position) is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenizedText {
    pub ids: Vec<u32>,
    pub end_position: usize,
}

pub struct ClipTokenizer {
    inner: Tokenizer,
    end_of_text: u32,
}

impl ClipTokenizer {
    /// `max_length` is the text tower's context (77 for every OpenAI CLIP): longer texts are cut,
    /// keeping the start and end tokens, exactly as `transformers` does with `truncation=True`.
    pub fn from_file(path: &Path, max_length: usize) -> Result<Self> {
        let bad = |reason: String| Error::BadCheckpoint { path: path.to_owned(), reason };
        let mut inner = Tokenizer::from_file(path).map_err(|e| bad(e.to_string()))?;
        inner
            .with_truncation(Some(TruncationParams {
                max_length,
                strategy: TruncationStrategy::LongestFirst,
                direction: TruncationDirection::Right,
                stride: 0,
            }))
            .map_err(|e| bad(e.to_string()))?;
        inner.with_padding(None);
        let end_of_text =
            inner.token_to_id(END_OF_TEXT).ok_or_else(|| bad(format!("the vocabulary has no {END_OF_TEXT} token")))?;
        Ok(Self { inner, end_of_text })
    }

    pub fn encode(&self, text: &str) -> Result<TokenizedText> {
        let encoding = self.inner.encode(text, true).map_err(|e| Error::Tokenizer(e.to_string()))?;
        let ids = encoding.get_ids().to_vec();
        // CLIP pools at the *first* end-of-text token (transformers: first eos, or argmax of the
        // ids for legacy configs, which is the same token since it has the largest id).
        let end_position = ids.iter().position(|&id| id == self.end_of_text).ok_or_else(|| {
            Error::Tokenizer(format!("tokenizer.json does not append {END_OF_TEXT}; is this a CLIP tokenizer?"))
        })?;
        Ok(TokenizedText { ids, end_position })
    }
}
