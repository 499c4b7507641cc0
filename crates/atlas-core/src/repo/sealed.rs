//! Sealed JSON records: every named object (config, mailbox and snapshot records,
//! leases, replication status) is JSON sealed under the repository key and bound to its
//! store key, so an object copied to another key or read as another type fails.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::Repository;
use super::crypto::{self, ObjectType};
use super::layout::store_key;
use crate::error::{Error, Result};

impl Repository {
    pub(in crate::repo) fn seal_json<T: Serialize>(
        &self,
        ty: ObjectType,
        key: &str,
        value: &T,
    ) -> Result<Bytes> {
        let json =
            serde_json::to_vec(value).map_err(|e| Error::invalid(format!("serialize: {e}")))?;
        Ok(Bytes::from(crypto::seal_object(
            &self.keys().enc,
            ty,
            key.as_bytes(),
            &json,
        )))
    }

    pub(in crate::repo) fn open_json<T: for<'de> Deserialize<'de>>(
        &self,
        ty: ObjectType,
        key: &str,
        bytes: &[u8],
    ) -> Result<T> {
        let plain = crypto::open_object(&self.keys().enc, ty, key.as_bytes(), bytes, key)?;
        serde_json::from_slice(&plain)
            .map_err(|e| Error::corrupt(key, format!("undecodable record: {e}")))
    }

    pub(in crate::repo) async fn get_required(&self, key: &str) -> Result<Bytes> {
        self.inner
            .store
            .get(&store_key(key)?)
            .await
            .map_err(Error::from_store_required)
    }
}
