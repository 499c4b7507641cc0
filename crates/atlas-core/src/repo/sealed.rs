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
    pub(crate) fn seal_json<T: Serialize>(
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

    pub(crate) fn open_json<T: for<'de> Deserialize<'de>>(
        &self,
        ty: ObjectType,
        key: &str,
        bytes: &[u8],
    ) -> Result<T> {
        let plain = crypto::open_object(&self.keys().enc, ty, key.as_bytes(), bytes, key)?;
        serde_json::from_slice(&plain)
            .map_err(|e| Error::corrupt(key, format!("undecodable record: {e}")))
    }

    /// Seal a replication status record (type 8) bound to its store key; the
    /// replication service owns the JSON payload.
    pub(crate) fn seal_replication_record<T: Serialize>(
        &self,
        key: &str,
        value: &T,
    ) -> Result<Bytes> {
        self.seal_json(ObjectType::Replication, key, value)
    }

    /// Open a record sealed by [`Repository::seal_replication_record`].
    pub(crate) fn open_replication_record<T: for<'de> Deserialize<'de>>(
        &self,
        key: &str,
        bytes: &[u8],
    ) -> Result<T> {
        self.open_json(ObjectType::Replication, key, bytes)
    }

    pub(crate) async fn get_required(&self, key: &str) -> Result<Bytes> {
        self.inner
            .store
            .get(&store_key(key)?)
            .await
            .map_err(Error::from_store_required)
    }
}
