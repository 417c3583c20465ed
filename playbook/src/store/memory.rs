//! The `memory` store: an in-process map with simple polling locks.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde_json::Value;

use super::{DataStore, Lock, StoreError, StoreKind};

/// How often a waiting lock re-checks.
const LOCK_POLL: Duration = Duration::from_millis(50);

pub(crate) struct MemoryStore {
    name: String,
    values: Mutex<HashMap<String, Value>>,
    locks: Arc<Mutex<HashSet<String>>>,
}

impl MemoryStore {
    pub(crate) fn new(name: &str) -> Self {
        Self {
            name: name.to_string(),
            values: Mutex::new(HashMap::new()),
            locks: Arc::new(Mutex::new(HashSet::new())),
        }
    }
}

#[async_trait]
impl DataStore for MemoryStore {
    fn kind(&self) -> StoreKind {
        StoreKind::Memory
    }

    async fn read(&self, key: &str) -> Result<Value, StoreError> {
        let values = self.values.lock().unwrap_or_else(PoisonError::into_inner);
        values
            .get(key)
            .cloned()
            .ok_or_else(|| StoreError::NoSuchKey {
                kind: StoreKind::Memory,
                key: key.to_string(),
            })
    }

    async fn write(&self, key: &str, value: &Value) -> Result<(), StoreError> {
        let mut values = self.values.lock().unwrap_or_else(PoisonError::into_inner);
        values.insert(key.to_string(), value.clone());
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let mut values = self.values.lock().unwrap_or_else(PoisonError::into_inner);
        values.remove(key);
        Ok(())
    }

    async fn lock(&self, key: &str, timeout: Duration) -> Result<Box<dyn Lock>, StoreError> {
        let started = Instant::now();
        loop {
            {
                let mut held = self.locks.lock().unwrap_or_else(PoisonError::into_inner);
                if held.insert(key.to_string()) {
                    return Ok(Box::new(MemoryLock {
                        path: format!("{}/{key}", self.name),
                        key: key.to_string(),
                        locks: Arc::clone(&self.locks),
                    }));
                }
            }
            if started.elapsed() >= timeout {
                return Err(StoreError::LockTimeout {
                    key: key.to_string(),
                    seconds: timeout.as_secs_f64(),
                    waited: started.elapsed().as_secs_f64(),
                });
            }
            tokio::time::sleep(LOCK_POLL).await;
        }
    }
}

struct MemoryLock {
    path: String,
    key: String,
    locks: Arc<Mutex<HashSet<String>>>,
}

#[async_trait]
impl Lock for MemoryLock {
    fn path(&self) -> &str {
        &self.path
    }

    async fn release(self: Box<Self>) -> Result<(), StoreError> {
        let mut held = self.locks.lock().unwrap_or_else(PoisonError::into_inner);
        held.remove(&self.key);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn read_write_delete() {
        let store = MemoryStore::new("m");
        assert!(store.read("k").await.is_err());
        store.write("k", &Value::from(3)).await.expect("write");
        assert_eq!(store.read("k").await.expect("read"), Value::from(3));
        store.delete("k").await.expect("delete");
        assert!(matches!(
            store.read("k").await,
            Err(StoreError::NoSuchKey { .. })
        ));
    }

    #[tokio::test]
    async fn locks_are_exclusive_until_released() {
        let store = MemoryStore::new("m");
        let lock = store
            .lock("l", Duration::from_millis(10))
            .await
            .expect("first");
        assert_eq!(lock.path(), "m/l");
        let second = store.lock("l", Duration::from_millis(100)).await;
        assert!(matches!(second, Err(StoreError::LockTimeout { .. })));
        lock.release().await.expect("release");
        store
            .lock("l", Duration::from_millis(10))
            .await
            .expect("again");
    }
}
