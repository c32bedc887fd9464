//! The TLS server configuration (rustls, ring provider): load the PEM certificate chain and key,
//! or, when neither file exists, generate a self-signed `localhost` certificate with rcgen and
//! write both files (key mode 0600), as the original did.
//!
//! Never: starts with only one of the two files, overwrites an existing file, prints key bytes.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Arc;

use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::SensorError;

fn tls_error(path: &Path, problem: impl std::fmt::Display) -> SensorError {
    SensorError::Tls(format!("{}: {problem}", path.display()))
}

fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), SensorError> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| tls_error(path, format_args!("cannot create: {e}")))?;
    file.write_all(bytes)
        .map_err(|e| tls_error(path, format_args!("cannot write: {e}")))
}

fn generate(cert_path: &Path, key_path: &Path) -> Result<(), SensorError> {
    let generated = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])
        .map_err(|e| SensorError::Tls(format!("cannot generate a self-signed certificate: {e}")))?;
    write_new(
        key_path,
        generated.signing_key.serialize_pem().as_bytes(),
        0o600,
    )?;
    write_new(cert_path, generated.cert.pem().as_bytes(), 0o644)
}

/// Loads (or first creates) the certificate and key and builds the server configuration.
pub(crate) fn server_config(
    cert_path: &Path,
    key_path: &Path,
) -> Result<Arc<ServerConfig>, SensorError> {
    match (cert_path.exists(), key_path.exists()) {
        (false, false) => generate(cert_path, key_path)?,
        (true, false) => return Err(tls_error(key_path, "key file missing (certificate exists)")),
        (false, true) => {
            return Err(tls_error(
                cert_path,
                "certificate file missing (key exists)",
            ));
        }
        (true, true) => {}
    }
    let cert_pem = fs::read(cert_path).map_err(|e| tls_error(cert_path, e))?;
    let key_pem = fs::read(key_path).map_err(|e| tls_error(key_path, e))?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| tls_error(cert_path, format_args!("invalid PEM certificate: {e}")))?;
    if certs.is_empty() {
        return Err(tls_error(cert_path, "no certificate in PEM file"));
    }
    let key = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| tls_error(key_path, format_args!("invalid PEM private key: {e}")))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| SensorError::Tls(format!("TLS protocol versions: {e}")))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| tls_error(cert_path, format_args!("certificate and key rejected: {e}")))?;
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn tls_generates_then_loads() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        server_config(&cert, &key).unwrap();
        assert_eq!(
            fs::metadata(&key).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let first = fs::read(&cert).unwrap();
        server_config(&cert, &key).unwrap();
        assert_eq!(fs::read(&cert).unwrap(), first, "existing files are reused");
    }

    #[test]
    fn tls_one_file_or_invalid_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        fs::write(&cert, "not a certificate").unwrap();
        let error = server_config(&cert, &key).unwrap_err().to_string();
        assert!(error.contains("key file missing"), "{error}");
        fs::write(&key, "not a key").unwrap();
        let error = server_config(&cert, &key).unwrap_err().to_string();
        assert!(!error.contains('\n'), "{error}");
    }
}
