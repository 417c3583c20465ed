//! The `environment` store: variables with an optional prefix.
//!
//! Writes cannot change the runner's own environment safely, so they go to an [`EnvOverlay`]
//! shared with every child process the runner starts (shell tasks, shell stores, node scripts):
//! later shell tasks see written values exactly as if the process environment had changed.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use serde_json::Value;

use super::{DataStore, StoreError, StoreKind};
use crate::template::stringify;

/// Environment changes made by the run; `None` marks a deleted variable.
#[derive(Debug, Clone, Default)]
pub struct EnvOverlay {
    vars: Arc<Mutex<BTreeMap<String, Option<String>>>>,
}

impl EnvOverlay {
    /// The value a child process would see.
    pub fn get(&self, name: &str) -> Option<String> {
        let vars = self.vars.lock().unwrap_or_else(PoisonError::into_inner);
        match vars.get(name) {
            Some(v) => v.clone(),
            None => std::env::var(name).ok(),
        }
    }

    fn set(&self, name: &str, value: Option<String>) {
        let mut vars = self.vars.lock().unwrap_or_else(PoisonError::into_inner);
        vars.insert(name.to_string(), value);
    }

    /// Applies the overlay to a command about to be spawned.
    pub(crate) fn apply(&self, cmd: &mut tokio::process::Command) {
        let vars = self.vars.lock().unwrap_or_else(PoisonError::into_inner);
        for (k, v) in vars.iter() {
            match v {
                Some(v) => {
                    cmd.env(k, v);
                }
                None => {
                    cmd.env_remove(k);
                }
            }
        }
    }
}

pub(crate) struct EnvironmentStore {
    prefix: String,
    env: EnvOverlay,
}

impl EnvironmentStore {
    pub(crate) fn new(prefix: String, env: EnvOverlay) -> Self {
        Self { prefix, env }
    }
}

#[async_trait]
impl DataStore for EnvironmentStore {
    fn kind(&self) -> StoreKind {
        StoreKind::Environment
    }

    async fn read(&self, key: &str) -> Result<Value, StoreError> {
        let name = format!("{}{key}", self.prefix);
        self.env
            .get(&name)
            .map(Value::String)
            .ok_or(StoreError::NoSuchVariable(name))
    }

    async fn write(&self, key: &str, value: &Value) -> Result<(), StoreError> {
        self.env
            .set(&format!("{}{key}", self.prefix), Some(stringify(value)));
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.env.set(&format!("{}{key}", self.prefix), None);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn prefix_and_overlay() {
        let env = EnvOverlay::default();
        let store = EnvironmentStore::new("PBTEST_".into(), env.clone());
        assert!(matches!(
            store.read("nope").await,
            Err(StoreError::NoSuchVariable(n)) if n == "PBTEST_nope"
        ));
        store.write("x", &Value::from(5)).await.expect("write");
        assert_eq!(store.read("x").await.expect("read"), Value::from("5"));
        assert_eq!(env.get("PBTEST_x").as_deref(), Some("5"));
        store.delete("x").await.expect("delete");
        assert!(store.read("x").await.is_err());
        assert!(store.lock("x", std::time::Duration::ZERO).await.is_err());
    }
}
