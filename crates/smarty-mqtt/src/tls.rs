//! TLS for `mqtts://`: a rustls client configuration (the ring provider) trusting the system's
//! certificate authorities (found by `rustls-native-certs`, which honours `SSL_CERT_FILE` and
//! `SSL_CERT_DIR`), or those of a PEM file (`mqtt.ca_file`, for a broker with a self-signed
//! certificate).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// Why no TLS configuration could be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// The system has no certificate authority rustls can use.
    #[error(
        "no usable system certificate authorities for mqtts:// ({0}); install the \
         ca-certificates package, or set mqtt.ca_file or SSL_CERT_FILE"
    )]
    NoSystemRoots(String),
    /// The PEM file cannot be read, or holds no usable certificate.
    #[error("cannot use the certificates in {}: {reason}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// rustls refused the configuration.
    #[error("TLS: {0}")]
    Rustls(#[from] rustls::Error),
}

/// A rustls client configuration trusting `ca_file`, or the system's authorities.
///
/// # Errors
/// A [`TlsError`]: no system authorities, or a `ca_file` that cannot be read or holds none.
pub fn client_config(ca_file: Option<&Path>) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let file_error = |reason: String| TlsError::File {
                path: path.to_path_buf(),
                reason,
            };
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| file_error(e.to_string()))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| file_error(e.to_string()))?;
            let (_, unusable) = roots.add_parsable_certificates(certs);
            if roots.is_empty() {
                return Err(file_error(format!(
                    "no usable certificate ({unusable} unusable)"
                )));
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            // Bundles carry the odd certificate rustls cannot use; skip those.
            roots.add_parsable_certificates(found.certs);
            if roots.is_empty() {
                let why = found
                    .errors
                    .first()
                    .map_or_else(|| "none found".to_owned(), ToString::to_string);
                return Err(TlsError::NoSystemRoots(why));
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The suite's machine has the system's authorities (`scripts/test` installs the
    /// ca-certificates package).
    #[test]
    fn the_system_authorities_are_found() {
        client_config(None).expect("the system's certificate authorities");
    }

    #[test]
    fn a_ca_file_must_hold_a_certificate() {
        let missing = client_config(Some(Path::new("/nonexistent.pem"))).unwrap_err();
        assert!(
            missing.to_string().contains("/nonexistent.pem"),
            "{missing}"
        );
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let message = client_config(Some(&empty)).unwrap_err().to_string();
        assert!(message.contains("no usable certificate"), "{message}");
    }
}
