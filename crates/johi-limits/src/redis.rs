//! Counters in Redis, shared by every replica of the gateway.
//!
//! Why it is shaped this way:
//!
//! * **Atomic, one round trip.** A reservation is one Lua script (`lua/reserve.lua`) that
//!   reads every counter, checks every enforced charge and, only if all fit, charges all of
//!   them. Redis runs a script to completion before any other command, so two replicas racing
//!   for the last tokens of a budget cannot both pass, exactly as two threads cannot with
//!   [`MemoryStore`](crate::MemoryStore); and a check costs one network round trip, whatever
//!   the number of limits. `commit` and `current` are one script each. The scripts are sent
//!   by hash (`EVALSHA`) and re-sent whole only when Redis does not know them (after a
//!   restart).
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
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::{Client, FromRedisValue, Script, ScriptInvocation};
use async_trait::async_trait;

use crate::memory::state;
use crate::{
    counter_key, keep_until, previous_counter_key, Charge, Decision, LimitSpec, LimitStore,
    Reservation, ReservedEntry, StoreError, Window,
};

/// How long a counter outlives its window in Redis: room for clock skew between replicas and
/// for commits of requests that straddled the window's end.
pub(crate) const EXPIRY_MARGIN: Duration = Duration::from_secs(60);

/// Lua numbers are doubles, exact up to 2^53: amounts and ceilings are clamped to this.
const LUA_MAX: u64 = (1 << 53) - 1;

/// How long one connection attempt may take (in the background, never on a request).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// The connection manager's reconnection backoff: a few attempts at most a second apart, then
/// the next call starts a fresh round.
const RECONNECT_RETRIES: usize = 3;
const RECONNECT_MAX_DELAY: Duration = Duration::from_secs(1);

const GAUGE_LUA: &str = include_str!("lua/gauge.lua");

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
}

impl Default for RedisOptions {
    fn default() -> Self {
        Self {
            prefix: "johi".into(),
            op_timeout: Duration::from_millis(50),
            lease_ttl: Duration::from_secs(15 * 60),
        }
    }
}

/// Counters in one Redis, shared by every replica that connects to it. See the module docs
/// for the guarantees.
pub struct RedisStore {
    conn: ConnectionManager,
    options: RedisOptions,
    reserve: Script,
    commit: Script,
    current: Script,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("options", &self.options)
            .finish_non_exhaustive()
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

    fn with_connection(conn: ConnectionManager, options: RedisOptions) -> Self {
        Self {
            conn,
            options,
            reserve: Script::new(&format!("{GAUGE_LUA}\n{}", include_str!("lua/reserve.lua"))),
            commit: Script::new(include_str!("lua/commit.lua")),
            current: Script::new(&format!("{GAUGE_LUA}\n{}", include_str!("lua/current.lua"))),
        }
    }

    /// The options this store runs with.
    pub fn options(&self) -> &RedisOptions {
        &self.options
    }

    /// The Redis key holding `counter` (a key from [`counter_key`]): `{prefix}:{counter}`. A
    /// gauge also has `{prefix}:{counter}:amounts`.
    pub fn key(&self, counter: &str) -> String {
        format!("{}:{counter}", self.options.prefix)
    }

    /// Adds the two keys of one counter to a script invocation.
    fn add_keys(&self, invocation: &mut ScriptInvocation<'_>, counter: &str) {
        let key = self.key(counter);
        invocation.key(&key).key(format!("{key}:amounts"));
    }

    /// Adds the two keys of one counter as read now, and returns the previous bucket's
    /// weight: a rolling window's second key is its previous bucket (a windowed counter has
    /// no amounts hash), every other counter's is as in [`RedisStore::add_keys`].
    fn add_read_keys(
        &self,
        invocation: &mut ScriptInvocation<'_>,
        counter: &str,
        spec: &LimitSpec,
        scope_key: &str,
        now: SystemTime,
    ) -> u64 {
        match previous_counter_key(spec, scope_key, now) {
            Some((previous, weight)) => {
                invocation.key(self.key(counter)).key(self.key(&previous));
                weight
            }
            None => {
                self.add_keys(invocation, counter);
                0
            }
        }
    }

    /// Runs a script, bounded by the operation timeout.
    async fn run<T: FromRedisValue>(
        &self,
        invocation: &ScriptInvocation<'_>,
    ) -> Result<T, StoreError> {
        let mut conn = self.conn.clone();
        let timeout = self.options.op_timeout;
        match tokio::time::timeout(timeout, invocation.invoke_async(&mut conn)).await {
            Ok(result) => result.map_err(redis_error),
            Err(_) => Err(StoreError(format!("redis: no answer within {timeout:?}"))),
        }
    }
}

#[async_trait]
impl LimitStore for RedisStore {
    async fn reserve(&self, charges: &[Charge], now: SystemTime) -> Result<Decision, StoreError> {
        let now_ms = millis(now);
        let lease_until = now_ms.saturating_add(duration_ms(self.options.lease_ttl));
        // One random lease id per reservation; each gauge entry gets its own member in case
        // one gauge is charged twice.
        let lease_id = format!("{:032x}", fastrand::u128(..));
        let mut invocation = self.reserve.prepare_invoke();
        invocation.arg(now_ms).arg(lease_until);
        let mut entries = Vec::with_capacity(charges.len());
        for (i, charge) in charges.iter().enumerate() {
            let (counter, end) = counter_key(&charge.spec, &charge.scope_key, now);
            let gauge = charge.spec.window.is_none();
            let lease = gauge.then(|| format!("{lease_id}.{i}"));
            let expire_at = end.map_or(lease_until, |end| millis(keep_until(&charge.spec, end)))
                + duration_ms(EXPIRY_MARGIN);
            let weight = self.add_read_keys(
                &mut invocation,
                &counter,
                &charge.spec,
                &charge.scope_key,
                now,
            );
            invocation
                .arg(charge.amount.min(LUA_MAX))
                .arg(u8::from(charge.enforce))
                .arg(
                    charge
                        .spec
                        .limit
                        .saturating_add(charge.spec.burst)
                        .min(LUA_MAX),
                )
                .arg(expire_at)
                .arg(lease.as_deref().unwrap_or(""))
                .arg(weight);
            entries.push(ReservedEntry {
                counter,
                amount: charge.amount,
                gauge,
                expires_at: end,
                lease,
            });
        }
        let reply: Vec<i64> = self.run(&invocation).await?;
        decide(charges, entries, &reply, now)
    }

    async fn commit(&self, reservation: &Reservation, actual: &[u64]) -> Result<(), StoreError> {
        let mut invocation = self.commit.prepare_invoke();
        let mut any = false;
        for (i, entry) in reservation.entries.iter().enumerate() {
            if entry.gauge && entry.lease.is_none() {
                continue; // not a lease of this store: nothing held here
            }
            let replacement = if entry.gauge {
                0
            } else {
                actual.get(i).copied().unwrap_or(entry.amount)
            };
            self.add_keys(&mut invocation, &entry.counter);
            invocation
                .arg(entry.amount.min(LUA_MAX))
                .arg(replacement.min(LUA_MAX))
                .arg(entry.lease.as_deref().unwrap_or(""));
            any = true;
        }
        if any {
            let _: i64 = self.run(&invocation).await?;
        }
        Ok(())
    }

    async fn current(
        &self,
        spec: &LimitSpec,
        scope_key: &str,
        now: SystemTime,
    ) -> Result<u64, StoreError> {
        let (counter, _) = counter_key(spec, scope_key, now);
        let mut invocation = self.current.prepare_invoke();
        let weight = self.add_read_keys(&mut invocation, &counter, spec, scope_key, now);
        invocation
            .arg(millis(now))
            .arg(u8::from(spec.window.is_none()))
            .arg(weight);
        let used: i64 = self.run(&invocation).await?;
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
            glob_escape(&self.options.prefix),
            glob_escape(&spec.id)
        );
        let key_prefix = format!("{}:", self.options.prefix);
        let mut scopes = Vec::new();
        let mut cursor: u64 = 0;
        loop {
            let mut conn = self.conn.clone();
            let mut command = ::redis::cmd("SCAN");
            command
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000);
            let timeout = self.options.op_timeout;
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
        [1, used @ ..] if used.len() == charges.len() => {
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
