//! Registry startup: open `DATA/registry.redb` and make sure an administrator can get in. With
//! `STRATA_ADMIN_TOKEN` (or `--admin-token-file`) that value is installed as the admin token.
//! Otherwise, on first start (no active admin token), a new admin token is created, written to
//! `DATA/admin-token` (mode 0600, replaced atomically) and printed once to stderr outside the
//! structured log; the log only says where the file is. No secret is ever logged.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::Context;
use strata_registry::Registry;

/// Name of the admin-token file inside the data directory.
pub const ADMIN_TOKEN_FILE: &str = "admin-token";
/// Environment variable that sets the admin token.
pub const ADMIN_TOKEN_ENV: &str = "STRATA_ADMIN_TOKEN";

/// Where the admin token comes from.
#[derive(Clone, PartialEq, Eq)]
pub enum AdminSource {
    /// A value supplied by the operator (environment or file).
    Supplied(String),
    /// Bootstrap one on first start.
    Bootstrap,
}

impl std::fmt::Debug for AdminSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AdminSource::Supplied(_) => f.write_str("Supplied(<redacted>)"),
            AdminSource::Bootstrap => f.write_str("Bootstrap"),
        }
    }
}

/// Reads the admin token source: `--admin-token-file` wins, then `STRATA_ADMIN_TOKEN`, else
/// bootstrap.
pub fn admin_source(token_file: Option<&Path>) -> anyhow::Result<AdminSource> {
    if let Some(path) = token_file {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the admin token file {}", path.display()))?;
        return Ok(AdminSource::Supplied(text.trim().to_owned()));
    }
    match std::env::var(ADMIN_TOKEN_ENV) {
        Ok(v) if !v.trim().is_empty() => Ok(AdminSource::Supplied(v.trim().to_owned())),
        _ => Ok(AdminSource::Bootstrap),
    }
}

/// What to do with a newly bootstrapped admin token besides writing its file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Announce {
    /// Print it once to stderr, with a curl example against this base URL.
    Print(String),
    /// Do not print it.
    Quiet,
}

/// Opens the registry in `data_dir` (file mode 0600) and installs or bootstraps the admin token.
pub fn open_registry(
    data_dir: &Path,
    source: &AdminSource,
    announce: &Announce,
) -> anyhow::Result<Registry> {
    let registry = Registry::open_in_dir(data_dir)
        .with_context(|| format!("cannot open the registry in {}", data_dir.display()))?;
    std::fs::set_permissions(registry.path(), std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("cannot restrict {}", registry.path().display()))?;
    tracing::info!(path = %registry.path().display(), devices = registry.device_count().unwrap_or(0),
        "registry opened");
    match source {
        AdminSource::Supplied(value) => {
            registry
                .ensure_admin_token(Some(value))
                .with_context(|| format!("{ADMIN_TOKEN_ENV} was refused"))?;
            tracing::info!("admin token installed from the environment or --admin-token-file");
        }
        AdminSource::Bootstrap => bootstrap(&registry, data_dir, announce)?,
    }
    Ok(registry)
}

/// Creates the first admin token when none is active: file, one-time print, log line.
fn bootstrap(registry: &Registry, data_dir: &Path, announce: &Announce) -> anyhow::Result<()> {
    let path = data_dir.join(ADMIN_TOKEN_FILE);
    let Some(token) = registry
        .ensure_admin_token(None)
        .context("cannot create the admin token")?
    else {
        if !path.exists() {
            tracing::info!(path = %path.display(),
                "an admin token exists but its file is absent; use that token, or set STRATA_ADMIN_TOKEN");
        }
        return Ok(());
    };
    write_secret_file(&path, &token)?;
    tracing::info!("admin token written to {}", path.display());
    if let Announce::Print(base_url) = announce {
        print_once(&token, &path, base_url);
    }
    Ok(())
}

/// Prints the new admin token to stderr as plain text, outside the JSON log stream.
fn print_once(token: &str, path: &Path, base_url: &str) {
    let bar = "=".repeat(72);
    let mut err = std::io::stderr().lock();
    let _ = writeln!(
        err,
        "{bar}\nSTRATA ADMIN TOKEN (shown once; also saved to {} with mode 0600):\n\n    {token}\n\n\
         Send it as 'Authorization: Bearer <token>', e.g.\n    \
         curl -H \"Authorization: Bearer $(cat {})\" {base_url}/api/v1/devices\n{bar}",
        path.display(),
        path.display()
    );
}

/// Writes `secret` to `path` with mode 0600: a temporary file, fsync, rename, directory fsync.
pub fn write_secret_file(path: &Path, secret: &str) -> anyhow::Result<()> {
    let tmp: PathBuf = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("cannot create {}", tmp.display()))?;
    f.set_permissions(std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("cannot restrict {}", tmp.display()))?;
    f.write_all(secret.as_bytes())
        .and_then(|()| f.write_all(b"\n"))
        .and_then(|()| f.sync_all())
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    drop(f);
    std::fs::rename(&tmp, path)
        .with_context(|| format!("cannot rename {} to {}", tmp.display(), path.display()))?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .with_context(|| format!("cannot sync {}", dir.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_file_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(ADMIN_TOKEN_FILE);
        write_secret_file(&path, "first").unwrap();
        write_secret_file(&path, "second").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "second\n");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn bootstrap_creates_once() {
        let dir = tempfile::tempdir().unwrap();
        let reg = open_registry(dir.path(), &AdminSource::Bootstrap, &Announce::Quiet).unwrap();
        let mode = std::fs::metadata(reg.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let token = std::fs::read_to_string(dir.path().join(ADMIN_TOKEN_FILE)).unwrap();
        assert!(reg.authenticate_token(token.trim()).is_ok());
        drop(reg);
        std::fs::remove_file(dir.path().join(ADMIN_TOKEN_FILE)).unwrap();
        let reg = open_registry(dir.path(), &AdminSource::Bootstrap, &Announce::Quiet).unwrap();
        assert!(
            !dir.path().join(ADMIN_TOKEN_FILE).exists(),
            "no second token"
        );
        assert!(reg.authenticate_token(token.trim()).is_ok());
    }

    #[test]
    fn supplied_token_is_installed() {
        let dir = tempfile::tempdir().unwrap();
        let src = AdminSource::Supplied("a-long-enough-admin-token".into());
        assert!(!format!("{src:?}").contains("long-enough"));
        let reg = open_registry(dir.path(), &src, &Announce::Quiet).unwrap();
        assert!(reg.authenticate_token("a-long-enough-admin-token").is_ok());
        assert!(!dir.path().join(ADMIN_TOKEN_FILE).exists());
        drop(reg);
        let short = AdminSource::Supplied("short".into());
        assert!(open_registry(dir.path(), &short, &Announce::Quiet).is_err());
    }
}
