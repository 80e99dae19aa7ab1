#![allow(clippy::unwrap_used, clippy::expect_used)]

use indexmap::IndexMap;

use crate::{KeyDb, KeyRecord, KeyStoreError};

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

#[tokio::test]
async fn records_survive_reopening_and_revocation_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/keys.db");
    let db = KeyDb::open(&path).await.unwrap();
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

    let reopened = KeyDb::open(&path).await.unwrap();
    let ids: Vec<_> = reopened.records().into_iter().map(|r| r.id).collect();
    assert_eq!(ids, ["a", "b"]);
    assert_eq!(reopened.get("b").unwrap(), record("b", "sha256:bb"));
    assert!(reopened.get("a").unwrap().is_revoked());
}
