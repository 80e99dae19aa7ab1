//! Johi's HTTP edge: the axum router and thin handlers, the upstream client, the listener,
//! hot reload and graceful shutdown.
//!
//! [`start`] loads a config file, binds the listener and returns a [`RunningGateway`]:
//! the handle the binary (and the tests) use to reload, shut down and wait.

pub mod admin;
pub mod after;
pub mod edge;
pub mod handlers;
pub mod listener;
pub mod messages;
pub mod relay;
pub mod runtime;
pub mod upstream;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use axum::extract::{Request, State};
use axum::routing::{get, post};
use axum::Router;
use johi_config::{AdminSettings, Config, LedgerSettings, LedgerTarget, LimitStoreSettings};
use johi_ledger::{Ledger, LedgerBackend, LedgerConfig};
use johi_limits::{
    FailoverStore, LimitStore, MemoryStore, OutageMode, PrefetchStore, RedisOptions, RedisStore,
};
use johi_mock::{MockOptions, MockUpstream};
use johi_processors::AuditWriter;
use tokio::net::TcpListener;
use tokio::sync::{watch, Mutex};
use tokio::task::JoinHandle;
use tower_http::catch_panic::CatchPanicLayer;

pub use after::AfterResponse;
pub use johi_processors::Registry;
pub use runtime::Runtime;

/// State shared by every handler.
pub struct Shared {
    /// The current runtime snapshot; replaced whole on reload.
    pub runtime: ArcSwap<Runtime>,
    draining: AtomicBool,
}

impl Shared {
    /// Whether shutdown has begun.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }
}

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The config (or what is built from it) is invalid; every problem is listed.
    #[error("invalid configuration:\n{}", .0.join("\n"))]
    Config(Vec<String>),
    /// A socket or file could not be opened.
    #[error("{0}")]
    Io(String),
}

/// The tokio runtime a gateway process serves on, for `worker_threads` workers (default:
/// the CPUs this process may use, its affinity and cgroup quota honoured).
///
/// One worker gets tokio's current-thread runtime: every connection is served on that one
/// thread, without the multi-thread scheduler's shared queues and the hand-offs between the
/// main thread and its single worker (about 2 % fewer instructions per request, and paired
/// CPU per request ÷ nginx's 1.43× → 1.34× in the load benchmark; bench/README.md, "One
/// worker, one thread"). More workers get the multi-thread runtime. The caller enables the
/// drivers it needs.
pub fn tokio_runtime(worker_threads: Option<usize>) -> tokio::runtime::Builder {
    let workers = worker_threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from))
        .max(1);
    if workers == 1 {
        return tokio::runtime::Builder::new_current_thread();
    }
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.worker_threads(workers);
    builder
}

/// Builds the router over `shared`.
///
/// `POST` to the proxy routes (`handlers::PROXIED`) reaches their handler without the
/// router on the gateway's listener (`listener::Front`); they are routed here too, for the
/// other methods' 405 and for callers that serve the router alone.
pub fn router(shared: Arc<Shared>) -> Router {
    let mut router = Router::new();
    for (path, api) in handlers::PROXIED {
        router = router.route(
            path,
            post(move |State(shared): State<Arc<Shared>>, request: Request| {
                handlers::proxy(shared, api, request)
            }),
        );
    }
    router
        .route("/v1/messages", post(messages::messages))
        .route("/v1/messages/count_tokens", post(messages::count_tokens))
        .route("/v1/models", get(handlers::list_models))
        .route("/v1/models/{model}", get(handlers::get_model))
        .route("/healthz", get(handlers::healthz))
        .route("/readyz", get(handlers::readyz))
        .fallback(handlers::not_found)
        .method_not_allowed_fallback(handlers::method_not_allowed)
        .layer(CatchPanicLayer::custom(handlers::panic_response))
        .with_state(shared)
}

/// Audit writers: the current one, and those replaced by a reload (drained at shutdown,
/// because requests that started before the reload may still be writing to them).
#[derive(Default)]
struct AuditWriters {
    current: Option<AuditWriter>,
    retired: Vec<AuditWriter>,
}

/// What reloads need to rebuild a runtime.
struct Loader {
    path: PathBuf,
    registry: Registry,
    audit: Mutex<AuditWriters>,
    last_text: Mutex<String>,
    /// Limit counters: one store for the process's lifetime, so a reload keeps them.
    limits: Arc<dyn LimitStore>,
    /// The settings `limits` was opened with.
    limit_store: Option<LimitStoreSettings>,
    /// The usage ledger opened at start, with the settings it was opened with.
    ledger: Option<(LedgerSettings, Ledger)>,
    /// The admin settings at start (listener and key store are opened once).
    admin: Option<AdminSettings>,
    /// Keys issued through the admin API; `None` without an `admin:` section.
    keys: Option<Arc<admin::runtime_keys::RuntimeKeys>>,
    /// Completion hooks waiting for their responses to go out (every runtime's).
    after_response: AfterResponse,
}

/// The run-time key and tenant lock, held from a build until its runtime is in place, so a
/// tenant created meanwhile is not lost by storing a runtime built before it.
type ChangeGuard<'a> = Option<tokio::sync::MutexGuard<'a, ()>>;

impl Loader {
    async fn build(&self, mut config: Config) -> Result<(Runtime, ChangeGuard<'_>), Vec<String>> {
        // The ledger is opened once, at start: a reload that changes it is refused rather
        // than leave a configured ledger unwritten.
        let running = self.ledger.as_ref().map(|(settings, _)| settings);
        if config.ledger.as_ref() != running {
            return Err(vec![
                "ledger: settings changed; they apply at the next restart (the running ledger is kept)".into(),
            ]);
        }
        if config.limit_store != self.limit_store {
            return Err(vec![
                "limit_store: settings changed; they apply at the next restart (the running store is kept)".into(),
            ]);
        }
        let opened = self.admin.as_ref().map(|a| (a.listen, &a.key_store));
        if config.admin.as_ref().map(|a| (a.listen, &a.key_store)) != opened {
            return Err(vec![
                "admin: listen or key_store changed (or the section was added or removed); they apply at the next restart (admin.token alone may change on reload)".into(),
            ]);
        }
        // Run-time tenants are merged into this config's tree; run-time keys are resolved
        // against it (tenants and models) and the authenticator consults them next to the
        // config's own keys.
        let issued = match &self.keys {
            Some(keys) => {
                let changes = keys.lock().await;
                keys.merge_tenants(&mut config);
                keys.attach(&mut config);
                let entries = keys.resolve_all(&config);
                Some((keys, entries, changes))
            }
            None => None,
        };
        let mut audit = self.audit.lock().await;
        let sink = match &config.audit {
            None => None,
            Some(wanted) => match &audit.current {
                Some(writer) if writer.config() == wanted => Some(writer.sink()),
                _ => {
                    let writer = AuditWriter::spawn(wanted)
                        .await
                        .map_err(|e| vec![format!("audit.path {}: {e}", wanted.path.display())])?;
                    let sink = writer.sink();
                    if let Some(old) = audit.current.replace(writer) {
                        audit.retired.push(old);
                    }
                    Some(sink)
                }
            },
        };
        // A remote JWKS is fetched before this load serves (its refresh then runs on its own).
        config.auth.authenticator.start().await;
        let ledger = self.ledger.as_ref().map(|(_, ledger)| ledger.clone());
        let runtime = Runtime::build(
            config,
            &self.registry,
            sink,
            self.limits.clone(),
            ledger,
            self.after_response.clone(),
        )?;
        match issued {
            Some((keys, entries, changes)) => {
                keys.store.replace(entries);
                Ok((runtime, Some(changes)))
            }
            None => Ok((runtime, None)),
        }
    }
}

/// A running gateway.
pub struct RunningGateway {
    addr: SocketAddr,
    shared: Arc<Shared>,
    loader: Arc<Loader>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
    watcher: JoinHandle<()>,
    /// The admin listener's address and task, when `admin:` is configured.
    admin: Option<(SocketAddr, JoinHandle<()>)>,
    /// Re-reads a shared key store; stopped at shutdown.
    key_refresher: Option<JoinHandle<()>>,
    _mock: Option<MockUpstream>,
}

/// Loads `config_path` and starts serving. `registry` supplies the processors (use
/// [`Registry::with_builtins`]; tests add their own).
pub async fn start(config_path: &Path, registry: Registry) -> Result<RunningGateway, StartError> {
    // The stamp before the read: an edit landing after it moves the stamp, so the watcher
    // (which may first run much later) cannot mistake an edited file for the one loaded.
    let stamp = FileStamp::of(config_path).await;
    let text = std::fs::read_to_string(config_path)
        .map_err(|e| StartError::Config(vec![format!("{}: {e}", config_path.display())]))?;
    let config = johi_config::load_text(config_path, &text).map_err(|e| StartError::Config(e.0))?;

    let mock = match config.dev.mock_upstream {
        Some(addr) => Some(
            MockUpstream::start_with(addr, MockOptions { record: false })
                .await
                .map_err(|e| StartError::Io(format!("dev.mock_upstream {addr}: {e}")))?,
        ),
        None => None,
    };
    let ledger = match &config.ledger {
        Some(settings) => Some((settings.clone(), open_ledger(settings).await?)),
        None => None,
    };
    let keys = match &config.admin {
        Some(admin) => Some(Arc::new(
            admin::runtime_keys::RuntimeKeys::open(&admin.key_store)
                .await
                .map_err(StartError::Io)?,
        )),
        None => None,
    };
    let loader = Arc::new(Loader {
        after_response: AfterResponse::spawn(),
        admin: config.admin.clone(),
        keys,
        path: config_path.to_path_buf(),
        registry,
        audit: Mutex::new(AuditWriters::default()),
        last_text: Mutex::new(text),
        limits: limit_store(config.limit_store.as_ref()).await?,
        limit_store: config.limit_store.clone(),
        ledger,
    });
    let server = config.server.clone();
    let (runtime, changes) = loader.build(config).await.map_err(StartError::Config)?;
    drop(changes);
    let tls = match &server.tls {
        Some(files) => Some(listener::tls_acceptor(files).map_err(StartError::Io)?),
        None => None,
    };
    let tcp = TcpListener::bind(server.listen)
        .await
        .map_err(|e| StartError::Io(format!("listen {}: {e}", server.listen)))?;
    let addr = tcp
        .local_addr()
        .map_err(|e| StartError::Io(e.to_string()))?;
    let admin_tcp = match &loader.admin {
        Some(settings) => Some(
            TcpListener::bind(settings.listen)
                .await
                .map_err(|e| StartError::Io(format!("admin.listen {}: {e}", settings.listen)))?,
        ),
        None => None,
    };

    let shared = Arc::new(Shared {
        runtime: ArcSwap::from_pointee(runtime),
        draining: AtomicBool::new(false),
    });
    let (stop, stop_rx) = watch::channel(false);
    let admin = match admin_tcp {
        Some(tcp) => Some(spawn_admin(
            tcp,
            shared.clone(),
            loader.clone(),
            stop_rx.clone(),
        )?),
        None => None,
    };
    let key_refresher = loader
        .keys
        .as_ref()
        .filter(|keys| keys.db.is_shared())
        .map(|keys| tokio::spawn(refresh_keys(keys.clone(), shared.clone())));
    let app = router(shared.clone());
    let drain_shared = shared.clone();
    let drain_loader = loader.clone();
    let task = tokio::spawn(async move {
        let mut delay_rx = stop_rx.clone();
        let accept_stop = {
            // Keep accepting (while /readyz says 503) for `shutdown_delay`, so load
            // balancers notice before the listener closes.
            let (tx, rx) = watch::channel(false);
            let shared = drain_shared.clone();
            tokio::spawn(async move {
                let _ = delay_rx.wait_for(|s| *s).await;
                let delay = shared.runtime.load().config.server.shutdown_delay;
                tokio::time::sleep(delay).await;
                let _ = tx.send(true);
            });
            rx
        };
        let graceful =
            listener::accept_loop(tcp, tls, app, Some(drain_shared.clone()), accept_stop).await;
        let deadline = drain_shared.runtime.load().config.server.drain_timeout;
        if tokio::time::timeout(deadline, graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!(
                ?deadline,
                "drain deadline passed; closing the remaining connections"
            );
        }
        // The last responses are out; their bookkeeping runs before the writers flush.
        drain_loader.after_response.drained().await;
        let mut audit = drain_loader.audit.lock().await;
        let writers: Vec<_> = audit
            .current
            .take()
            .into_iter()
            .chain(audit.retired.drain(..))
            .collect();
        for writer in writers {
            writer.shutdown().await;
        }
        // Every request has completed: their limit commits still queued for Redis are sent.
        if let Err(error) = drain_loader.limits.flush().await {
            tracing::error!(%error, "limit commits could not be flushed; they stand as estimated");
        }
        if let Some((_, ledger)) = &drain_loader.ledger {
            // Every request has completed: what they recorded is written before exit.
            if let Err(error) = ledger.clone().shutdown().await {
                tracing::error!(%error, "the usage ledger could not be flushed");
            }
        }
        tracing::info!("shutdown complete");
    });
    let watcher = tokio::spawn(watch_config(loader.clone(), shared.clone(), stamp));
    tracing::info!(%addr, tls = server.tls.is_some(), "johi listening");
    Ok(RunningGateway {
        addr,
        shared,
        loader,
        stop,
        task,
        watcher,
        admin,
        key_refresher,
        _mock: mock,
    })
}

/// Re-reads a shared (PostgreSQL) key store every `admin.key_refresh_interval`, so keys
/// issued or revoked through another replica take effect here. A failed read keeps the keys
/// as they were (logged once per outage), and is tried again at the next interval.
async fn refresh_keys(keys: Arc<admin::runtime_keys::RuntimeKeys>, shared: Arc<Shared>) {
    let mut failing = false;
    loop {
        let interval = shared
            .runtime
            .load()
            .config
            .admin
            .as_ref()
            .map_or(std::time::Duration::from_secs(5), |a| {
                a.key_refresh_interval
            });
        tokio::time::sleep(interval).await;
        match keys.refresh(&shared).await {
            Ok(()) if failing => {
                failing = false;
                tracing::info!("admin key store readable again");
            }
            Ok(()) => {}
            Err(error) if !failing => {
                failing = true;
                tracing::warn!(%error, "admin key store could not be re-read; keeping the keys as they were");
            }
            Err(_) => {}
        }
    }
}

/// Serves the admin API on its own listener until shutdown. It stops accepting at once (no
/// load balancer routes to it) and lets admin requests in flight finish.
fn spawn_admin(
    tcp: TcpListener,
    shared: Arc<Shared>,
    loader: Arc<Loader>,
    stop: watch::Receiver<bool>,
) -> Result<(SocketAddr, JoinHandle<()>), StartError> {
    let addr = tcp
        .local_addr()
        .map_err(|e| StartError::Io(e.to_string()))?;
    let app = admin::router(shared.clone(), loader);
    let task = tokio::spawn(async move {
        let graceful = listener::accept_loop(tcp, None, app, None, stop).await;
        let deadline = shared.runtime.load().config.server.drain_timeout;
        let _ = tokio::time::timeout(deadline, graceful.shutdown()).await;
    });
    tracing::info!(%addr, "johi admin API listening");
    Ok((addr, task))
}

/// The limit store the config names: Redis (counted ahead with `prefetch`) behind a failover
/// to memory, or memory alone.
/// Redis is connected lazily, so the gateway starts (and follows its outage mode) even if
/// Redis is down at that moment.
async fn limit_store(
    settings: Option<&LimitStoreSettings>,
) -> Result<Arc<dyn LimitStore>, StartError> {
    let Some(s) = settings else {
        return Ok(Arc::new(MemoryStore::new()));
    };
    let options = RedisOptions {
        prefix: s.prefix.clone(),
        op_timeout: s.op_timeout,
        lease_ttl: s.lease_ttl,
        ..RedisOptions::default()
    };
    let redis = RedisStore::connect_lazy(&s.redis_url, options)
        .await
        .map_err(|e| StartError::Io(format!("limit_store: {e}")))?;
    let mode = if s.fail_open {
        OutageMode::FailOpen
    } else {
        OutageMode::FailClosed
    };
    // Counting ahead sits between the failover and Redis: during an outage the failure mode
    // decides, as without it.
    Ok(match s.prefetch_ppm {
        Some(ppm) => Arc::new(FailoverStore::new(PrefetchStore::new(redis, ppm), mode)),
        None => Arc::new(FailoverStore::new(redis, mode)),
    })
}

/// Opens the usage ledger the config names.
async fn open_ledger(settings: &LedgerSettings) -> Result<Ledger, StartError> {
    let backend = match &settings.target {
        LedgerTarget::Sqlite(path) => LedgerBackend::Sqlite { path: path.clone() },
        LedgerTarget::Postgres(url) => LedgerBackend::Postgres { url: url.clone() },
    };
    Ledger::open(LedgerConfig {
        backend,
        batch_size: settings.batch_size,
        flush_interval: settings.flush_interval,
        buffer: settings.buffer,
    })
    .await
    .map_err(|e| StartError::Io(format!("ledger: {e}")))
}

/// Polls the config file and reloads it when its content changes. (Polling, rather than
/// inotify, also sees Kubernetes ConfigMap updates, which swap a symlink.)
///
/// A poll reads only the file's metadata ([`FileStamp`]); the file itself (which can be
/// megabytes with many keys) is read and compared when the stamp changed, and at least every
/// [`FULL_READ_EVERY`] polls in case an edit left size, time and inode as they were.
///
/// `loaded` is the stamp taken before the running config was read.
async fn watch_config(loader: Arc<Loader>, shared: Arc<Shared>, loaded: Option<FileStamp>) {
    let mut last_stamp = loaded;
    let mut polls_since_read = 0u32;
    loop {
        let interval = shared.runtime.load().config.server.reload_poll_interval;
        tokio::time::sleep(interval).await;
        let stamp = FileStamp::of(&loader.path).await;
        polls_since_read += 1;
        if stamp == last_stamp && polls_since_read < FULL_READ_EVERY {
            continue;
        }
        last_stamp = stamp;
        polls_since_read = 0;
        let Ok(text) = tokio::fs::read_to_string(&loader.path).await else {
            continue;
        };
        if *loader.last_text.lock().await == text {
            continue;
        }
        let _ = apply(&loader, &shared, Ok(text)).await;
    }
}

/// Polls between two full reads of an unchanged-looking config file.
const FULL_READ_EVERY: u32 = 60;

/// What a config poll compares: the file's size, modification time and (on Unix) device
/// and inode, all following symlinks. A write changes the time (or the size); a file
/// replaced by a rename or a swapped symlink changes the inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    len: u64,
    modified: Option<std::time::SystemTime>,
    inode: (u64, u64),
}

impl FileStamp {
    /// The stamp of the file at `path`; `None` while it cannot be read.
    async fn of(path: &std::path::Path) -> Option<FileStamp> {
        let meta = tokio::fs::metadata(path).await.ok()?;
        #[cfg(unix)]
        let inode = {
            use std::os::unix::fs::MetadataExt;
            (meta.dev(), meta.ino())
        };
        #[cfg(not(unix))]
        let inode = (0, 0);
        Some(FileStamp {
            len: meta.len(),
            modified: meta.modified().ok(),
            inode,
        })
    }
}

/// Reloads the config file; an invalid one is refused and logged, the old one keeps serving.
async fn reload(loader: &Loader, shared: &Shared) -> Result<(), Vec<String>> {
    let text = tokio::fs::read_to_string(&loader.path).await;
    apply(loader, shared, text).await
}

/// Applies the config file's `text` as just read (or the read's error): the one read both
/// kept, to compare later polls against, and parsed.
async fn apply(
    loader: &Loader,
    shared: &Shared,
    text: std::io::Result<String>,
) -> Result<(), Vec<String>> {
    let parsed = match text {
        Ok(text) => {
            let parsed = johi_config::load_text(&loader.path, &text).map_err(|e| e.0);
            *loader.last_text.lock().await = text;
            parsed
        }
        Err(e) => {
            loader.last_text.lock().await.clear();
            Err(vec![format!("{}: {e}", loader.path.display())])
        }
    };
    let result = async {
        let config = parsed?;
        let current = shared.runtime.load();
        if config.server.listen != current.config.server.listen
            || config.server.tls != current.config.server.tls
        {
            tracing::warn!("server.listen and server.tls changes take effect at the next restart");
        }
        loader.build(config).await
    }
    .await;
    match result {
        Ok((runtime, _changes)) => {
            shared.runtime.store(Arc::new(runtime));
            tracing::info!(path = %loader.path.display(), "configuration reloaded");
            Ok(())
        }
        Err(errors) => {
            tracing::error!(path = %loader.path.display(), errors = %errors.join("; "), "configuration refused; the previous one keeps serving");
            Err(errors)
        }
    }
}

impl RunningGateway {
    /// The bound address (useful with port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The admin listener's bound address, when `admin:` is configured.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().map(|(addr, _)| *addr)
    }

    /// The current runtime snapshot.
    pub fn runtime(&self) -> Arc<Runtime> {
        self.shared.runtime.load_full()
    }

    /// Reloads the config file now (what SIGHUP does).
    pub async fn reload(&self) -> Result<(), Vec<String>> {
        reload(&self.loader, &self.shared).await
    }

    /// Begins graceful shutdown: `/readyz` turns 503, the listener closes after
    /// `server.shutdown_delay`, in-flight requests drain up to `server.drain_timeout`.
    pub fn shutdown(&self) {
        self.shared.draining.store(true, Ordering::Relaxed);
        let _ = self.stop.send(true);
    }

    /// Waits until shutdown has completed (audit flushed).
    pub async fn wait(self) {
        self.watcher.abort();
        if let Some(refresher) = &self.key_refresher {
            refresher.abort();
        }
        let _ = self.task.await;
        if let Some((_, admin)) = self.admin {
            let _ = admin.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::FileStamp;

    /// The watcher reads the file only when its stamp moves: a stamp must move for a write
    /// that changes the size and for a file replaced by a rename (a ConfigMap's symlink swap
    /// works the same way), and stay put while nothing happens.
    #[tokio::test]
    async fn a_file_stamp_moves_when_the_file_is_rewritten_or_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("johi.yaml");
        std::fs::write(&path, "server: {}\n").unwrap();
        let first = FileStamp::of(&path).await;
        assert!(first.is_some());
        assert_eq!(FileStamp::of(&path).await, first);

        std::fs::write(&path, "server: { }\n").unwrap();
        let grown = FileStamp::of(&path).await;
        assert_ne!(grown, first);

        // Same size, same content, same time if the clock is coarse: only the inode differs.
        let other = dir.path().join("johi.yaml.new");
        std::fs::write(&other, "server: { }\n").unwrap();
        std::fs::rename(&other, &path).unwrap();
        assert_ne!(FileStamp::of(&path).await, grown);

        std::fs::remove_file(&path).unwrap();
        assert_eq!(FileStamp::of(&path).await, None);
    }
}
