//! `POST /api/v1/devices/{id}/certificate` (admin): issues a client certificate for a registered
//! device from the development CA, pins its thumbprint on the device (so only the newest issued
//! certificate authenticates, and re-issuing revokes the previous one) and returns certificate,
//! private key and CA certificate once, like a device key at registration.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{Value, json};
use strata_registry::DeviceUpdate;

use super::devca::{DevCa, MAX_DEVICE_DAYS};
use super::identity::thumbprint;
use crate::auth::Principal;
use crate::error::ApiError;
use crate::state::AppState;

/// Default validity of an issued device certificate, in days.
pub const DEFAULT_DAYS: u32 = 365;

/// Optional JSON body.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct IssueRequest {
    /// Validity in days (1..=3650, default 365).
    days: Option<u32>,
}

/// The development CA the server holds, when it can issue device certificates. Added to the
/// router as an extension by the serve loop.
#[derive(Debug, Clone, Default)]
pub struct CertIssuer(pub Option<Arc<DevCa>>);

/// `POST /api/v1/devices/{id}/certificate`: `201` with the certificate, key and CA (PEM).
pub async fn issue(
    State(st): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(issuer): Extension<CertIssuer>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    crate::api::may_mint_device_credentials(&st, &principal)?;
    let days = request_days(&body)?;
    let ca = issuer.0.ok_or_else(|| {
        ApiError::Conflict(
            "this server holds no development CA: device certificates are issued only when TLS \
             runs with the generated development CA as the client CA (no --tls-cert, no \
             --tls-client-ca); sign device certificates with your own CA instead"
                .into(),
        )
    })?;
    let registry = st.registry.clone();
    tokio::task::spawn_blocking(move || {
        registry.get_device(&id)?;
        let issued = ca
            .issue_device(&id, days)
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        let thumb = thumbprint(&issued.der);
        let update = DeviceUpdate {
            thumbprint: Some(thumb.clone()),
            ..DeviceUpdate::default()
        };
        registry.update_device(&principal.actor(), &id, update)?;
        Ok((
            StatusCode::CREATED,
            Json(json!({
                "device": id,
                "thumbprint": thumb,
                "not_after": issued.not_after,
                "certificate": issued.cert_pem,
                "private_key": issued.key_pem,
                "ca_certificate": ca.cert_pem(),
            })),
        ))
    })
    .await
    .map_err(ApiError::from_join)?
}

/// Writes an issued certificate (the endpoint's JSON answer) as `out/ID.pem`, `out/ID.key`
/// (mode 0600) and `out/ca.pem`, then prints the paths (or the thumbprint and paths as JSON).
pub fn write_files(
    issued: &Value,
    id: &str,
    out: &std::path::Path,
    json: bool,
) -> anyhow::Result<()> {
    use anyhow::Context;
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let field = |k: &str| {
        issued[k]
            .as_str()
            .with_context(|| format!("the server's answer has no '{k}'"))
    };
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let files = [
        (out.join(format!("{id}.pem")), field("certificate")?, 0o644),
        (out.join(format!("{id}.key")), field("private_key")?, 0o600),
        (out.join("ca.pem"), field("ca_certificate")?, 0o644),
    ];
    for (path, text, mode) in &files {
        let _ = std::fs::remove_file(path);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(*mode)
            .open(path)
            .with_context(|| format!("cannot write {}", path.display()))?;
        f.write_all(text.as_bytes())
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    let [cert, key, ca] = files.map(|(p, _, _)| p.display().to_string());
    if json {
        let v = json!({"device": id, "thumbprint": issued["thumbprint"], "not_after": issued["not_after"],
            "certificate": cert, "private_key": key, "ca_certificate": ca});
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
    } else {
        println!("certificate  {cert}\nprivate key  {key}\nCA           {ca}");
        println!(
            "thumbprint   {}",
            issued["thumbprint"].as_str().unwrap_or("")
        );
        println!(
            "e.g. mosquitto_pub --cafile {ca} --cert {cert} --key {key} -i {id} -p 8883 \\\n       -t devices/{id}/telemetry/env -m '{{\"temperature\": 21.5}}'"
        );
    }
    Ok(())
}

fn request_days(body: &[u8]) -> Result<u32, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(DEFAULT_DAYS);
    }
    let req: IssueRequest = serde_json::from_slice(body)
        .map_err(|e| ApiError::BadRequest(format!("invalid JSON body: {e}")))?;
    match req.days {
        None => Ok(DEFAULT_DAYS),
        Some(d) if (1..=MAX_DEVICE_DAYS).contains(&d) => Ok(d),
        Some(d) => Err(ApiError::BadRequest(format!(
            "days must be between 1 and {MAX_DEVICE_DAYS}, got {d}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days() {
        assert_eq!(request_days(b"").unwrap(), DEFAULT_DAYS);
        assert_eq!(request_days(b" {} ").unwrap(), DEFAULT_DAYS);
        assert_eq!(request_days(br#"{"days": 30}"#).unwrap(), 30);
        assert!(request_days(br#"{"days": 0}"#).is_err());
        assert!(request_days(br#"{"days": 99999}"#).is_err());
        assert!(request_days(br#"{"dayz": 3}"#).is_err());
        assert!(request_days(b"[").is_err());
    }
}
