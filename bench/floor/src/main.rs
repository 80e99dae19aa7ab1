//! `hyper-floor`: the load benchmark's Rust floor (see the `johi_bench_floor` crate docs).

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::Parser;
use http::Uri;
use tokio::net::TcpListener;

/// The same allocator as the `johi` binary, so that the floor differs from Johi only in
/// what runs, not in how it allocates.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Command line: where to listen, where to forward, how many runtime workers.
#[derive(Parser)]
#[command(
    version,
    about = "A bare hyper reverse proxy: the load benchmark's Rust floor"
)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:18086")]
    listen: SocketAddr,
    /// The upstream's base URL (scheme, host, port); the client's path is appended.
    #[arg(long, default_value = "http://127.0.0.1:18001")]
    upstream: Uri,
    /// Tokio worker threads (the benchmark pins the floor to one core and passes 1, as for
    /// Johi).
    #[arg(long)]
    worker_threads: Option<usize>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    // The runtime `johi serve --worker-threads` builds: current-thread for one worker.
    let mut builder = johi_server::tokio_runtime(args.worker_threads);
    builder.enable_all();
    let runtime = match builder.build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("hyper-floor: could not start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let served = runtime.block_on(async {
        let listener = TcpListener::bind(args.listen)
            .await
            .map_err(|e| format!("bind {}: {e}", args.listen))?;
        johi_bench_floor::serve(listener, args.upstream).await
    });
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hyper-floor: {e}");
            ExitCode::FAILURE
        }
    }
}
