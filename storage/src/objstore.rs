//! Object-store locations: one parser for the URLs operators give Strata (`--cold-store`, backup
//! targets) and the [`object_store`] backend each opens. Shared by the cold tier and backups so a
//! URL means the same thing everywhere.
//!
//! | URL | backend | configuration |
//! |---|---|---|
//! | `file:///abs/dir` | local directory (created if missing) | none |
//! | `s3://bucket/prefix` | Amazon S3 and S3-compatible stores | `AWS_*` variables (`AWS_ENDPOINT_URL`, `AWS_ALLOW_HTTP=true`, `AWS_REGION`, keys) |
//! | `az://container/prefix` | Azure Blob Storage | `AZURE_STORAGE_*` variables (`AZURE_STORAGE_USE_EMULATOR=true` for Azurite) |

use std::fmt;
use std::sync::Arc;

use object_store::ObjectStore;
use object_store::path::Path as ObjectPath;

use crate::error::{Result, StorageError};

/// Which backend a [`StoreUrl`] names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreKind {
    /// A local directory (absolute path).
    File(std::path::PathBuf),
    /// An S3 bucket.
    S3 {
        /// Bucket name.
        bucket: String,
    },
    /// An Azure Blob Storage container.
    Azure {
        /// Container name.
        container: String,
    },
}

/// A parsed object-store URL: the backend and a key prefix inside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreUrl {
    /// The backend.
    pub kind: StoreKind,
    /// Key prefix inside the bucket/container ("" for the root; no leading or trailing `/`).
    pub prefix: String,
    raw: String,
}

impl fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

impl StoreUrl {
    /// Parses `file:///abs/dir`, `s3://bucket[/prefix]` or `az://container[/prefix]`; a plain
    /// path (no `scheme://`) is a local directory, made absolute against the current directory
    /// and kept as `file:///abs/dir`.
    pub fn parse(url: &str) -> Result<StoreUrl> {
        if !url.contains("://") {
            return Self::local_dir(url);
        }
        let bad = |why: &str| {
            StorageError::InvalidInput(format!(
                "object store URL '{url}': {why}; use file:///absolute/dir, s3://bucket/prefix or az://container/prefix"
            ))
        };
        let (scheme, rest) = url.split_once("://").ok_or_else(|| bad("no scheme"))?;
        let kind_and_prefix = match scheme {
            "file" => {
                if !rest.starts_with('/') {
                    return Err(bad("a file URL needs an absolute path (three slashes)"));
                }
                let dir = std::path::PathBuf::from(rest.trim_end_matches('/'));
                (StoreKind::File(dir), String::new())
            }
            "s3" | "az" | "azure" => {
                let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
                if bucket.is_empty() {
                    return Err(bad("the bucket/container name is missing"));
                }
                let kind = if scheme == "s3" {
                    StoreKind::S3 {
                        bucket: bucket.to_string(),
                    }
                } else {
                    StoreKind::Azure {
                        container: bucket.to_string(),
                    }
                };
                (kind, prefix.trim_matches('/').to_string())
            }
            other => return Err(bad(&format!("unknown scheme '{other}'"))),
        };
        Ok(StoreUrl {
            kind: kind_and_prefix.0,
            prefix: kind_and_prefix.1,
            raw: url.to_string(),
        })
    }

    /// A plain directory path as a `file://` store URL.
    fn local_dir(path: &str) -> Result<StoreUrl> {
        if path.trim().is_empty() {
            return Err(StorageError::InvalidInput(
                "object store URL is empty; use a directory, file:///absolute/dir, s3://bucket/prefix or az://container/prefix".into(),
            ));
        }
        let dir = std::path::absolute(path).map_err(|source| StorageError::Io {
            path: path.into(),
            source,
        })?;
        let dir = dir.to_string_lossy();
        Self::parse(&format!("file://{}", dir.trim_end_matches('/')))
    }

    /// Opens the backend (reading credentials from the environment) and returns it with the
    /// key prefix to put before every object name.
    pub fn open(&self) -> Result<(Arc<dyn ObjectStore>, ObjectPath)> {
        let store: Arc<dyn ObjectStore> = match &self.kind {
            StoreKind::File(dir) => {
                std::fs::create_dir_all(dir).map_err(|source| StorageError::Io {
                    path: dir.clone(),
                    source,
                })?;
                let fs = object_store::local::LocalFileSystem::new_with_prefix(dir)
                    .map_err(|e| self.open_error(e))?;
                Arc::new(fs)
            }
            StoreKind::S3 { bucket } => {
                let s3 = object_store::aws::AmazonS3Builder::from_env()
                    .with_bucket_name(bucket)
                    .build()
                    .map_err(|e| self.open_error(e))?;
                Arc::new(s3)
            }
            StoreKind::Azure { container } => {
                let az = object_store::azure::MicrosoftAzureBuilder::from_env()
                    .with_container_name(container)
                    .build()
                    .map_err(|e| self.open_error(e))?;
                Arc::new(az)
            }
        };
        Ok((store, ObjectPath::from(self.prefix.as_str())))
    }

    fn open_error(&self, e: object_store::Error) -> StorageError {
        StorageError::InvalidInput(format!(
            "cannot open object store '{}': {e}; check the URL and the AWS_* / AZURE_STORAGE_* environment variables",
            self.raw
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::ObjectStoreExt;

    #[test]
    fn parses_the_three_schemes() {
        let f = StoreUrl::parse("file:///tmp/cold/").unwrap();
        assert_eq!(f.kind, StoreKind::File("/tmp/cold".into()));
        assert_eq!(f.prefix, "");
        let s = StoreUrl::parse("s3://bucket/a/b/").unwrap();
        assert_eq!(
            s.kind,
            StoreKind::S3 {
                bucket: "bucket".into()
            }
        );
        assert_eq!(s.prefix, "a/b");
        let a = StoreUrl::parse("az://cont").unwrap();
        assert_eq!(
            a.kind,
            StoreKind::Azure {
                container: "cont".into()
            }
        );
        assert_eq!(a.prefix, "");
        assert_eq!(a.to_string(), "az://cont");
    }

    #[test]
    fn refuses_unclear_urls() {
        for url in ["file://relative", "gs://b", "s3://", "s3:///p", ""] {
            let e = StoreUrl::parse(url).unwrap_err().to_string();
            assert!(e.contains("file:///absolute/dir"), "{url}: {e}");
        }
    }

    #[test]
    fn a_plain_path_is_a_local_directory() {
        let abs = StoreUrl::parse("/tmp/x/").unwrap();
        assert_eq!(abs.kind, StoreKind::File("/tmp/x".into()));
        assert_eq!(abs.to_string(), "file:///tmp/x");
        let rel = StoreUrl::parse("backups/strata").unwrap();
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(rel.kind, StoreKind::File(cwd.join("backups/strata")));
    }

    #[test]
    fn a_local_store_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let url = StoreUrl::parse(&format!("file://{}/sub", dir.path().display())).unwrap();
        let (store, prefix) = url.open().unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            let key = prefix.clone().join("k");
            store.put(&key, b"v".to_vec().into()).await.unwrap();
            let got = store.get(&key).await.unwrap().bytes().await.unwrap();
            assert_eq!(&got[..], b"v");
        });
        assert!(dir.path().join("sub/k").exists());
    }
}
