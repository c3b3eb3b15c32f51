//! The reads a `DiskStore` answers without a future ([`Store::get_now`](crate::Store::get_now)):
//! every live entry of the all-in-memory mode is in the memory tier, so a read there never
//! waits. The larger-than-memory mode may have to read the engine on a memory miss, so it
//! leaves every read to `get` (trying memory first would count that miss twice).

use serde::{de::DeserializeOwned, Serialize};

use super::DiskStore;
use crate::{codec::Key, error::Result};

impl<K, V> DiskStore<K, V>
where
    K: Key,
    V: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
{
    /// `get` from the memory tier alone, or `None` in the larger-than-memory mode. A closed or
    /// failed store answers its error at once, as `get` does.
    #[inline]
    pub(super) fn get_from_memory(&self, key: &K) -> Option<Result<Option<V>>> {
        if self.db.larger_than_memory() {
            return None;
        }
        if let Some(compact) = self.compact() {
            return Some(self.check().and_then(|()| compact.get(key)));
        }
        Some(self.check().map(|()| self.mem().get(key)))
    }
}
