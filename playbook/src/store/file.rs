//! The `file` store: one JSON or YAML file holding a mapping, re-read on every access and
//! rewritten whole on every change.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use serde_json::{Map, Value};
use tokio::sync::Mutex;

use super::{DataStore, StoreError, StoreKind};
use crate::schema::stores::{FileFormat as Format, FileProps};
use crate::schema::values::flag;

pub(crate) struct FileStore {
    path: PathBuf,
    format: Format,
    guard: Mutex<()>,
}

/// Expands a leading `~/` to the home directory.
pub(crate) fn expand_home(path: &str) -> PathBuf {
    if let Some(rest) = path.strip_prefix("~/")
        && let Some(home) = std::env::var_os("HOME")
    {
        return Path::new(&home).join(rest);
    }
    PathBuf::from(path)
}

impl FileStore {
    pub(crate) async fn open(props: &FileProps) -> Result<Self, StoreError> {
        let format = props.format;
        let create = flag(props.create, false);
        let path = expand_home(props.file.as_str());
        if tokio::fs::metadata(&path).await.is_err() {
            if create {
                tokio::fs::write(&path, b"").await.map_err(|e| {
                    StoreError::Failed(format!("Cannot create data file {}: {e}", path.display()))
                })?;
            } else {
                return Err(StoreError::Config(format!(
                    "Cannot find data file {}",
                    path.display()
                )));
            }
        }
        Ok(Self {
            path,
            format,
            guard: Mutex::new(()),
        })
    }

    async fn load(&self) -> Result<Map<String, Value>, StoreError> {
        let text = tokio::fs::read_to_string(&self.path).await.map_err(|e| {
            StoreError::Failed(format!(
                "Cannot read data file {}: {e}",
                self.path.display()
            ))
        })?;
        if text.trim().is_empty() {
            return Ok(Map::new());
        }
        let value = match self.format {
            Format::Json => serde_json::from_str::<Value>(&text).map_err(|e| {
                StoreError::Failed(format!("{}: invalid JSON: {e}", self.path.display()))
            })?,
            Format::Yaml => crate::yaml::parse(&text)
                .map_err(|e| {
                    StoreError::Failed(format!("{}:{}: {e}", self.path.display(), e.mark))
                })?
                .to_value(),
        };
        match value {
            Value::Object(map) => Ok(map),
            Value::Null => Ok(Map::new()),
            _ => Err(StoreError::Failed(
                "The data file must contain a Hash or be empty".to_string(),
            )),
        }
    }

    async fn save(&self, map: Map<String, Value>) -> Result<(), StoreError> {
        let value = Value::Object(map);
        let text = match self.format {
            Format::Json => value.to_string(),
            Format::Yaml => crate::yaml::to_yaml_string(&value).map_err(StoreError::Failed)?,
        };
        tokio::fs::write(&self.path, text).await.map_err(|e| {
            StoreError::Failed(format!(
                "Cannot write data file {}: {e}",
                self.path.display()
            ))
        })
    }
}

#[async_trait]
impl DataStore for FileStore {
    fn kind(&self) -> StoreKind {
        StoreKind::File
    }

    async fn read(&self, key: &str) -> Result<Value, StoreError> {
        let _guard = self.guard.lock().await;
        self.load()
            .await?
            .remove(key)
            .ok_or_else(|| StoreError::NoSuchKey(key.to_string()))
    }

    async fn write(&self, key: &str, value: &Value) -> Result<(), StoreError> {
        let _guard = self.guard.lock().await;
        let mut map = self.load().await?;
        map.insert(key.to_string(), value.clone());
        self.save(map).await
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let _guard = self.guard.lock().await;
        let mut map = self.load().await?;
        map.remove(key);
        self.save(map).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn props(file: &Path, format: &str, create: bool) -> FileProps {
        let v = json!({"file": file.to_string_lossy(), "format": format, "create": create});
        crate::schema::parse(&v).expect("valid properties")
    }

    #[tokio::test]
    async fn yaml_round_trip_keeps_types() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("d.yaml");
        assert!(FileStore::open(&props(&path, "yaml", false)).await.is_err());
        let store = FileStore::open(&props(&path, "yaml", true))
            .await
            .expect("create");
        store.write("port", &json!(4222)).await.expect("write");
        store.write("name", &json!("x")).await.expect("write");
        assert_eq!(store.read("port").await.expect("read"), json!(4222));
        let text = std::fs::read_to_string(&path).expect("file");
        assert!(text.contains("port: 4222"), "{text}");
        store.delete("port").await.expect("delete");
        assert!(matches!(
            store.read("port").await,
            Err(StoreError::NoSuchKey(_))
        ));
    }

    #[tokio::test]
    async fn json_files_and_bad_content() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("d.json");
        std::fs::write(&path, "[1]").expect("write");
        let store = FileStore::open(&props(&path, "json", false))
            .await
            .expect("open");
        let err = store.read("x").await.expect_err("not a hash");
        assert!(err.to_string().contains("must contain a Hash"), "{err}");
        let toml = json!({"file": path.to_string_lossy(), "format": "toml"});
        assert!(crate::schema::parse::<FileProps>(&toml).is_err());
    }
}
