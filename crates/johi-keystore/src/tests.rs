#![allow(clippy::unwrap_used, clippy::expect_used)]

use indexmap::IndexMap;

use crate::{KeyDb, KeyRecord, KeyStoreBackend, KeyStoreError, TenantRecord};

fn record(id: &str, hash: &str) -> KeyRecord {
    KeyRecord {
        id: id.into(),
        hash: hash.into(),
        redacted: "sk-johi-AbCd…wxyz".into(),
        owner: "acme/search".into(),
        user: Some("alice".into()),
        allowed_models: Some(vec!["m".into()]),
        allowed_routes: None,
        expires_at: Some("2030-01-01T00:00:00Z".into()),
        metadata: IndexMap::from([("ticket".to_owned(), "OPS-1".to_owned())]),
        created_at: "2026-11-29T20:00:00Z".into(),
        revoked_at: None,
    }
}

/// A PostgreSQL key store in a fresh schema named after the test.
async fn postgres(test: &str) -> KeyStoreBackend {
    KeyStoreBackend::Postgres {
        url: crate::testing::postgres_url(&format!("keystore_test_{test}")).await,
    }
}

#[tokio::test]
async fn sqlite_records_survive_reopening_and_revocation_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let backend = KeyStoreBackend::Sqlite {
        path: dir.path().join("nested/keys.db"),
    };
    records_survive_reopening_and_revocation_is_kept(&backend).await;
}

#[tokio::test]
async fn postgres_records_survive_reopening_and_revocation_is_kept() {
    records_survive_reopening_and_revocation_is_kept(&postgres("reopen").await).await;
}

/// Two replicas on one PostgreSQL: what one issues the other sees after a refresh, and can
/// revoke before it has.
#[tokio::test]
async fn postgres_replicas_share_keys() {
    let backend = postgres("replicas").await;
    let a = KeyDb::open(&backend).await.unwrap();
    let b = KeyDb::open(&backend).await.unwrap();
    assert!(a.is_shared());
    a.insert(record("one", "sha256:11")).await.unwrap();
    a.insert(record("two", "sha256:22")).await.unwrap();
    assert!(b.get("one").is_none());
    assert!(matches!(
        b.insert(record("one", "sha256:33")).await,
        Err(KeyStoreError::Duplicate(_))
    ));
    let revoked = b
        .revoke("two", "2026-11-29T22:00:00Z".into())
        .await
        .unwrap();
    assert!(revoked.unwrap().is_revoked());
    b.refresh().await.unwrap();
    assert_eq!(b.get("one").unwrap(), record("one", "sha256:11"));
    a.refresh().await.unwrap();
    assert!(a.get("two").unwrap().is_revoked());
}

async fn records_survive_reopening_and_revocation_is_kept(backend: &KeyStoreBackend) {
    let db = KeyDb::open(backend).await.unwrap();
    assert!(db.records().is_empty());
    db.insert(record("a", "sha256:aa")).await.unwrap();
    db.insert(record("b", "sha256:bb")).await.unwrap();
    assert!(matches!(
        db.insert(record("a", "sha256:cc")).await,
        Err(KeyStoreError::Duplicate(id)) if id == "a"
    ));
    assert!(matches!(
        db.insert(record("c", "sha256:aa")).await,
        Err(KeyStoreError::Duplicate(_))
    ));
    let revoked = db
        .revoke("a", "2026-11-29T21:00:00Z".into())
        .await
        .unwrap()
        .unwrap();
    assert!(revoked.is_revoked());
    // Revoking again keeps the first time; an unknown ID is None.
    let again = db.revoke("a", "2027-01-01T00:00:00Z".into()).await.unwrap();
    assert_eq!(
        again.unwrap().revoked_at.as_deref(),
        Some("2026-11-29T21:00:00Z")
    );
    assert!(db.revoke("zz", "x".into()).await.unwrap().is_none());
    drop(db);

    let reopened = KeyDb::open(backend).await.unwrap();
    let ids: Vec<_> = reopened.records().into_iter().map(|r| r.id).collect();
    assert_eq!(ids, ["a", "b"]);
    assert_eq!(reopened.get("b").unwrap(), record("b", "sha256:bb"));
    assert!(reopened.get("a").unwrap().is_revoked());
}

fn tenant(path: &str) -> TenantRecord {
    TenantRecord {
        path: path.into(),
        allowed_models: Some(vec!["m".into()]),
        created_at: "2026-11-29T20:00:00Z".into(),
    }
}

#[tokio::test]
async fn sqlite_tenants_survive_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let backend = KeyStoreBackend::Sqlite {
        path: dir.path().join("keys.db"),
    };
    tenants_survive_reopening(&backend).await;
}

#[tokio::test]
async fn postgres_tenants_survive_reopening_and_replicas_share_them() {
    let backend = postgres("tenants").await;
    tenants_survive_reopening(&backend).await;
    let a = KeyDb::open(&backend).await.unwrap();
    let b = KeyDb::open(&backend).await.unwrap();
    a.insert_tenant(tenant("globex")).await.unwrap();
    assert!(!b.tenants().iter().any(|t| t.path == "globex"));
    b.refresh().await.unwrap();
    assert!(b.tenants().iter().any(|t| t.path == "globex"));
}

async fn tenants_survive_reopening(backend: &KeyStoreBackend) {
    let db = KeyDb::open(backend).await.unwrap();
    assert!(db.tenants().is_empty());
    db.insert_tenant(tenant("acme")).await.unwrap();
    db.insert_tenant(tenant("acme/search")).await.unwrap();
    db.insert_tenant(TenantRecord {
        allowed_models: None,
        ..tenant("acme/search/web")
    })
    .await
    .unwrap();
    assert!(matches!(
        db.insert_tenant(tenant("acme")).await,
        Err(KeyStoreError::DuplicateTenant(p)) if p == "acme"
    ));
    assert!(db.delete_tenant("acme/search/web").await.unwrap());
    assert!(!db.delete_tenant("acme/search/web").await.unwrap());
    drop(db);

    let reopened = KeyDb::open(backend).await.unwrap();
    assert_eq!(reopened.tenants(), [tenant("acme"), tenant("acme/search")]);
}
