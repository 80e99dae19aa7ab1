//! Test support (feature `testing`, and this crate's own tests): a PostgreSQL schema of its
//! own for each test, in the database `JOHI_TEST_POSTGRES_URL` names, so tests that share one
//! server run in parallel without seeing each other's keys.

// Test support: a set-up step that fails should stop the test at once, loudly.
#![allow(clippy::expect_used)]

/// Drops and recreates `schema` and returns `JOHI_TEST_POSTGRES_URL` pointed at it (through
/// `search_path`). Panics if the variable is unset: `scripts/test` starts a server and sets it.
pub async fn postgres_url(schema: &str) -> String {
    let url = std::env::var("JOHI_TEST_POSTGRES_URL").expect(
        "JOHI_TEST_POSTGRES_URL is not set: run scripts/test, which starts a local PostgreSQL \
         and sets it (or `export JOHI_TEST_POSTGRES_URL=\"$(scripts/test-postgres)\"`)",
    );
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .expect("the test PostgreSQL accepts a connection");
    tokio::spawn(connection);
    client
        .batch_execute(&format!(
            "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}"
        ))
        .await
        .expect("the test schema is created");
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}options=-csearch_path%3D{schema}")
}
