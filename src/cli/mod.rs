//! The command line: one file per subcommand; `main.rs` only parses and reports.

mod embed;

use clap::{Parser, Subcommand};

use imgsearch::{DeviceChoice, DEFAULT_MODEL};

#[derive(Debug, Parser)]
#[command(name = "imgsearch", version, about = "Semantic image search over your photos, with CLIP")]
pub struct Cli {
    /// Where the encoders run.
    #[arg(long, global = true, value_enum, default_value_t = DeviceChoice::Auto)]
    pub device: DeviceChoice,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print CLIP embeddings of pictures and texts.
    Embed(embed::EmbedArgs),
}

/// Shared by every command that loads a model.
#[derive(Debug, clap::Args)]
pub struct ModelArgs {
    /// A local checkpoint folder (config.json, model.safetensors, tokenizer.json) or a Hugging Face
    /// repo id, optionally with @revision.
    #[arg(long, default_value = DEFAULT_MODEL)]
    pub model: String,
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Embed(args) => embed::run(args, cli.device),
    }
}
