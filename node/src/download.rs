//! `download`: stream a URL into a temporary file in the work directory, bounded in size and
//! idle time, hashing as the bytes arrive; the file is renamed into place only when the
//! SHA-256 matches. Memory use is one network chunk, whatever the size of the file.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest as _, Sha256};

use crate::request::Download;

/// A completed download.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    pub path: PathBuf,
    pub size: u64,
    pub sha256: String,
}

/// Why a download failed; nothing is left in the work directory.
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    #[error("the request failed")]
    Request(#[source] reqwest::Error),
    #[error("the server answered HTTP {0}")]
    Status(reqwest::StatusCode),
    #[error("no data for {}s (idle_timeout)", .0.as_secs())]
    Idle(Duration),
    #[error("the server announces {announced} bytes, more than max_bytes {max}")]
    Announced { announced: u64, max: u64 },
    #[error("more than max_bytes {max} bytes arrived")]
    TooLarge { max: u64 },
    #[error("reading the response failed")]
    Body(#[source] reqwest::Error),
    #[error("checksum mismatch: expected {expected}, got {got}")]
    Checksum { expected: String, got: String },
    #[error("cannot write {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Fetches `request.url` into `workdir/request.target`.
pub async fn fetch(
    http: &reqwest::Client,
    request: &Download,
    workdir: &Path,
) -> Result<Fetched, DownloadError> {
    let idle = request.idle_timeout;
    let mut response = within(idle, http.get(&request.url).send())
        .await?
        .map_err(DownloadError::Request)?;
    if !response.status().is_success() {
        return Err(DownloadError::Status(response.status()));
    }
    if let Some(announced) = response.content_length()
        && announced > request.max_bytes
    {
        return Err(DownloadError::Announced {
            announced,
            max: request.max_bytes,
        });
    }
    let path = workdir.join(&request.target);
    let write_error = |source| DownloadError::Write {
        path: path.clone(),
        source,
    };
    // Removed on drop unless persisted: an error leaves nothing behind.
    let mut partial = tempfile::Builder::new()
        .prefix(&format!(".{}.", request.target))
        .suffix(".partial")
        .tempfile_in(workdir)
        .map_err(write_error)?;
    let mut hasher = Sha256::new();
    let mut size: u64 = 0;
    while let Some(chunk) = within(idle, response.chunk())
        .await?
        .map_err(DownloadError::Body)?
    {
        size += chunk.len() as u64;
        if size > request.max_bytes {
            return Err(DownloadError::TooLarge {
                max: request.max_bytes,
            });
        }
        hasher.update(&chunk);
        // Chunks are small (network reads); a blocking write of one is brief.
        partial.write_all(&chunk).map_err(write_error)?;
    }
    let got: String = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    if let Some(expected) = &request.sha256
        && *expected != got
    {
        return Err(DownloadError::Checksum {
            expected: expected.clone(),
            got,
        });
    }
    partial.as_file().sync_all().map_err(write_error)?;
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(partial.path(), std::fs::Permissions::from_mode(0o755))
            .map_err(write_error)?;
    }
    partial.persist(&path).map_err(|e| write_error(e.error))?;
    Ok(Fetched {
        path,
        size,
        sha256: got,
    })
}

/// `future`, or [`DownloadError::Idle`] when it takes longer than `idle`.
async fn within<T>(
    idle: Duration,
    future: impl std::future::Future<Output = T>,
) -> Result<T, DownloadError> {
    tokio::time::timeout(idle, future)
        .await
        .map_err(|_| DownloadError::Idle(idle))
}
