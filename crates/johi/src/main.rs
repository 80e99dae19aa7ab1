//! `johi`: the AI gateway binary.
//!
//! * `johi serve --config FILE` — run the gateway (SIGHUP reloads, SIGTERM/SIGINT drain).
//! * `johi check --config FILE` — validate a config; print the resolved pipeline and models.
//! * `johi mock-upstream --port N` — a mock OpenAI-compatible provider for trying Johi
//!   without an API key, for tests and for the benchmark.

mod admin_client;
mod check;
mod keys;
mod tenants;
mod usage;

/// mimalloc instead of glibc's allocator: the request path makes many small, short-lived
/// allocations (headers, JSON values, buffers), and the load benchmark showed glibc's
/// malloc/free at about a tenth of Johi's CPU time.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tokio::signal::unix::{signal, SignalKind};

/// Johi: one OpenAI-compatible endpoint in front of every model provider.
#[derive(Parser)]
#[command(name = "johi", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    Serve {
        /// Config file (YAML).
        #[arg(short, long, env = "JOHI_CONFIG")]
        config: PathBuf,
        /// Runtime worker threads (default: the CPUs this process may run on).
        #[arg(long, env = "JOHI_WORKER_THREADS")]
        worker_threads: Option<usize>,
    },
    /// Validate a config file and print the resolved pipeline and model table.
    Check {
        /// Config file (YAML).
        #[arg(short, long)]
        config: PathBuf,
    },
    /// Make virtual API keys: offline for the config (generate, hash) or on a running
    /// gateway through its admin API (create, list, revoke).
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// Manage the organisations, teams and projects of a running gateway beyond its config
    /// (admin API): create, list, delete.
    #[command(subcommand)]
    Tenants(tenants::TenantsCommand),
    /// Spend and chargeback from the usage ledger.
    #[command(subcommand)]
    Usage(usage::UsageCommand),
    /// Run the bundled mock OpenAI-compatible provider.
    MockUpstream {
        /// Port to listen on.
        #[arg(short, long, default_value_t = 9001)]
        port: u16,
        /// Address to bind.
        #[arg(long, default_value = "127.0.0.1")]
        host: IpAddr,
        /// Do not keep a record of requests (for benchmarks).
        #[arg(long)]
        no_record: bool,
        /// Runtime worker threads.
        #[arg(long)]
        worker_threads: Option<usize>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("JOHI_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match cli.command {
        Command::Check { config } => check::run(&config),
        Command::Keys(command) => keys::run(command),
        Command::Tenants(command) => tenants::run(command),
        Command::Usage(command) => run_async(Some(1), usage::run(command)),
        Command::Serve {
            config,
            worker_threads,
        } => run_on(johi_server::tokio_runtime(worker_threads), serve(config)),
        Command::MockUpstream {
            port,
            host,
            no_record,
            worker_threads,
        } => run_async(worker_threads, async move {
            let addr = SocketAddr::new(host, port);
            eprintln!("johi mock upstream on http://{addr}/v1");
            match johi_mock::run(addr, johi_mock::MockOptions { record: !no_record }).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("mock upstream: {e}");
                    ExitCode::FAILURE
                }
            }
        }),
    }
}

fn run_async(
    worker_threads: Option<usize>,
    main: impl std::future::Future<Output = ExitCode>,
) -> ExitCode {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = worker_threads {
        builder.worker_threads(n.max(1));
    }
    run_on(builder, main)
}

fn run_on(
    mut builder: tokio::runtime::Builder,
    main: impl std::future::Future<Output = ExitCode>,
) -> ExitCode {
    builder.enable_all();
    match builder.build() {
        Ok(runtime) => runtime.block_on(main),
        Err(e) => {
            eprintln!("could not start the runtime: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: PathBuf) -> ExitCode {
    let registry = johi_processors_registry();
    let gateway = match johi_server::start(&config, registry).await {
        Ok(gateway) => gateway,
        Err(e) => {
            eprintln!("johi: {e}");
            return ExitCode::FAILURE;
        }
    };
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) else {
        eprintln!("johi: could not install signal handlers");
        return ExitCode::FAILURE;
    };
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = hup.recv() => {
                tracing::info!("SIGHUP: reloading configuration");
                let _ = gateway.reload().await;
            }
        }
    }
    tracing::info!("shutting down: draining in-flight requests");
    gateway.shutdown();
    gateway.wait().await;
    ExitCode::SUCCESS
}

fn johi_processors_registry() -> johi_server::Registry {
    johi_server::Registry::with_builtins()
}
