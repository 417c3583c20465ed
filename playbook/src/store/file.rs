//! The `file` store: one JSON or YAML file holding a mapping, re-read on every access and
//! rewritten whole on every change.
//!
//! The file is checked when the store opens, so a run stops before any task when it is a
//! directory, unreadable, empty or not a mapping. Writes go to a temporary file in the same
//! directory, are flushed to disk and renamed over the original, so a crash leaves either the
//! old or the new content, never a truncated file. An empty file is refused rather than read
//! as `{}` (what an interrupted non-atomic write would have left); `create: true` starts the
//! file as `{}`.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use serde_json::{Map, Value};
use tokio::sync::Mutex;

use super::{DataStore, FileProblem, StoreError, StoreKind};
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
        let mut store = Self {
            path,
            format,
            guard: Mutex::new(()),
        };
        match tokio::fs::symlink_metadata(&store.path).await {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if !create {
                    return Err(StoreError::Config(format!(
                        "Cannot find data file {}",
                        store.path.display()
                    )));
                }
                store.save(Map::new()).await?;
            }
            Err(e) => return Err(store.problem(FileProblem::Read(e.into()))),
            Ok(_) => {
                // Writes replace the file by renaming, so work on a symlink's target.
                if let Ok(real) = tokio::fs::canonicalize(&store.path).await {
                    store.path = real;
                }
            }
        }
        // Refuse a file that cannot be used now, before any task runs; it is left untouched.
        store.load().await?;
        Ok(store)
    }

    fn problem(&self, problem: FileProblem) -> StoreError {
        StoreError::File {
            path: self.path.clone(),
            problem,
        }
    }

    async fn load(&self) -> Result<Map<String, Value>, StoreError> {
        if tokio::fs::metadata(&self.path)
            .await
            .is_ok_and(|m| m.is_dir())
        {
            return Err(self.problem(FileProblem::Directory));
        }
        let text = tokio::fs::read_to_string(&self.path)
            .await
            .map_err(|e| self.problem(FileProblem::Read(e.into())))?;
        if text.trim().is_empty() {
            return Err(self.problem(FileProblem::Empty));
        }
        let value = match self.format {
            Format::Json => serde_json::from_str::<Value>(&text)
                .map_err(|e| self.problem(FileProblem::Json(e.into())))?,
            Format::Yaml => crate::yaml::parse(&text)
                .map_err(|e| self.problem(FileProblem::Yaml(e)))?
                .to_value(),
        };
        match value {
            Value::Object(map) => Ok(map),
            other => Err(self.problem(FileProblem::NotMapping(
                match other {
                    Value::Null => "null",
                    Value::Bool(_) => "a boolean",
                    Value::Number(_) => "a number",
                    Value::String(_) => "a string",
                    Value::Array(_) => "a list",
                    Value::Object(_) => "a mapping",
                }
                .to_string(),
            ))),
        }
    }

    /// Replaces the file atomically: temporary file in the same directory, fsync, rename,
    /// fsync of the directory.
    async fn save(&self, map: Map<String, Value>) -> Result<(), StoreError> {
        let value = Value::Object(map);
        let text = match self.format {
            Format::Json => value.to_string(),
            Format::Yaml => crate::yaml::to_yaml_string(&value).map_err(StoreError::Failed)?,
        };
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || replace(&path, text.as_bytes()))
            .await
            .map_err(|e| self.problem(FileProblem::Write(std::io::Error::other(e).into())))?
            .map_err(|e| self.problem(FileProblem::Write(e.into())))
    }
}

/// Writes `bytes` to a temporary file next to `path`, flushes it and renames it over `path`.
fn replace(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", uuid::Uuid::new_v4().simple()));
    let result = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        if let Ok(meta) = std::fs::metadata(path) {
            file.set_permissions(meta.permissions())?;
        }
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result?;
    // Make the rename itself durable; not every file system allows syncing a directory.
    if let Ok(d) = std::fs::File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(())
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
            .ok_or_else(|| StoreError::NoSuchKey {
                kind: StoreKind::File,
                key: key.to_string(),
            })
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
            Err(StoreError::NoSuchKey { .. })
        ));
    }

    #[tokio::test]
    async fn json_files_and_bad_content() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("d.json");
        std::fs::write(&path, "[1]").expect("write");
        let Err(err) = FileStore::open(&props(&path, "json", false)).await else {
            panic!("a list is not a mapping");
        };
        assert!(err.to_string().contains("must contain a mapping"), "{err}");
        let toml = json!({"file": path.to_string_lossy(), "format": "toml"});
        assert!(crate::schema::parse::<FileProps>(&toml).is_err());
    }
}
