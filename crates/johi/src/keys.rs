//! `johi keys`: make virtual API keys, offline for the config's `auth.api_keys`, or on a
//! running gateway through its admin API.
//!
//! `create`, `list` and `revoke` talk to the admin API (`--admin-url`, token from
//! `--admin-token` or `JOHI_ADMIN_TOKEN`): a created key works at once, with no config edit;
//! its secret is printed once to stdout, the rest to stderr. `generate` prints the key once (stdout, for the operator to hand over) and the config
//! entry holding only its hash; nothing is written anywhere, so the secret exists only
//! where the operator puts it. `hash` turns an existing key (read from stdin, never from
//! the command line, where it would land in shell history) into its `sha256:` form.

use std::io::Read;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use http::Method;
use johi_auth::key::{generate, KeyHash, KEY_PREFIX};
use serde_json::{json, Value};

use crate::admin_client::{block_on, call, percent_encode, AdminTarget};

/// `johi keys …`
#[derive(Subcommand)]
pub enum KeysCommand {
    /// Generate a new key; print it once, with the config entry that holds its hash.
    Generate {
        /// The key's stable ID (recorded in audit and usage records instead of the key).
        #[arg(long)]
        id: String,
        #[command(flatten)]
        key: KeySpec,
    },
    /// Print the `sha256:` hash of a key read from stdin (for keys made elsewhere).
    Hash,
    /// Issue a key on a running gateway (admin API); print it once.
    Create {
        #[command(flatten)]
        target: AdminTarget,
        /// The key's stable ID; generated when omitted.
        #[arg(long)]
        id: Option<String>,
        #[command(flatten)]
        key: KeySpec,
        /// A label KEY=VALUE for operators (repeatable).
        #[arg(long = "metadata")]
        metadata: Vec<String>,
    },
    /// List the keys of a running gateway (admin API); never shows a secret.
    List {
        #[command(flatten)]
        target: AdminTarget,
        /// Print the API's JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a key on a running gateway (admin API); refused from its next request.
    Revoke {
        #[command(flatten)]
        target: AdminTarget,
        /// The key's ID.
        id: String,
    },
}

/// What a key is for, the same whether it is generated offline or issued by a gateway.
#[derive(Args)]
pub struct KeySpec {
    /// Who the key belongs to: organization[/team[/project]] from `tenants:` (or, for
    /// `create`, one made with `johi tenants create`).
    #[arg(long)]
    owner: String,
    /// End user the key belongs to.
    #[arg(long)]
    user: Option<String>,
    /// Models the key may call (repeat or comma-separate); whatever its tenants allow when
    /// omitted.
    #[arg(long, value_delimiter = ',')]
    allowed_models: Vec<String>,
    /// Refuse the key after this RFC 3339 UTC instant, e.g. 2027-01-31T00:00:00Z.
    #[arg(long)]
    expires_at: Option<String>,
}

/// Runs a `johi keys` command.
pub fn run(command: KeysCommand) -> ExitCode {
    match command {
        KeysCommand::Create { .. } | KeysCommand::List { .. } | KeysCommand::Revoke { .. } => {
            block_on("johi keys", remote(command))
        }
        KeysCommand::Generate {
            id,
            key:
                KeySpec {
                    owner,
                    user,
                    allowed_models,
                    expires_at,
                },
        } => {
            if let Some(at) = &expires_at {
                if let Err(e) = humantime::parse_rfc3339(at) {
                    eprintln!("johi keys generate: --expires-at '{at}': {e}");
                    return ExitCode::FAILURE;
                }
            }
            let key = match generate() {
                Ok(key) => key,
                Err(e) => {
                    eprintln!("johi keys generate: {e}");
                    return ExitCode::FAILURE;
                }
            };
            println!("{}", key.secret);
            eprintln!(
                "\nThe key above is shown once: hand it over now. Johi keeps only its hash.\n\
                 Add this entry under auth.api_keys in the config:\n"
            );
            let mut entry = format!(
                "  - id: {}\n    hash: \"{}\"\n    owner: {}\n",
                yaml_scalar(&id),
                key.hash,
                yaml_scalar(&owner)
            );
            if let Some(user) = user {
                entry.push_str(&format!("    user: {}\n", yaml_scalar(&user)));
            }
            if !allowed_models.is_empty() {
                let list: Vec<_> = allowed_models.iter().map(|m| yaml_scalar(m)).collect();
                entry.push_str(&format!("    allowed_models: [{}]\n", list.join(", ")));
            }
            if let Some(at) = expires_at {
                entry.push_str(&format!("    expires_at: \"{at}\"\n"));
            }
            eprint!("{entry}");
            ExitCode::SUCCESS
        }
        KeysCommand::Hash => {
            let mut input = String::new();
            if let Err(e) = std::io::stdin().read_to_string(&mut input) {
                eprintln!("johi keys hash: could not read stdin: {e}");
                return ExitCode::FAILURE;
            }
            let key = input.trim();
            if key.is_empty() {
                eprintln!("johi keys hash: no key on stdin");
                return ExitCode::FAILURE;
            }
            if !key.starts_with(KEY_PREFIX) {
                eprintln!("johi keys hash: note: the key does not start with {KEY_PREFIX}; hashing it anyway");
            }
            println!("{}", KeyHash::of(key));
            ExitCode::SUCCESS
        }
    }
}

/// The admin API commands.
async fn remote(command: KeysCommand) -> Result<(), String> {
    match command {
        KeysCommand::Create {
            target,
            id,
            key:
                KeySpec {
                    owner,
                    user,
                    allowed_models,
                    expires_at,
                },
            metadata,
        } => {
            let mut labels = serde_json::Map::new();
            for m in metadata {
                let (k, v) = m
                    .split_once('=')
                    .ok_or_else(|| format!("--metadata '{m}': expected KEY=VALUE"))?;
                labels.insert(k.to_owned(), Value::String(v.to_owned()));
            }
            let mut body = json!({"owner": owner, "metadata": labels});
            let fields = [
                ("id", id.map(Value::String)),
                ("user", user.map(Value::String)),
                ("expires_at", expires_at.map(Value::String)),
                (
                    "allowed_models",
                    (!allowed_models.is_empty()).then(|| json!(allowed_models)),
                ),
            ];
            for (name, value) in fields {
                if let Some(value) = value {
                    body[name] = value;
                }
            }
            let created = call(&target, Method::POST, "/admin/v1/keys", Some(&body)).await?;
            let secret = created["key"].as_str().ok_or("the answer has no key")?;
            println!("{secret}");
            eprintln!(
                "\nThe key above is shown once: hand it over now. Johi keeps only its hash.\n\
                 It works now, as id {} for {}.",
                created["id"].as_str().unwrap_or("?"),
                created["owner"].as_str().unwrap_or("?")
            );
            Ok(())
        }
        KeysCommand::List { target, json } => {
            let list = call(&target, Method::GET, "/admin/v1/keys", None).await?;
            if json {
                println!("{list}");
                return Ok(());
            }
            let text = |v: &Value| v.as_str().unwrap_or("-").to_owned();
            println!(
                "{:<24} {:<7} {:<28} {:<22} {:<21} {:<21} state",
                "id", "source", "owner", "key", "created", "expires"
            );
            for key in list["data"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
            {
                let state = if key["revoked"].as_bool().unwrap_or(false) {
                    "revoked"
                } else {
                    "active"
                };
                println!(
                    "{:<24} {:<7} {:<28} {:<22} {:<21} {:<21} {state}",
                    text(&key["id"]),
                    text(&key["source"]),
                    text(&key["owner"]),
                    text(&key["redacted_key"]),
                    text(&key["created_at"]),
                    text(&key["expires_at"]),
                );
            }
            Ok(())
        }
        KeysCommand::Revoke { target, id } => {
            let path = format!("/admin/v1/keys/{}/revoke", percent_encode(&id));
            let revoked = call(&target, Method::POST, &path, None).await?;
            println!(
                "revoked {} (at {})",
                text_of(&revoked["id"]),
                text_of(&revoked["revoked_at"])
            );
            Ok(())
        }
        KeysCommand::Generate { .. } | KeysCommand::Hash => Err("not an admin API command".into()),
    }
}

fn text_of(value: &Value) -> &str {
    value.as_str().unwrap_or("?")
}

/// `value` as a YAML scalar: plain when that is unambiguous, else double-quoted.
fn yaml_scalar(value: &str) -> String {
    let plain = !value.is_empty()
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'/' | b'@'));
    if plain {
        value.to_owned()
    } else {
        format!("{value:?}")
    }
}
