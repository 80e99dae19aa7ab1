//! Test support (feature `testing`, and this crate's own tests): a `redis-server` of the
//! test's own, on a free port, killed when dropped. Real Redis, not a mock, wherever the
//! gateway would use Redis.

// Test support: a set-up step that fails should stop the test at once, loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::{RedisOptions, RedisStore};

/// A running `redis-server` child process; killed on drop.
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
}

impl RedisServer {
    /// Starts a server on a free port and waits until it answers `PING`.
    pub async fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        Self::start_on(port).await
    }

    /// Starts a server on `port` (a restart after [`RedisServer::stop`]). No persistence: a
    /// restarted server is empty.
    pub async fn start_on(port: u16) -> Self {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start redis-server ({e}): the Redis tests need it; \
                     run scripts/test, which installs it"
                )
            });
        let mut server = Self {
            child: Some(child),
            port,
        };
        server.wait_for_ping().await;
        server
    }

    async fn wait_for_ping(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!("redis-server on port {} exited: {status}", self.port);
                }
            }
            if ping(self.port).await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("redis-server on port {} did not answer PING", self.port);
    }

    /// The server's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:PORT/`
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Kills the server (as a crash would).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// A store on this server.
    pub async fn store(&self, options: RedisOptions) -> RedisStore {
        RedisStore::connect(&self.url(), options).await.unwrap()
    }

    /// A plain connection, to look at the keys.
    pub async fn raw(&self) -> ::redis::aio::MultiplexedConnection {
        ::redis::Client::open(self.url())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap()
    }
}

/// The default options with a generous timeout: a loaded CI machine is not an outage.
pub fn patient() -> RedisOptions {
    RedisOptions {
        op_timeout: Duration::from_secs(5),
        ..RedisOptions::default()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn ping(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)).await else {
        return false;
    };
    let mut reply = [0u8; 7];
    let exchange = async {
        stream.write_all(b"PING\r\n").await?;
        stream.read_exact(&mut reply).await
    };
    matches!(
        tokio::time::timeout(Duration::from_millis(200), exchange).await,
        Ok(Ok(_))
    ) && &reply == b"+PONG\r\n"
}
