//! `johi keys`: make virtual API keys for the config's `auth.api_keys`.
//!
//! `generate` prints the key once (stdout, for the operator to hand over) and the config
//! entry holding only its hash; nothing is written anywhere, so the secret exists only
//! where the operator puts it. `hash` turns an existing key (read from stdin, never from
//! the command line, where it would land in shell history) into its `sha256:` form.

use std::io::Read;
use std::process::ExitCode;

use clap::Subcommand;
use johi_auth::key::{generate, KeyHash, KEY_PREFIX};

/// `johi keys …`
#[derive(Subcommand)]
pub enum KeysCommand {
    /// Generate a new key; print it once, with the config entry that holds its hash.
    Generate {
        /// The key's stable ID (recorded in audit and usage records instead of the key).
        #[arg(long)]
        id: String,
        /// Who the key belongs to: organization[/team[/project]] from `tenants:`.
        #[arg(long)]
        owner: String,
        /// End user the key belongs to.
        #[arg(long)]
        user: Option<String>,
        /// Models the key may call (repeat or comma-separate); all when omitted.
        #[arg(long, value_delimiter = ',')]
        allowed_models: Vec<String>,
        /// Refuse the key after this RFC 3339 UTC instant, e.g. 2027-01-31T00:00:00Z.
        #[arg(long)]
        expires_at: Option<String>,
    },
    /// Print the `sha256:` hash of a key read from stdin (for keys made elsewhere).
    Hash,
}

/// Runs a `johi keys` command.
pub fn run(command: KeysCommand) -> ExitCode {
    match command {
        KeysCommand::Generate {
            id,
            owner,
            user,
            allowed_models,
            expires_at,
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
