//! `johi check`: validate a config and show what it resolves to.

use std::path::Path;
use std::process::ExitCode;

use johi_core::Route;
use johi_server::{Registry, Runtime};

/// Validates `path`; prints the pipeline and model table, or every error (exit code 1).
pub fn run(path: &Path) -> ExitCode {
    let config = match johi_config::load(path) {
        Ok(config) => config,
        Err(errors) => return fail(path, &errors.0),
    };
    let runtime = match Runtime::build(
        config,
        &Registry::with_builtins(),
        None,
        std::sync::Arc::new(johi_limits::MemoryStore::new()),
        None,
        johi_server::AfterResponse::inline(),
    ) {
        Ok(runtime) => runtime,
        Err(errors) => return fail(path, &errors),
    };
    println!("{}: OK\n", path.display());
    println!("pipeline (in order):");
    println!(
        "  {:<3} {:<12} {:<11} {:<28} {:<22} {:<14} on failure",
        "#", "processor", "category", "reads", "writes", "retry"
    );
    for (i, (contract, failure)) in runtime
        .pipeline
        .contracts()
        .zip(runtime.pipeline.failure_modes())
        .enumerate()
    {
        println!(
            "  {:<3} {:<12} {:<11} {:<28} {:<22} {:<14} {}",
            i + 1,
            contract.name,
            contract.category.as_str(),
            contract.reads.to_string(),
            contract.writes.to_string(),
            contract.retry.as_str(),
            failure
        );
    }
    println!("\nmodels:");
    let models = &runtime.config.models;
    for name in models.names() {
        let Some(route) = models.get(name) else {
            continue;
        };
        println!("  {name}  (max attempts: {})", route.max_attempts);
        for target in &route.targets {
            println!(
                "    -> {:<12} {:<28} weight {:<4} {} ({})",
                target.provider.name,
                target.model,
                target.weight,
                target.provider.base_url,
                target.provider.protocol.as_str()
            );
        }
    }
    print_limits(&runtime.config);
    print_auth(&runtime.config);
    ExitCode::SUCCESS
}

/// How many limits there are and where their counters live (never the Redis URL: it may
/// hold a password), so an operator sees whether replicas will share them.
fn print_limits(config: &johi_config::Config) {
    let count = config.limits.len();
    match &config.limit_store {
        None => println!("\nlimits: {count}, counted in this process's memory"),
        Some(store) => {
            let mode = if store.fail_open {
                "fail-open"
            } else {
                "fail-closed"
            };
            let ahead = store.prefetch_ppm.map_or_else(
                || "every request checked in Redis".to_owned(),
                |ppm| {
                    format!(
                        "counted ahead {}% of each limit per trip",
                        ppm as f64 / 10_000.0
                    )
                },
            );
            println!(
                "\nlimits: {count}, counted in Redis (prefix {}, {mode} on an outage, {ahead})",
                store.prefix
            );
        }
    }
}

/// The credentials and public routes, so an operator sees what is open before serving it.
fn print_auth(config: &johi_config::Config) {
    let public: Vec<_> = Route::ALL
        .into_iter()
        .filter(|r| config.auth.public_routes.contains(*r))
        .map(Route::path)
        .collect();
    println!(
        "\nauth: public routes: {}",
        if public.is_empty() {
            "none".to_owned()
        } else {
            public.join(", ")
        }
    );
    if let Some(jwt) = config.auth.authenticator.jwt() {
        let s = jwt.settings();
        let keys = match &s.keys {
            johi_auth::jwt::JwtKeys::Secret(_) => "a shared secret".to_owned(),
            johi_auth::jwt::JwtKeys::Static(set) => format!("a JWKS file ({} keys)", set.len()),
            johi_auth::jwt::JwtKeys::Remote(_) => "a JWKS URL".to_owned(),
        };
        let algorithms: Vec<_> = s.algorithms.iter().map(|a| format!("{a:?}")).collect();
        let cache = match s.cache_size {
            0 => "every token checked in full".to_owned(),
            n => format!("up to {n} verified tokens remembered"),
        };
        println!(
            "  jwt: issuer {}, audience {}, {} verified with {keys}; {cache}",
            s.issuer,
            s.audience,
            algorithms.join("/")
        );
    }
    let mtls = config.auth.authenticator.mtls();
    if !mtls.is_empty() {
        println!(
            "  mtls: {} certificate names mapped to identities",
            mtls.len()
        );
    }
    let mut keys: Vec<_> = config.auth.authenticator.keys().collect();
    keys.sort_by(|a, b| a.id.cmp(&b.id));
    let now = std::time::SystemTime::now();
    for key in keys {
        let who = &key.identity;
        let owner = [&who.organization, &who.team, &who.project]
            .into_iter()
            .flatten()
            .cloned()
            .collect::<Vec<_>>()
            .join("/");
        let state = if key.revoked {
            "revoked".to_owned()
        } else {
            match key.expires_at {
                Some(at) if at <= now => "expired".to_owned(),
                Some(at) => format!("expires {}", humantime::format_rfc3339_seconds(at)),
                None => "active".to_owned(),
            }
        };
        let models = who
            .allowed_models
            .as_ref()
            .map_or_else(|| "all models".to_owned(), |m| m.join(", "));
        println!("  key {:<20} {:<28} {:<30} {models}", key.id, owner, state);
    }
    // The admin API is an open door if misplaced: say where it listens and where its keys go
    // (never the PostgreSQL URL, which may hold a password).
    match &config.admin {
        None => println!("\nadmin API: off"),
        Some(admin) => {
            let store = match &admin.key_store {
                johi_config::KeyStoreTarget::Sqlite(path) => path.display().to_string(),
                johi_config::KeyStoreTarget::Postgres(_) => format!(
                    "PostgreSQL (re-read every {})",
                    humantime::format_duration(admin.key_refresh_interval)
                ),
            };
            println!(
                "\nadmin API: http://{}/admin/v1 (token required), key store {store}",
                admin.listen
            );
        }
    }
}

fn fail(path: &Path, errors: &[String]) -> ExitCode {
    eprintln!("{}: {} error(s)", path.display(), errors.len());
    for e in errors {
        eprintln!("  - {e}");
    }
    ExitCode::FAILURE
}
