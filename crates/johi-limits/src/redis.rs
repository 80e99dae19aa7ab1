//! Counters in Redis, shared by every replica of the gateway.
//!
//! Why it is shaped this way:
//!
//! * **Atomic, one round trip.** A reservation is one Lua script (`lua/reserve.lua`) that
//!   reads every counter, checks every enforced charge and, only if all fit, charges all of
//!   them. Redis runs a script to completion before any other command, so two replicas racing
//!   for the last tokens of a budget cannot both pass, exactly as two threads cannot with
//!   [`MemoryStore`](crate::MemoryStore); and a check costs one network round trip, whatever
//!   the number of limits. Windowed counters are charged with one `INCRBY` each (undone if
//!   a later charge does not fit) and get their expiry once, when created: the script's
//!   cost in Redis is on every request's path. `current` is one script too. The scripts are
//!   sent by hash (`EVALSHA`) and re-sent whole only when Redis does not know them (after a
//!   restart).
//! * **Commits off the request's path, coalesced.** A request's commit (the estimate
//!   replaced by the usage) is queued ([`LimitStore::commit_detached`]); a flusher task sends
//!   everything queued in one script call, and a reservation that runs first applies the
//!   queue itself, before its checks, in its own round trip. With
//!   [`RedisOptions::commit_delay`] the flusher waits that long for a reservation to carry
//!   the queue (default: not at all, see [`COMMIT_DELAY`]). Graceful shutdown sends what is
//!   queued ([`LimitStore::flush`]); reading a counter through this store sends it first. An
//!   unchanged counter (a request counted as one) is not sent at all.
//! * **Same time as everyone else.** Windows are computed from the `now` the caller passes
//!   (not Redis's clock), with [`counter_key`], so a Redis-backed replica and a
//!   `MemoryStore` name and bound counters alike.
//! * **Redis forgets by itself.** A windowed counter gets `PEXPIREAT` at its window's end plus
//!   [`EXPIRY_MARGIN`]; nobody sweeps. A commit that arrives after Redis forgot the counter is
//!   dropped rather than writing the key back without a TTL.
//! * **Gauges are leases.** A concurrent-requests gauge is a sorted set of leases (score = the
//!   lease's expiry) plus a hash of their amounts and total, so a replica that crashes between
//!   reserve and release holds its share only until [`RedisOptions::lease_ttl`] passes: the
//!   next reservation on that gauge drops expired leases before counting.
//! * **Bounded waits.** Every call is cut at [`RedisOptions::op_timeout`] and becomes a
//!   [`StoreError`]; the connection manager reconnects in the background. What the gateway
//!   does then (refuse, or count locally) is [`FailoverStore`](crate::FailoverStore)'s job.
//!
//! A timed-out reservation may still have been applied by Redis after the caller gave up: its
//! charge stays in the window (windowed) or until its lease expires (gauge). That is the
//! bounded cost of never hanging a request.
//!
//! One Redis primary (or a failover pair behind one address) holds every counter; Redis
//! Cluster is not supported, since one reservation touches keys of unrelated scopes.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::{Client, Cmd, ErrorKind, FromRedisValue, Script, ServerErrorKind};
use async_trait::async_trait;
use tokio::sync::Notify;

use crate::memory::state;
use crate::{
    counter_key, keep_until, previous_counter_key, Charge, Decision, LimitSpec, LimitStore,
    Reservation, ReservedEntry, StoreError, Window,
};

/// How long a counter outlives its window in Redis: room for clock skew between replicas and
/// for commits of requests that straddled the window's end.
pub(crate) const EXPIRY_MARGIN: Duration = Duration::from_secs(60);

/// How long a queued correction (see [`LimitStore::commit_detached`]) waits for a reservation
/// to carry it before it is sent on its own: by default not at all. It is sent as soon as the
/// request's task yields, together with every other correction queued meanwhile (under load,
/// one call for many requests), and a reservation that runs first takes it along. A delay
/// would let more corrections ride on reservations (one round trip per request), but on the
/// benchmark VM it made single-client latency worse, not better: a Redis and a vCPU left idle
/// longer wake up more slowly (see bench/README.md, 2026-12-07). Releases and corrections
/// upwards never wait.
pub const COMMIT_DELAY: Duration = Duration::ZERO;

/// Most corrections one script call applies (a flush after a burst sends several calls).
const MAX_BATCH: usize = 256;

/// Lua numbers are doubles, exact up to 2^53: amounts and ceilings are clamped to this.
const LUA_MAX: u64 = (1 << 53) - 1;

/// How long one connection attempt may take (in the background, never on a request).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// The connection manager's reconnection backoff: a few attempts at most a second apart, then
/// the next call starts a fresh round.
const RECONNECT_RETRIES: usize = 3;
const RECONNECT_MAX_DELAY: Duration = Duration::from_secs(1);

const GAUGE_LUA: &str = include_str!("lua/gauge.lua");
const COMMIT_LUA: &str = include_str!("lua/commit.lua");

/// How a [`RedisStore`] names its keys and bounds its waits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisOptions {
    /// Prepended to every key (`{prefix}:{counter}`), so several gateways (or other
    /// applications) can share one Redis.
    pub prefix: String,
    /// The longest any Redis call may take before it is reported as a [`StoreError`].
    pub op_timeout: Duration,
    /// How long a gauge lease (one request in flight) lives if it is never released, e.g.
    /// because its replica crashed. Longer than the longest request, stream included.
    pub lease_ttl: Duration,
    /// How long a queued commit waits for a reservation to carry it before it is sent on its
    /// own ([`COMMIT_DELAY`], none, by default).
    pub commit_delay: Duration,
}

impl Default for RedisOptions {
    fn default() -> Self {
        Self {
            prefix: "johi".into(),
            op_timeout: Duration::from_millis(50),
            lease_ttl: Duration::from_secs(15 * 60),
            commit_delay: COMMIT_DELAY,
        }
    }
}

/// Counters in one Redis, shared by every replica that connects to it. See the module docs
/// for the guarantees.
pub struct RedisStore {
    shared: Arc<Shared>,
    reserve: Script,
    current: Script,
}

/// What the store and its flusher task share.
struct Shared {
    conn: ConnectionManager,
    options: RedisOptions,
    commit: Script,
    queue: Mutex<Queue>,
    /// Wakes the flusher: a correction was queued into an empty queue, an urgent one was
    /// queued, or the store is closing.
    wake: Notify,
    closed: AtomicBool,
    /// Whether corrections were lost since the last success (logged once per such stretch).
    failing: AtomicBool,
}

/// Corrections waiting for a round trip.
#[derive(Default)]
struct Queue {
    corrections: Vec<Correction>,
    /// When the oldest waiting correction was queued.
    since: Option<Instant>,
    /// Whether one of them must not wait (a gauge release, or a counter corrected upwards).
    urgent: bool,
}

/// One counter's commit: its reserved amount replaced by the actual one, or a gauge lease
/// given back.
struct Correction {
    counter: Arc<str>,
    reserved: u64,
    actual: u64,
    lease: Option<String>,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("options", &self.shared.options)
            .finish_non_exhaustive()
    }
}

impl Drop for RedisStore {
    /// The flusher sends what is still queued, then ends.
    fn drop(&mut self) {
        self.shared.closed.store(true, Ordering::Release);
        self.shared.wake.notify_one();
    }
}

impl RedisStore {
    /// Connects to `url` (`redis://[:password@]host:port[/db]`, or `rediss://` with TLS
    /// support compiled in) and fails if Redis does not answer within a second or the
    /// operation timeout, whichever is longer: a wrong address shows at startup.
    pub async fn connect(url: &str, options: RedisOptions) -> Result<Self, StoreError> {
        let client = client(url)?;
        let wait = options.op_timeout.max(CONNECT_TIMEOUT);
        let conn = tokio::time::timeout(
            wait,
            ConnectionManager::new_with_config(client, manager_config(&options)),
        )
        .await
        .map_err(|_| StoreError(format!("redis: no connection within {wait:?}")))?
        .map_err(redis_error)?;
        Ok(Self::with_connection(conn, options))
    }

    /// Like [`RedisStore::connect`], but connects on first use: the gateway starts even while
    /// Redis is down (only a malformed URL fails), and calls fail until Redis is reachable.
    pub async fn connect_lazy(url: &str, options: RedisOptions) -> Result<Self, StoreError> {
        let conn = ConnectionManager::new_lazy_with_config(client(url)?, manager_config(&options))
            .map_err(redis_error)?;
        Ok(Self::with_connection(conn, options))
    }

    /// Needs a Tokio runtime (both constructors are async): it spawns the flusher.
    fn with_connection(conn: ConnectionManager, options: RedisOptions) -> Self {
        let shared = Arc::new(Shared {
            conn,
            options,
            commit: Script::new(&format!("{COMMIT_LUA}\nreturn correct(0, 1)")),
            queue: Mutex::new(Queue::default()),
            wake: Notify::new(),
            closed: AtomicBool::new(false),
            failing: AtomicBool::new(false),
        });
        tokio::spawn(flusher(shared.clone()));
        Self {
            shared,
            reserve: Script::new(&format!(
                "{GAUGE_LUA}\n{COMMIT_LUA}\n{}",
                include_str!("lua/reserve.lua")
            )),
            current: Script::new(&format!("{GAUGE_LUA}\n{}", include_str!("lua/current.lua"))),
        }
    }

    /// The options this store runs with.
    pub fn options(&self) -> &RedisOptions {
        &self.shared.options
    }

    /// The Redis key holding `counter` (a key from [`counter_key`]): `{prefix}:{counter}`. A
    /// gauge also has `{prefix}:{counter}:amounts`.
    pub fn key(&self, counter: &str) -> String {
        format!("{}:{counter}", self.shared.options.prefix)
    }

    /// Adds the keys of one charge as read now, and returns the previous bucket's weight: a
    /// gauge's lease set and amounts hash, a rolling window's counter and previous bucket,
    /// or a windowed counter and `''`.
    fn push_read_keys(
        &self,
        cmd: &mut Cmd,
        buf: &mut String,
        counter: &str,
        spec: &LimitSpec,
        scope_key: &str,
        now: SystemTime,
    ) -> u64 {
        let prefix = &self.shared.options.prefix;
        push_key(cmd, buf, prefix, counter, "");
        if spec.window.is_none() {
            push_key(cmd, buf, prefix, counter, AMOUNTS);
            return 0;
        }
        match previous_counter_key(spec, scope_key, now) {
            Some((previous, weight)) => {
                push_key(cmd, buf, prefix, &previous, "");
                weight
            }
            None => {
                cmd.arg("");
                0
            }
        }
    }
}

/// The suffix of a gauge's amounts hash.
const AMOUNTS: &str = ":amounts";

/// Adds `{prefix}:{counter}{suffix}` to `cmd`, built in `buf` (reused: no allocation per key).
fn push_key(cmd: &mut Cmd, buf: &mut String, prefix: &str, counter: &str, suffix: &str) {
    buf.clear();
    buf.push_str(prefix);
    buf.push(':');
    buf.push_str(counter);
    buf.push_str(suffix);
    cmd.arg(buf.as_str());
}

/// `EVALSHA <script> <number of keys>`: the start of a script call.
fn evalsha(script: &Script, keys: usize) -> Cmd {
    let mut cmd = Cmd::with_capacity(3 + keys * 4, 64 + keys * 64);
    cmd.arg("EVALSHA").arg(script.get_hash()).arg(keys);
    cmd
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        // Every update of the queue is a plain push or take: a poisoned lock is consistent.
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs a script call built by [`evalsha`], loading the script first if Redis does not
    /// know it (after a restart), bounded by the operation timeout.
    async fn eval<T: FromRedisValue>(&self, script: &Script, cmd: &Cmd) -> Result<T, StoreError> {
        let mut conn = self.conn.clone();
        let call = async {
            match cmd.query_async(&mut conn).await {
                Err(error) if error.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
                    script.load_async(&mut conn).await?;
                    cmd.query_async(&mut conn).await
                }
                other => other,
            }
        };
        let timeout = self.options.op_timeout;
        match tokio::time::timeout(timeout, call).await {
            Ok(result) => result.map_err(redis_error),
            Err(_) => Err(StoreError(format!("redis: no answer within {timeout:?}"))),
        }
    }

    /// Queues the corrections of one commit (unchanged windowed counters need none) and
    /// wakes the flusher if they are the first, or must not wait.
    fn enqueue(&self, corrections: impl Iterator<Item = Correction>) {
        let mut queue = self.lock();
        let was_empty = queue.corrections.is_empty();
        let mut urgent = false;
        for c in corrections {
            urgent |= c.lease.is_some() || c.actual > c.reserved;
            queue.corrections.push(c);
        }
        if queue.corrections.is_empty() {
            return;
        }
        if was_empty {
            queue.since = Some(Instant::now());
        }
        queue.urgent |= urgent;
        drop(queue);
        if was_empty || urgent {
            self.wake.notify_one();
        }
    }

    /// Takes every queued correction (for a reservation to carry, or the flusher to send).
    fn take(&self) -> Vec<Correction> {
        let mut queue = self.lock();
        if queue.corrections.is_empty() {
            return Vec::new();
        }
        queue.since = None;
        queue.urgent = false;
        std::mem::take(&mut queue.corrections)
    }

    /// Sends every queued correction (and `extra`) now, in calls of at most [`MAX_BATCH`].
    async fn flush(&self, extra: Vec<Correction>) -> Result<(), StoreError> {
        let mut corrections = self.take();
        corrections.extend(extra);
        let mut outcome = Ok(());
        for batch in corrections.chunks(MAX_BATCH) {
            let mut cmd = evalsha(&self.commit, 2 * batch.len());
            push_correction_keys(&mut cmd, &self.options.prefix, batch);
            push_correction_args(&mut cmd, batch);
            let result = self.eval::<i64>(&self.commit, &cmd).await.map(drop);
            self.note(&result, batch.len());
            if result.is_err() {
                outcome = result;
            }
        }
        outcome
    }

    /// Notes whether a call carrying `corrections` corrections went through. Lost ones leave
    /// their estimates in the counters (a gauge lease expires by itself); the first loss of
    /// a stretch is logged as a warning, the rest at debug.
    fn note(&self, result: &Result<(), StoreError>, corrections: usize) {
        match result {
            Ok(()) => {
                if corrections > 0 {
                    self.failing.store(false, Ordering::Relaxed);
                }
            }
            Err(error) if corrections > 0 => {
                if self.failing.swap(true, Ordering::Relaxed) {
                    tracing::debug!(%error, corrections, "could not commit limit reservations; they stand as estimated");
                } else {
                    tracing::warn!(%error, corrections, "could not commit limit reservations; they stand as estimated (further failures are logged at debug level until one succeeds)");
                }
            }
            Err(_) => {}
        }
    }
}

/// Sends queued corrections that no reservation took along within
/// [`RedisOptions::commit_delay`] (at once if urgent or the store is closing); ends when the store is dropped, after a last flush.
async fn flusher(shared: Arc<Shared>) {
    loop {
        let closed = shared.closed.load(Ordering::Acquire);
        let (since, urgent) = {
            let queue = shared.lock();
            (queue.since, queue.urgent)
        };
        match since {
            None if closed => return,
            None => {
                shared.wake.notified().await;
                continue;
            }
            Some(since) if !urgent && !closed => {
                let due = since + shared.options.commit_delay;
                let now = Instant::now();
                if now < due {
                    // Woken early by an urgent correction or the close; otherwise on time.
                    let _ = tokio::time::timeout(due - now, shared.wake.notified()).await;
                    continue;
                }
            }
            Some(_) => {}
        }
        // Errors are logged by `flush`; the corrections are gone either way.
        let _ = shared.flush(Vec::new()).await;
    }
}

/// The keys of `corrections`, two each: the counter and a gauge's amounts hash (or `''`).
fn push_correction_keys(cmd: &mut Cmd, prefix: &str, corrections: &[Correction]) {
    let mut buf = String::new();
    for c in corrections {
        push_key(cmd, &mut buf, prefix, &c.counter, "");
        if c.lease.is_some() {
            push_key(cmd, &mut buf, prefix, &c.counter, AMOUNTS);
        } else {
            cmd.arg("");
        }
    }
}

/// The arguments of `corrections`: their number, then three each (see `lua/commit.lua`).
fn push_correction_args(cmd: &mut Cmd, corrections: &[Correction]) {
    cmd.arg(corrections.len());
    for c in corrections {
        cmd.arg(c.reserved.min(LUA_MAX))
            .arg(c.actual.min(LUA_MAX))
            .arg(c.lease.as_deref().unwrap_or(""));
    }
}

/// The corrections that commit `reservation` with `actual` (aligned with its entries): each
/// gauge lease of this store is released, each windowed counter whose amount changed is
/// corrected; an unchanged counter needs no round trip.
fn corrections<'a>(
    reservation: &'a Reservation,
    actual: &'a [u64],
) -> impl Iterator<Item = Correction> + 'a {
    reservation
        .entries
        .iter()
        .enumerate()
        .filter_map(move |(i, entry)| {
            if entry.gauge {
                // Not a lease of this store (made elsewhere): nothing held here.
                let lease = entry.lease.clone()?;
                return Some(Correction {
                    counter: entry.counter.clone(),
                    reserved: entry.amount,
                    actual: 0,
                    lease: Some(lease),
                });
            }
            let replacement = actual.get(i).copied().unwrap_or(entry.amount);
            (replacement.min(LUA_MAX) != entry.amount.min(LUA_MAX)).then(|| Correction {
                counter: entry.counter.clone(),
                reserved: entry.amount,
                actual: replacement,
                lease: None,
            })
        })
}

impl RedisStore {
    /// One round trip: the script also applies the corrections queued by
    /// [`LimitStore::commit_detached`] (before checking, so a lease given back makes room),
    /// and takes the padding asked for (`pads`, aligned with the charges; empty for none).
    async fn reserve_with(
        &self,
        charges: &[Charge],
        pads: &[u64],
        now: SystemTime,
    ) -> Result<Decision, StoreError> {
        let options = &self.shared.options;
        let now_ms = millis(now);
        let lease_until = now_ms.saturating_add(duration_ms(options.lease_ttl));
        let carried = self.shared.take();
        let mut cmd = evalsha(&self.reserve, 2 * (carried.len() + charges.len()));
        push_correction_keys(&mut cmd, &options.prefix, &carried);
        // One random lease id per reservation that charges a gauge (none otherwise); each
        // gauge entry gets its own member in case one gauge is charged twice.
        let lease_id = if charges.iter().any(|c| c.spec.window.is_none()) {
            format!("{:032x}", fastrand::u128(..))
        } else {
            String::new()
        };
        let mut buf = String::new();
        let mut entries = Vec::with_capacity(charges.len());
        let mut weights = Vec::with_capacity(charges.len());
        for (i, charge) in charges.iter().enumerate() {
            let (counter, end) = counter_key(&charge.spec, &charge.scope_key, now);
            let gauge = charge.spec.window.is_none();
            weights.push(self.push_read_keys(
                &mut cmd,
                &mut buf,
                &counter,
                &charge.spec,
                &charge.scope_key,
                now,
            ));
            entries.push(ReservedEntry {
                counter: counter.into(),
                amount: charge.amount,
                gauge,
                expires_at: end,
                lease: gauge.then(|| format!("{lease_id}.{i}")),
            });
        }
        push_correction_args(&mut cmd, &carried);
        cmd.arg(now_ms).arg(lease_until);
        for (i, ((charge, entry), weight)) in charges.iter().zip(&entries).zip(weights).enumerate()
        {
            let expire_at = entry
                .expires_at
                .map_or(lease_until, |end| millis(keep_until(&charge.spec, end)))
                + duration_ms(EXPIRY_MARGIN);
            cmd.arg(charge.amount.min(LUA_MAX))
                .arg(u8::from(charge.enforce))
                .arg(
                    charge
                        .spec
                        .limit
                        .saturating_add(charge.spec.burst)
                        .min(LUA_MAX),
                )
                .arg(expire_at)
                .arg(entry.lease.as_deref().unwrap_or(""))
                .arg(weight)
                .arg(pads.get(i).copied().unwrap_or(0).min(LUA_MAX));
        }
        let reply = self.shared.eval::<Vec<i64>>(&self.reserve, &cmd).await;
        self.shared.note(
            &reply.as_ref().map(drop).map_err(Clone::clone),
            carried.len(),
        );
        decide(charges, entries, &reply?, now)
    }
}

#[async_trait]
impl LimitStore for RedisStore {
    async fn reserve(&self, charges: &[Charge], now: SystemTime) -> Result<Decision, StoreError> {
        self.reserve_with(charges, &[], now).await
    }

    /// One round trip, padding included (see `lua/reserve.lua`).
    async fn reserve_padded(
        &self,
        charges: &[Charge],
        pads: &[u64],
        now: SystemTime,
    ) -> Result<Decision, StoreError> {
        self.reserve_with(charges, pads, now).await
    }

    /// Sends this commit now, with whatever corrections are queued.
    async fn commit(&self, reservation: &Reservation, actual: &[u64]) -> Result<(), StoreError> {
        self.shared
            .flush(corrections(reservation, actual).collect())
            .await
    }

    /// Queues the commit for the next round trip: the next reservation carries it, or the
    /// flusher sends it within [`RedisOptions::commit_delay`] (at once for a gauge release or a correction
    /// upwards). [`LimitStore::flush`] sends what is queued (at shutdown).
    fn commit_detached(
        &self,
        reservation: &Reservation,
        actual: &[u64],
    ) -> Option<Result<(), StoreError>> {
        self.shared.enqueue(corrections(reservation, actual));
        Some(Ok(()))
    }

    async fn flush(&self) -> Result<(), StoreError> {
        self.shared.flush(Vec::new()).await
    }

    async fn current(
        &self,
        spec: &LimitSpec,
        scope_key: &str,
        now: SystemTime,
    ) -> Result<u64, StoreError> {
        // What this replica has committed shows in what it reads (errors are logged there).
        let _ = self.shared.flush(Vec::new()).await;
        let (counter, _) = counter_key(spec, scope_key, now);
        let mut cmd = evalsha(&self.current, 2);
        let weight =
            self.push_read_keys(&mut cmd, &mut String::new(), &counter, spec, scope_key, now);
        cmd.arg(millis(now))
            .arg(u8::from(spec.window.is_none()))
            .arg(weight);
        let used: i64 = self.shared.eval(&self.current, &cmd).await?;
        Ok(non_negative(used))
    }

    /// `SCAN`s for the limit's counters in the current window (an admin view: a few round
    /// trips per thousand counters, each bounded by the operation timeout), then reads each
    /// as [`LimitStore::current`] does, so a gauge's expired leases are dropped first.
    async fn usage(
        &self,
        spec: &LimitSpec,
        now: SystemTime,
    ) -> Result<Vec<(String, u64)>, StoreError> {
        // A rolling window's previous bucket counts too: match every bucket and let
        // `scope_of_counter` keep the live ones.
        let suffix = match spec.window {
            Some(Window::Rolling(_)) => "*".to_owned(),
            Some(window) => window.bounds(now).0.to_string(),
            None => "gauge".to_owned(),
        };
        let pattern = format!(
            "{}:{}|*|{suffix}",
            glob_escape(&self.shared.options.prefix),
            glob_escape(&spec.id)
        );
        let key_prefix = format!("{}:", self.shared.options.prefix);
        let mut scopes = Vec::new();
        let mut cursor: u64 = 0;
        loop {
            let mut conn = self.shared.conn.clone();
            let mut command = ::redis::cmd("SCAN");
            command
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000);
            let timeout = self.shared.options.op_timeout;
            let (next, keys): (u64, Vec<String>) =
                match tokio::time::timeout(timeout, command.query_async(&mut conn)).await {
                    Ok(result) => result.map_err(redis_error)?,
                    Err(_) => {
                        return Err(StoreError(format!("redis: no answer within {timeout:?}")))
                    }
                };
            for key in &keys {
                let scope = key
                    .strip_prefix(key_prefix.as_str())
                    .and_then(|counter| crate::scope_of_counter(spec, counter, now));
                if let Some(scope) = scope {
                    scopes.push(scope.to_owned());
                }
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
        scopes.sort();
        scopes.dedup();
        let mut rows = Vec::with_capacity(scopes.len());
        for scope in scopes {
            let used = self.current(spec, &scope, now).await?;
            rows.push((scope, used));
        }
        Ok(rows)
    }
}

/// `text` with Redis glob metacharacters escaped, for a literal match in `SCAN MATCH`.
fn glob_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Turns the reservation script's reply into a [`Decision`].
fn decide(
    charges: &[Charge],
    entries: Vec<ReservedEntry>,
    reply: &[i64],
    now: SystemTime,
) -> Result<Decision, StoreError> {
    match reply {
        [1, rest @ ..] if rest.len() == 2 * charges.len() => {
            let (used, padding) = rest.split_at(charges.len());
            let mut entries = entries;
            for (entry, &taken) in entries.iter_mut().zip(padding) {
                entry.amount = entry.amount.saturating_add(non_negative(taken));
            }
            let states = charges
                .iter()
                .zip(used)
                .zip(&entries)
                .map(|((charge, &used), entry)| {
                    state(&charge.spec, non_negative(used), entry.expires_at, now)
                })
                .collect();
            Ok(Decision::Granted {
                reservation: Reservation {
                    entries,
                    fallback: false,
                },
                states,
            })
        }
        [0, index, used] => {
            let index = usize::try_from(*index).unwrap_or(usize::MAX);
            match (charges.get(index), entries.get(index)) {
                (Some(charge), Some(entry)) => Ok(Decision::Denied {
                    index,
                    state: state(&charge.spec, non_negative(*used), entry.expires_at, now),
                }),
                _ => Err(unexpected(reply)),
            }
        }
        _ => Err(unexpected(reply)),
    }
}

fn unexpected(reply: &[i64]) -> StoreError {
    StoreError(format!(
        "redis: unexpected reply to the reservation script: {reply:?}"
    ))
}

fn client(url: &str) -> Result<Client, StoreError> {
    Client::open(url).map_err(redis_error)
}

fn manager_config(options: &RedisOptions) -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(options.op_timeout))
        .set_number_of_retries(RECONNECT_RETRIES)
        .set_max_delay(RECONNECT_MAX_DELAY)
}

fn redis_error(error: ::redis::RedisError) -> StoreError {
    StoreError(format!("redis: {error}"))
}

fn non_negative(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

fn duration_ms(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

fn millis(at: SystemTime) -> u64 {
    duration_ms(at.duration_since(UNIX_EPOCH).unwrap_or_default())
}
