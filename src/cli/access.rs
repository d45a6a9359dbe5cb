//! `imgsearch user …` and `imgsearch token …`: who may sign in to `serve`, and the API tokens
//! scripts use. They change the library's users and tokens even while a server runs: it
//! notices within seconds.

use std::io::BufRead;

use anyhow::{bail, Context};

use imgsearch::auth::{check_user_name, hash_password, now, AuthStore, User};
use imgsearch::store::Location;

#[derive(Debug, clap::Subcommand)]
pub enum UserCommand {
    /// Add a user who can sign in to the web UI (asks for the password twice).
    Add(PasswordArgs),
    /// Set a user's new password (their open sessions end).
    Passwd(PasswordArgs),
    /// Remove a user (their open sessions end).
    Remove { name: String },
    /// List the users.
    List {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, clap::Args)]
pub struct PasswordArgs {
    name: String,
    /// Read the password from the first line of standard input instead of asking (for scripts).
    #[arg(long)]
    password_stdin: bool,
}

#[derive(Debug, clap::Subcommand)]
pub enum TokenCommand {
    /// Make an API token, sent as `Authorization: Bearer TOKEN`. It is printed once, alone on
    /// the last line; only its hash is kept.
    Create {
        /// What it is for, to recognise it in `token list`.
        #[arg(long, default_value = "api")]
        name: String,
        /// It may search and read, but change nothing.
        #[arg(long)]
        read_only: bool,
        /// Days until it stops working (default: never).
        #[arg(long, value_name = "DAYS")]
        expires: Option<u64>,
    },
    /// List the tokens (never their secrets).
    List {
        #[arg(long)]
        json: bool,
    },
    /// Revoke a token by its id (`tok_…`, from `token list`): refused at once by every server.
    Revoke { id: String },
}

/// The library's users and tokens; a data folder is created if it does not exist yet, a
/// PostgreSQL library gets its schema (users may be added before anything is indexed).
fn store(library: &Location) -> anyhow::Result<AuthStore> {
    match library {
        Location::Folder(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create the data folder {}", dir.display()))?
        }
        Location::Postgres { .. } => imgsearch::store::open(library)?.close()?,
    }
    Ok(AuthStore::for_library(library))
}

pub fn user(command: UserCommand, library: Location) -> anyhow::Result<()> {
    let store = store(&library)?;
    match command {
        UserCommand::Add(args) => {
            check_user_name(&args.name)?;
            if store.load()?.users.contains_key(&args.name) {
                bail!(
                    "the user {:?} exists already: `imgsearch user passwd {}` sets a new password",
                    args.name,
                    args.name
                );
            }
            let hash = hash_password(&read_password(&args)?)?;
            store.update(|data| {
                data.users.insert(args.name.clone(), User { password_hash: hash, created_at: now() });
                Ok(())
            })?;
            println!("added {:?}: they can sign in to `imgsearch serve` now", args.name);
        }
        UserCommand::Passwd(args) => {
            if !store.load()?.users.contains_key(&args.name) {
                bail!("no user {:?}: `imgsearch user add {}` adds them", args.name, args.name);
            }
            let hash = hash_password(&read_password(&args)?)?;
            store.update(|data| {
                if let Some(user) = data.users.get_mut(&args.name) {
                    user.password_hash = hash;
                }
                Ok(())
            })?;
            println!("new password set for {:?}; their open sessions have ended", args.name);
        }
        UserCommand::Remove { name } => {
            if !store.update(|data| Ok(data.users.remove(&name).is_some()))? {
                bail!("no user {name:?} (`imgsearch user list` shows them)");
            }
            println!("removed {name:?}");
        }
        UserCommand::List { json } => {
            let data = store.load()?;
            if json {
                let users: Vec<_> = data
                    .users
                    .iter()
                    .map(|(name, u)| serde_json::json!({"name": name, "created_at": u.created_at}))
                    .collect();
                println!("{}", serde_json::json!({ "users": users }));
            } else {
                for name in data.users.keys() {
                    println!("{name}");
                }
            }
        }
    }
    Ok(())
}

pub fn token(command: TokenCommand, library: Location) -> anyhow::Result<()> {
    let store = store(&library)?;
    match command {
        TokenCommand::Create { name, read_only, expires } => {
            let expires_at = expires.map(|days| now() + days * 24 * 3600);
            let (id, secret) = store.update(|data| {
                let (secret, token) = data.create_token(&name, read_only, expires_at);
                Ok((token.id.clone(), secret))
            })?;
            let kind = if read_only { "read-only" } else { "full-access" };
            let until = match expires {
                Some(days) => format!(", valid for {days} days"),
                None => String::new(),
            };
            println!(
                "{kind} token {id} ({name}{until}); send it as `Authorization: Bearer TOKEN`. It is shown only now:"
            );
            println!("{secret}");
        }
        TokenCommand::List { json } => {
            let data = store.load()?;
            if json {
                println!("{}", data.token_listing());
            } else {
                for t in &data.tokens {
                    let access = if t.read_only { "read-only" } else { "full" };
                    let expiry = match t.expires_at {
                        Some(at) if at <= now() => "expired".to_string(),
                        Some(at) => format!("expires in {} days", (at - now()).div_ceil(24 * 3600)),
                        None => "no expiry".to_string(),
                    };
                    println!("{}\t{}\t{access}\t{expiry}", t.id, t.name);
                }
            }
        }
        TokenCommand::Revoke { id } => {
            if !store.update(|data| Ok(data.revoke_token(&id)))? {
                bail!("no token {id:?} (`imgsearch token list` shows them)");
            }
            println!("revoked {id}");
        }
    }
    Ok(())
}

/// The password: the first line of standard input with --password-stdin, else asked twice on
/// the terminal without echo.
fn read_password(args: &PasswordArgs) -> anyhow::Result<String> {
    if args.password_stdin {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line).context("cannot read the password from standard input")?;
        return Ok(line.trim_end_matches(['\r', '\n']).to_string());
    }
    let ask = |prompt: &str| {
        rpassword::prompt_password(prompt)
            .context("no terminal to ask the password on: pipe it in with --password-stdin")
    };
    let first = ask(&format!("password for {}: ", args.name))?;
    if ask("again: ")? != first {
        bail!("the two passwords differ; nothing was changed");
    }
    Ok(first)
}
