//! M-CLIP (`M-CLIP/XLM-Roberta-Large-Vit-B-32`, `M-CLIP/LABSE-Vit-L-14`, …): a multilingual text
//! tower distilled to the image embeddings of a CLIP it does not ship. Its checkpoint holds a
//! `transformers` encoder (`transformer.*`) of the model `modelBase` names, whose `config.json`
//! gives its shape, and `LinearTransformation`: a text is the mean of its tokens' last hidden
//! states, projected (multilingual-clip's `MultilingualCLIP`). The image tower is that CLIP's,
//! read from its own checkpoint: the one named after `#` (`--model M-CLIP/…#openai/clip-…`), else
//! the one each published M-CLIP was distilled against.

use std::collections::HashMap;
use std::path::Path;

use candle_core::Tensor;
use serde::Deserialize;

use super::config::read_json;
use super::openclip;
use crate::error::{Error, Result};

/// The CLIP whose image embeddings each published M-CLIP was distilled to, by its name, where
/// the hub has it. (XLM-Roberta-Large-Vit-B-16Plus's is OpenCLIP's ViT-B-16-plus-240 at epoch
/// 32, which only open_clip's GitHub release has: the hub's timm repository holds epoch 31.)
const IMAGE_MODELS: [(&str, &str); 3] = [
    ("XLM-Roberta-Large-Vit-B-32", "openai/clip-vit-base-patch32"),
    ("XLM-Roberta-Large-Vit-L-14", "openai/clip-vit-large-patch14"),
    ("LABSE-Vit-L-14", "openai/clip-vit-large-patch14"),
];

/// An M-CLIP's `config.json` (multilingual-clip's `MCLIPConfig`).
#[derive(Debug, Clone, Deserialize)]
pub struct MClipConfig {
    /// The Hugging Face model the text encoder is (a hub id, or a folder).
    #[serde(rename = "modelBase")]
    pub model_base: String,
    #[serde(rename = "transformerDimensions")]
    transformer_width: usize,
    /// The embedding's width: the image model's.
    #[serde(rename = "numDims")]
    pub dim: usize,
}

impl MClipConfig {
    /// The M-CLIP config in `path`, `None` where it is another model's `config.json`.
    pub fn from_file(path: &Path) -> Result<Option<Self>> {
        let raw: serde_json::Value = read_json(path)?;
        if raw.get("model_type").and_then(|v| v.as_str()) != Some("M-CLIP") {
            return Ok(None);
        }
        let config = serde_json::from_value(raw).map_err(|e| Error::BadCheckpoint {
            path: path.to_owned(),
            reason: format!("an M-CLIP config.json needs modelBase, transformerDimensions and numDims: {e}"),
        })?;
        Ok(Some(config))
    }

    /// The image model of the M-CLIP called `name` (a hub id or a folder, by its last part).
    pub fn image_model_of(name: &str) -> Option<&'static str> {
        let last = name.trim_end_matches('/').rsplit('/').next().unwrap_or(name);
        let last = last.split('@').next().unwrap_or(last);
        IMAGE_MODELS.iter().find(|(mclip, _)| *mclip == last).map(|(_, image)| *image)
    }

    /// The text tower's config: the encoder `text_model` (its `config.json`) read up to as many
    /// tokens as its positions hold, mean-pooled over every token (multilingual-clip averages
    /// under the tokenizer's attention mask, which a pad token typed in a text is not out of),
    /// and projected by a linear layer with a bias.
    pub fn text_config(&self, text_model: &Path, path: &Path) -> Result<serde_json::Value> {
        let options = serde_json::json!({"hf_pooler_type": "mean_pooler", "hf_proj_type": "linear"});
        let options = options.as_object().expect("an object");
        let mut text = openclip::hf_encoder_text_config(options, self.dim, text_model, path)?;
        let width = text["hidden_size"].as_u64().unwrap_or_default() as usize;
        if width != self.transformer_width {
            return Err(Error::BadCheckpoint {
                path: path.to_owned(),
                reason: format!(
                    "the M-CLIP config's transformerDimensions {} is not the width of its modelBase {} ({width})",
                    self.transformer_width, self.model_base
                ),
            });
        }
        // RoBERTa's positions start after the pad id: two fewer tokens fit.
        let encoder = &text["hf_encoder"];
        let first_position = match encoder["positions_after_pad"].as_bool() {
            Some(true) => encoder["pad_token_id"].as_u64().unwrap_or_default() + 1,
            _ => 0,
        };
        let positions = text["max_position_embeddings"].as_u64().unwrap_or_default();
        let context = positions.saturating_sub(first_position).max(2);
        text["hf_encoder"]["context_length"] = context.into();
        text["hf_encoder"]["masks_pad_id"] = false.into();
        text["hf_encoder"]["projection"] = "biased_linear".into();
        // Texts go to the tokenizer as they are, without open_clip's cleaning.
        text["open_clip_cleaning"] = serde_json::Value::Null;
        Ok(text)
    }
}

/// An M-CLIP state dict under the names the Hugging Face text tower loads (as OpenCLIP's
/// Hugging Face towers are renamed).
pub fn to_clip_names(tensors: Vec<(String, Tensor)>, path: &Path) -> Result<HashMap<String, Tensor>> {
    let mut out = HashMap::with_capacity(tensors.len());
    for (name, tensor) in tensors {
        if let Some(part) = name.strip_prefix("LinearTransformation.") {
            out.insert(format!("text_projection.{part}"), tensor);
            continue;
        }
        let renamed = name.strip_prefix("transformer.").map(openclip::hf_encoder_name).transpose();
        match renamed {
            Ok(Some(Some(renamed))) => {
                out.insert(format!("text_model.{renamed}"), tensor);
            }
            // Position ids and the like: not weights.
            Ok(Some(None)) => {}
            Ok(None) | Err(_) => {
                return Err(Error::BadCheckpoint {
                    path: path.to_owned(),
                    reason: format!("unsupported M-CLIP tensor {name} (is this multilingual-clip's MultilingualCLIP?)"),
                })
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::MClipConfig;

    /// The published M-CLIPs pair with the CLIP they were distilled to, named by hub id, by a
    /// folder of that name, or at a revision; other names pair with none.
    #[test]
    fn published_mclips_know_their_image_model() {
        for (name, image) in [
            ("M-CLIP/XLM-Roberta-Large-Vit-B-32", Some("openai/clip-vit-base-patch32")),
            ("/models/M-CLIP/LABSE-Vit-L-14/", Some("openai/clip-vit-large-patch14")),
            ("M-CLIP/XLM-Roberta-Large-Vit-L-14@main", Some("openai/clip-vit-large-patch14")),
            ("M-CLIP/XLM-Roberta-Large-Vit-B-16Plus", None),
            ("M-CLIP/Swedish-500k", None),
            ("my-mclip", None),
        ] {
            assert_eq!(MClipConfig::image_model_of(name), image, "{name}");
        }
    }
}
