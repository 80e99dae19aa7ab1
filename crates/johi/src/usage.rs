//! `johi usage`: spend and chargeback from the ledger the config names.
//!
//! The same queries the admin API will answer, run directly against the ledger's database,
//! so finance gets figures without a running gateway.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Subcommand;
use johi_config::LedgerTarget;
use johi_ledger::{format_micros, Ledger, LedgerBackend, LedgerConfig, SpendQuery, YearMonth};

/// `johi usage …`
#[derive(Subcommand)]
pub enum UsageCommand {
    /// Requests, tokens and cost, grouped and filtered, over a time range.
    Spend {
        /// Config file naming the ledger.
        #[arg(short, long, env = "JOHI_CONFIG")]
        config: PathBuf,
        /// Start (inclusive): `2026-11-01` or an RFC 3339 UTC instant.
        #[arg(long)]
        from: Option<String>,
        /// End (exclusive), same forms.
        #[arg(long)]
        to: Option<String>,
        /// Group by: organization, team, project, user, key, model, provider (comma-separated).
        #[arg(long, value_delimiter = ',')]
        group_by: Vec<String>,
        /// Only records where DIMENSION=VALUE (repeatable).
        #[arg(long = "where")]
        filter: Vec<String>,
    },
    /// The monthly per-project chargeback export, as CSV.
    Chargeback {
        /// Config file naming the ledger.
        #[arg(short, long, env = "JOHI_CONFIG")]
        config: PathBuf,
        /// Month, `YYYY-MM` (UTC).
        #[arg(long)]
        month: String,
        /// Only this project.
        #[arg(long)]
        project: Option<String>,
    },
}

/// Runs a `johi usage` command.
pub async fn run(command: UsageCommand) -> ExitCode {
    match execute(command).await {
        Ok(out) => {
            print!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("johi usage: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn execute(command: UsageCommand) -> Result<String, String> {
    match command {
        UsageCommand::Spend {
            config,
            from,
            to,
            group_by,
            filter,
        } => {
            let query = SpendQuery::from_params(from.as_deref(), to.as_deref(), &group_by, &filter)
                .map_err(|e| format!("--{}: {}", e.param.replace('_', "-"), e.message))?;
            let group_by = query.group_by.clone();
            let ledger = open(&config).await?;
            let rows = ledger.spend(&query).await.map_err(|e| e.to_string());
            let _ = ledger.shutdown().await;
            let rows = rows?;
            let mut out = String::new();
            for d in &group_by {
                out.push_str(&format!("{:<16} ", d.as_str()));
            }
            out.push_str(&format!(
                "{:>10} {:>14} {:>14} {:>14} {:>16}\n",
                "requests", "input_tokens", "output_tokens", "cached_tokens", "cost_usd"
            ));
            for row in rows {
                for g in &row.group {
                    out.push_str(&format!("{:<16} ", g.as_deref().unwrap_or("-")));
                }
                out.push_str(&format!(
                    "{:>10} {:>14} {:>14} {:>14} {:>16}\n",
                    row.requests,
                    row.input_tokens,
                    row.output_tokens,
                    row.cached_input_tokens,
                    format_micros(row.cost_micros)
                ));
            }
            Ok(out)
        }
        UsageCommand::Chargeback {
            config,
            month,
            project,
        } => {
            let month: YearMonth = month.parse().map_err(|e| format!("--month: {e}"))?;
            let ledger = open(&config).await?;
            let csv = ledger
                .chargeback_csv(month, project.as_deref())
                .await
                .map_err(|e| e.to_string());
            let _ = ledger.shutdown().await;
            csv
        }
    }
}

async fn open(config: &Path) -> Result<Ledger, String> {
    let config = johi_config::load(config).map_err(|e| e.to_string())?;
    let settings = config.ledger.ok_or("the config has no 'ledger:' section")?;
    let backend = match settings.target {
        LedgerTarget::Sqlite(path) => LedgerBackend::Sqlite { path },
        LedgerTarget::Postgres(url) => LedgerBackend::Postgres { url },
    };
    Ledger::open(LedgerConfig::new(backend))
        .await
        .map_err(|e| e.to_string())
}
