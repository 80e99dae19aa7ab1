//! `johi tenants`: the organisations, teams and projects of a running gateway, through its
//! admin API (`--admin-url`, token from `--admin-token` or `JOHI_ADMIN_TOKEN`, as for
//! `johi keys`). Tenants created here are kept in the gateway's key store and take keys at
//! once; those in the config file are listed but changed only there.

use std::process::ExitCode;

use clap::Subcommand;
use http::Method;
use serde_json::{json, Value};

use crate::admin_client::{block_on, call, percent_encode, AdminTarget};

/// `johi tenants …`
#[derive(Subcommand)]
pub enum TenantsCommand {
    /// Create an organisation, a team (org/team) or a project (org/team/project); its parent
    /// must exist.
    Create {
        #[command(flatten)]
        target: AdminTarget,
        /// organization[/team[/project]]
        path: String,
        /// Models its credentials are limited to (repeat or comma-separate); whatever its
        /// parents allow when omitted.
        #[arg(long, value_delimiter = ',')]
        allowed_models: Vec<String>,
    },
    /// List every tenant, from the config and created at run time.
    List {
        #[command(flatten)]
        target: AdminTarget,
        /// Print the API's JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Delete a tenant created at run time (refused while it has children or live keys).
    Delete {
        #[command(flatten)]
        target: AdminTarget,
        /// organization[/team[/project]]
        path: String,
    },
}

/// Runs a `johi tenants` command.
pub fn run(command: TenantsCommand) -> ExitCode {
    block_on("johi tenants", remote(command))
}

async fn remote(command: TenantsCommand) -> Result<(), String> {
    match command {
        TenantsCommand::Create {
            target,
            path,
            allowed_models,
        } => {
            let mut body = json!({"path": path});
            if !allowed_models.is_empty() {
                body["allowed_models"] = json!(allowed_models);
            }
            let created = call(&target, Method::POST, "/admin/v1/tenants", Some(&body)).await?;
            println!("created {}", created["path"].as_str().unwrap_or("?"));
            Ok(())
        }
        TenantsCommand::List { target, json } => {
            let list = call(&target, Method::GET, "/admin/v1/tenants", None).await?;
            if json {
                println!("{list}");
                return Ok(());
            }
            println!("{:<40} {:<8} allowed_models", "path", "source");
            for org in list["data"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
            {
                print_row(org);
                for team in org["teams"]
                    .as_array()
                    .map(Vec::as_slice)
                    .unwrap_or_default()
                {
                    print_row(team);
                    for project in team["projects"]
                        .as_array()
                        .map(Vec::as_slice)
                        .unwrap_or_default()
                    {
                        print_row(project);
                    }
                }
            }
            Ok(())
        }
        TenantsCommand::Delete { target, path } => {
            let url = format!("/admin/v1/tenants/{}", percent_encode(&path));
            call(&target, Method::DELETE, &url, None).await?;
            println!("deleted {path}");
            Ok(())
        }
    }
}

/// One tenant as a table row: path, source and model allowance (`*`: any).
fn print_row(node: &Value) {
    let models = match node["allowed_models"].as_array() {
        Some(list) => list
            .iter()
            .map(|m| m.as_str().unwrap_or("?"))
            .collect::<Vec<_>>()
            .join(","),
        None => "*".to_owned(),
    };
    println!(
        "{:<40} {:<8} {models}",
        node["path"].as_str().unwrap_or("?"),
        node["source"].as_str().unwrap_or("?"),
    );
}
