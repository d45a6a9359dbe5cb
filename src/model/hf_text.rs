//! OpenCLIP's text towers built from a Hugging Face model (`hf_model_name`), as open_clip's
//! `HFTextEncoder` runs them: `transformers`' encoder, the padding masked out, a pooling, and a
//! projection without biases. Two encoders: BERT's (BERT, RoBERTa, XLM-RoBERTa for LAION's
//! multilingual checkpoints: learned positions and token types, post-norm layers) and NLLB-200's
//! (nllb-clip: sinusoidal positions, pre-norm layers with ReLU, a layer norm at the end).
//! Chinese-CLIP's text tower (`ChineseCLIPModel`) is the same BERT, read at its first token;
//! M-CLIP's (`mclip.rs`) the same BERT or XLM-RoBERTa, mean-pooled, its projection biased.
//!
//! The layers are CLIP's encoder layers under the names `openclip.rs` gives the tensors; BERT's
//! run in its order: each sub-layer's output is added to its input and then normalised, where
//! CLIP (and NLLB) normalise first.

use candle_core::{DType, Device, Tensor};

use super::clip::{tower_shape, EncoderLayer, LayerNorm, Linear, TokenTable, TowerShape, Weights, TEXT_TOKEN_TABLE};
use super::config::{Activation, HfArchitecture, HfEncoder, HfPooler, HfProjection, ModelConfig};
use super::kernels::{Epilogue, WeightLayout};
use crate::error::{Error, Result};

/// What is added to the token embeddings.
enum Positions {
    /// BERT: learned positions and token type 0, then a layer norm.
    Learned { table: Tensor, token_type: Tensor, norm: LayerNorm },
    /// NLLB: `transformers`' `M2M100SinusoidalPositionalEmbedding`, computed, not stored.
    Sinusoidal,
}

enum Projection {
    Identity,
    Linear(Linear),
    /// Linear, exact GELU, linear.
    Mlp(Linear, Linear),
}

pub struct HfTextTower {
    token_embedding: TokenTable,
    positions: Positions,
    /// Post-norm (BERT) or pre-norm (NLLB), as `encoder.architecture` says.
    layers: Vec<EncoderLayer>,
    /// NLLB's layer norm after the layers.
    final_norm: Option<LayerNorm>,
    /// BERT's own pooler (`cls_pooler`): dense + tanh on the first token.
    pooler_dense: Option<Linear>,
    projection: Projection,
    encoder: HfEncoder,
    device: Device,
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
            HfProjection::Linear | HfProjection::BiasedLinear => {
                let bias = encoder.projection == HfProjection::BiasedLinear;
                Projection::Linear(Linear::load(w, "text_projection", (d, width), bias, layout)?)
            }
            HfProjection::Mlp => {
                let hidden = (d + width) / 2;
                Projection::Mlp(
                    Linear::load(w, "text_projection.fc1", (d, hidden), false, layout)?,
                    Linear::load(w, "text_projection.fc2", (hidden, width), false, layout)?,
                )
            }
        };
        let bert = encoder.architecture == HfArchitecture::Bert;
        let positions = match bert {
            true => Positions::Learned {
                table: w.get(&format!("{p}.embeddings.position_embedding.weight"), &[c.max_position_embeddings, d])?,
                token_type: w
                    .get(&format!("{p}.embeddings.token_type_embedding.weight"), &[encoder.type_vocab_size, d])?
                    .narrow(0, 0, 1)?,
                norm: LayerNorm::load(w, &format!("{p}.embeddings.layer_norm"), d, c.layer_norm_eps)?,
            },
            false => Positions::Sinusoidal,
        };
        Ok(Self {
            token_embedding: w.table(TEXT_TOKEN_TABLE, [c.vocab_size, d])?,
            positions,
            layers,
            final_norm: (!bert)
                .then(|| LayerNorm::load(w, &format!("{p}.final_layer_norm"), d, c.layer_norm_eps))
                .transpose()?,
            pooler_dense: (encoder.pooler == HfPooler::FirstTokenDense)
                .then(|| Linear::load(w, &format!("{p}.pooler.dense"), (d, d), true, layout))
                .transpose()?,
            projection,
            encoder,
            device: w.device().clone(),
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
    /// mean; so they are left out here (where `masks_pad_id`), each remaining token keeping the
    /// position the model gives it: RoBERTa and NLLB count only the tokens that are not
    /// padding, BERT counts them all.
    fn embed_one(&self, tokens: &[u32]) -> Result<Tensor> {
        let pad = self.encoder.pad_token_id;
        let masked = |token: u32| self.encoder.masks_pad_id && token == pad;
        let (kept, positions): (Vec<u32>, Vec<u32>) = tokens
            .iter()
            .enumerate()
            .filter(|&(_, &token)| !masked(token))
            .enumerate()
            .map(|(rank, (index, &token))| match self.encoder.positions_after_pad {
                true => (token, pad + 1 + rank as u32),
                false => (token, index as u32),
            })
            .unzip();
        if kept.is_empty() || masked(tokens[0]) && self.encoder.pooler != HfPooler::Mean {
            return Err(Error::Tokenizer(
                "the text's tokens are all padding, or it starts with one: the tokenizer is not the model's".into(),
            ));
        }
        let device = &self.device;
        let at =
            |table: &Tensor, ids: &[u32]| -> Result<Tensor> { Ok(table.index_select(&Tensor::new(ids, device)?, 0)?) };
        let tokens = (self.token_embedding.rows(&Tensor::new(kept.as_slice(), device)?)? * self.encoder.embed_scale)?;
        let x = match &self.positions {
            Positions::Learned { table, token_type, norm } => {
                norm.forward(&(tokens + at(table, &positions)?)?.broadcast_add(token_type)?)?
            }
            Positions::Sinusoidal => {
                let d = tokens.dim(1)?;
                (&tokens + sinusoids(&positions, d, device)?.to_dtype(tokens.dtype())?)?
            }
        };
        let x = x.unsqueeze(0)?;
        let x = match self.encoder.architecture {
            HfArchitecture::Bert => self.layers.iter().try_fold(x, |x, layer| layer.forward_post_norm(&x))?,
            HfArchitecture::M2m100 => self.layers.iter().try_fold(x, |x, layer| layer.forward_pre_norm(&x))?,
        };
        let x = x.squeeze(0)?;
        let x = match &self.final_norm {
            Some(norm) => norm.forward(&x)?,
            None => x,
        };
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

/// The sinusoidal embeddings of `positions`, (positions, d), as `transformers`'
/// `M2M100SinusoidalPositionalEmbedding.get_embedding` computes them in f32: the sines of
/// `p · 10000^(−i / (d/2 − 1))` for the first half, their cosines for the second, a zero column
/// for an odd width.
fn sinusoids(positions: &[u32], d: usize, device: &Device) -> Result<Tensor> {
    let half = d / 2;
    let step = (10000f64.ln() / (half as f64 - 1.0)) as f32;
    let frequencies: Vec<f32> = (0..half).map(|i| (i as f32 * -step).exp()).collect();
    let mut values = Vec::with_capacity(positions.len() * d);
    for &p in positions {
        let angles = frequencies.iter().map(|f| p as f32 * f);
        values.extend(angles.clone().map(f32::sin));
        values.extend(angles.map(f32::cos));
        values.extend(std::iter::repeat_n(0.0, d - 2 * half));
    }
    Ok(Tensor::from_vec(values, (positions.len(), d), device)?)
}
