//! TEMPORARY stub (replaced by the store branch).
use std::path::Path;

use super::StoreError;

/// Stub.
pub type RedbStore = super::MemoryStore;

impl super::MemoryStore {
    /// Stub.
    pub fn open(_path: &Path) -> Result<Self, StoreError> {
        Ok(Self::new())
    }
}
