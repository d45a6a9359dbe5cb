//! OpenCLIP's text towers built from a Hugging Face BERT-style model (`hf_model_name`:
//! XLM-RoBERTa for the multilingual LAION checkpoints, RoBERTa, BERT), as open_clip's
//! `HFTextEncoder` runs them: `transformers`' encoder (post-norm layers, token-type and
//! position embeddings), the padding masked out, a pooling, and a projection without biases.
//!
//! The layers are CLIP's encoder layers under the names `openclip.rs` gives the tensors, run in
//! BERT's order: each sub-layer's output is added to its input and then normalised, where CLIP
//! normalises first.

use candle_core::{DType, Tensor};

use super::clip::{tower_shape, EncoderLayer, LayerNorm, Linear, TowerShape, Weights};
use super::config::{Activation, HfEncoder, HfPooler, HfProjection, ModelConfig};
use super::kernels::{Epilogue, WeightLayout};
use crate::error::{Error, Result};

enum Projection {
    Identity,
    Linear(Linear),
    /// Linear, exact GELU, linear.
    Mlp(Linear, Linear),
}

pub struct HfTextTower {
    token_embedding: Tensor,
    position_embedding: Tensor,
    /// Every token is of type 0: (1, dim).
    token_type: Tensor,
    embedding_norm: LayerNorm,
    /// Run post-norm (`EncoderLayer::forward_post_norm`).
    layers: Vec<EncoderLayer>,
    /// BERT's own pooler (`cls_pooler`): dense + tanh on the first token.
    pooler_dense: Option<Linear>,
    projection: Projection,
    encoder: HfEncoder,
}

impl HfTextTower {
    pub(super) fn load(w: &Weights, config: &ModelConfig, layout: WeightLayout) -> Result<Self> {
        let c = &config.text_config;
        let encoder = c.hf_encoder.clone().expect("an HF text tower has its encoder's description");
        let (p, d, width) = ("text_model", c.hidden_size, config.projection_dim);
        let shape = tower_shape!(c, layout);
        let layers = (0..c.num_hidden_layers)
            .map(|i| EncoderLayer::load(w, &format!("{p}.encoder.layers.{i}"), &shape))
            .collect::<Result<_>>()?;
        let projection = match encoder.projection {
            HfProjection::Identity => Projection::Identity,
            HfProjection::Linear => Projection::Linear(Linear::load(w, "text_projection", (d, width), false, layout)?),
            HfProjection::Mlp => {
                let hidden = (d + width) / 2;
                Projection::Mlp(
                    Linear::load(w, "text_projection.fc1", (d, hidden), false, layout)?,
                    Linear::load(w, "text_projection.fc2", (hidden, width), false, layout)?,
                )
            }
        };
        let types = w.get(&format!("{p}.embeddings.token_type_embedding.weight"), &[encoder.type_vocab_size, d])?;
        Ok(Self {
            token_embedding: w.get(&format!("{p}.embeddings.token_embedding.weight"), &[c.vocab_size, d])?,
            position_embedding: w
                .get(&format!("{p}.embeddings.position_embedding.weight"), &[c.max_position_embeddings, d])?,
            token_type: types.narrow(0, 0, 1)?,
            embedding_norm: LayerNorm::load(w, &format!("{p}.embeddings.layer_norm"), d, c.layer_norm_eps)?,
            layers,
            pooler_dense: (encoder.pooler == HfPooler::FirstTokenDense)
                .then(|| Linear::load(w, &format!("{p}.pooler.dense"), (d, d), true, layout))
                .transpose()?,
            projection,
            encoder,
        })
    }

    /// `ids`: (batch, seq), each row's text up to `end_positions[row]` (what follows is
    /// ignored). Each text runs on its own, so no row is padded. → (batch, embedding dim).
    pub fn forward(&self, ids: &Tensor, end_positions: &[usize]) -> Result<Tensor> {
        let (batch, seq) = ids.dims2()?;
        if end_positions.len() != batch || end_positions.iter().any(|&e| e >= seq) {
            return Err(Error::Candle(candle_core::Error::Msg(format!(
                "bad text batch: {batch}x{seq}, ends {end_positions:?}"
            ))));
        }
        let rows = (0..batch)
            .map(|b| self.embed_one(&ids.get(b)?.narrow(0, 0, end_positions[b] + 1)?.to_vec1::<u32>()?))
            .collect::<Result<Vec<_>>>()?;
        Ok(Tensor::cat(&rows, 0)?)
    }

    /// One text's embedding, (1, embedding dim).
    ///
    /// open_clip masks every pad-id token (typed ones too) out of attention and out of the
    /// mean; so they are left out here, each remaining token keeping the position the model
    /// gives it: RoBERTa counts only the tokens that are not padding, BERT counts them all.
    fn embed_one(&self, tokens: &[u32]) -> Result<Tensor> {
        let pad = self.encoder.pad_token_id;
        let (kept, positions): (Vec<u32>, Vec<u32>) = tokens
            .iter()
            .enumerate()
            .filter(|&(_, &token)| token != pad)
            .enumerate()
            .map(|(rank, (index, &token))| match self.encoder.positions_after_pad {
                true => (token, pad + 1 + rank as u32),
                false => (token, index as u32),
            })
            .unzip();
        if kept.is_empty() || tokens[0] == pad && self.encoder.pooler != HfPooler::Mean {
            return Err(Error::Tokenizer(
                "the text's tokens are all padding, or it starts with one: the tokenizer is not the model's".into(),
            ));
        }
        let device = self.token_embedding.device();
        let at =
            |table: &Tensor, ids: &[u32]| -> Result<Tensor> { Ok(table.index_select(&Tensor::new(ids, device)?, 0)?) };
        let x = (at(&self.token_embedding, &kept)? + at(&self.position_embedding, &positions)?)?;
        let x = self.embedding_norm.forward(&x.broadcast_add(&self.token_type)?)?.unsqueeze(0)?;
        let x = self.layers.iter().try_fold(x, |x, layer| layer.forward_post_norm(&x))?.squeeze(0)?;
        let pooled = match self.encoder.pooler {
            HfPooler::Mean => x.to_dtype(DType::F32)?.mean_keepdim(0)?.to_dtype(x.dtype())?,
            HfPooler::FirstToken => x.narrow(0, 0, 1)?,
            HfPooler::FirstTokenDense => {
                let dense = self.pooler_dense.as_ref().expect("loaded for this pooler");
                dense.forward(&x.narrow(0, 0, 1)?)?.tanh()?
            }
        };
        match &self.projection {
            Projection::Identity => Ok(pooled),
            Projection::Linear(linear) => linear.forward(&pooled),
            Projection::Mlp(fc1, fc2) => {
                fc2.forward(&fc1.forward_then(&pooled, Epilogue::Activation(Activation::Gelu))?)
            }
        }
    }
}
