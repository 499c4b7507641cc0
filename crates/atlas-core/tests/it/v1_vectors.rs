//! TypeScript Atlas 1.3 key vectors: produced by the reference implementation.

use std::sync::Arc;

use atlas_core::Error;
use atlas_core::ports::{BlobStore, PutOptions, StoreKey};
use atlas_core::repo::{Passphrase, Repository, decrypt_v1_object};
use atlas_store::MemoryStore;
use bytes::Bytes;
use serde::Deserialize;
use sha2::{Digest, Sha256};

#[derive(Deserialize)]
struct Vectors {
    vectors: Vec<Vector>,
}

#[derive(Deserialize)]
struct Vector {
    passphrase: String,
    tenant_id: String,
    wrapped_dek_hex: String,
    dek_hex: String,
    objects: Vec<Object>,
}

#[derive(Deserialize)]
struct Object {
    plaintext_hex: String,
    plaintext_sha256: String,
    ciphertext_hex: String,
}

fn vectors() -> Vec<Vector> {
    let text = include_str!("fixtures/key-vectors.json");
    serde_json::from_str::<Vectors>(text).unwrap().vectors
}

async fn store_with_key(blob: &[u8]) -> Arc<dyn BlobStore> {
    let store: Arc<dyn BlobStore> = Arc::new(MemoryStore::new());
    store
        .put(
            &StoreKey::new("_meta/dek.enc").unwrap(),
            Bytes::copy_from_slice(blob),
            PutOptions::CREATE,
        )
        .await
        .unwrap();
    store
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_v1_blob_unwraps_and_every_object_decrypts() {
    for v in vectors() {
        let blob = hex::decode(&v.wrapped_dek_hex).unwrap();
        let store = store_with_key(&blob).await;
        let repo = Repository::open(store, &v.tenant_id, &Passphrase::new(v.passphrase.clone()))
            .await
            .unwrap();
        // A TypeScript bucket has a key but no Atlas 2 config.
        assert!(repo.config().is_none());
        let dek = repo.data_key();
        assert_eq!(hex::encode(dek.expose_secret()), v.dek_hex);
        for o in &v.objects {
            let ct = hex::decode(&o.ciphertext_hex).unwrap();
            let pt = decrypt_v1_object(&dek, &ct, "data/x").unwrap();
            assert_eq!(hex::encode(&pt), o.plaintext_hex);
            assert_eq!(hex::encode(Sha256::digest(&pt)), o.plaintext_sha256);
            for i in 0..ct.len() {
                let mut bad = ct.clone();
                bad[i] ^= 0x01;
                assert!(
                    matches!(
                        decrypt_v1_object(&dek, &bad, "data/x"),
                        Err(Error::AuthenticationFailed { .. })
                    ),
                    "flip at {i} accepted"
                );
            }
            assert!(matches!(
                decrypt_v1_object(&dek, &ct[..20], "data/x"),
                Err(Error::Truncated { .. })
            ));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_passphrase_and_wrong_tenant_are_refused() {
    let v = &vectors()[0];
    let blob = hex::decode(&v.wrapped_dek_hex).unwrap();
    let store = store_with_key(&blob).await;
    let err = Repository::open(store.clone(), &v.tenant_id, &Passphrase::new("nope"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::WrongPassphrase { .. }), "{err:?}");
    assert!(!err.to_string().contains(&v.passphrase));
    let err = Repository::open(
        store,
        "other-tenant",
        &Passphrase::new(v.passphrase.clone()),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, Error::WrongPassphrase { .. }), "{err:?}");
}

/// One flipped byte anywhere in the wrapped key is rejected: header bytes fail to parse
/// (or fail the tag, the header being the associated data); salt, IV, tag and ciphertext
/// fail the tag. Every header byte is tried, and the first and last byte of the salt, IV,
/// tag and ciphertext (each of those costs a full scrypt run at N = 2^16, so not all 102
/// positions are tried; the AEAD covers each field as a whole).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_flipped_byte_of_a_v1_blob_is_rejected() {
    let v = &vectors()[0];
    let blob = hex::decode(&v.wrapped_dek_hex).unwrap();
    let pw = Passphrase::new(v.passphrase.clone());
    let mut tasks = Vec::new();
    let positions = (0..10).chain([10, 41, 42, 53, 54, 69, 70, 101]);
    for i in positions {
        let mut bad = blob.clone();
        bad[i] ^= 0x01;
        let (pw, tenant) = (pw.clone(), v.tenant_id.clone());
        tasks.push(tokio::spawn(async move {
            let store = store_with_key(&bad).await;
            (i, Repository::open(store, &tenant, &pw).await.map(|_| ()))
        }));
    }
    for t in tasks {
        let (i, result) = t.await.unwrap();
        match result {
            Err(
                Error::WrongPassphrase { .. }
                | Error::Corrupt { .. }
                | Error::UnsupportedVersion { .. },
            ) => {}
            other => panic!("flip at {i}: {other:?}"),
        }
    }
}
