//! The fixture bucket (`tests/fixtures/atlas-v1-repo`) and what it must contain.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use atlas_core::compat::v1::V1Repository;
use atlas_core::ports::BlobStore;
use atlas_core::repo::Passphrase;
use atlas_store::LocalStore;
use serde_json::Value;
use tokio::sync::OnceCell;

pub const TENANT: &str = "ed344b8b-563e-428f-932f-e490291cc864";
pub const LUCAS: &str = "lucas.johnson@simcorp.onmicrosoft.com";
pub const OMAR: &str = "omar.kowalski@simcorp.onmicrosoft.com";

pub fn passphrase() -> Passphrase {
    Passphrase::new("fixture-passphrase-v1")
}

pub fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/atlas-v1-repo")
}

pub fn objects_dir() -> PathBuf {
    fixture_dir().join("objects")
}

pub fn expected() -> Value {
    serde_json::from_slice(&std::fs::read(fixture_dir().join("expected.json")).unwrap()).unwrap()
}

/// Expected snapshots of a mailbox: (snapshot id, created_at, message count, messages).
pub fn expected_snapshots(mailbox: &str) -> Vec<Value> {
    expected()["mailboxes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["address"] == mailbox)
        .unwrap()["snapshots"]
        .as_array()
        .unwrap()
        .clone()
}

pub fn fixture_store() -> Arc<dyn BlobStore> {
    Arc::new(LocalStore::new(objects_dir()))
}

/// The fixture opened once per test binary (scrypt N=2^16 is slow in a debug build).
pub async fn fixture() -> &'static V1Repository {
    static REPO: OnceCell<V1Repository> = OnceCell::const_new();
    REPO.get_or_init(|| async {
        V1Repository::open(fixture_store(), TENANT, &passphrase())
            .await
            .unwrap()
    })
    .await
}

/// Copy the fixture's objects into a fresh directory (to damage them).
pub fn copy_objects() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&objects_dir(), dir.path());
    dir
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

/// Every object key under `root` (relative, `/`-separated), sorted.
pub fn object_keys(root: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                let rel = p.strip_prefix(root).unwrap();
                out.push(rel.to_str().unwrap().replace('\\', "/"));
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}
