//! TLS to the server with rustls, by `sslmode` as libpq reads it: `prefer` and `require`
//! encrypt but take any certificate (libpq does not check it either in these modes),
//! `verify-ca` checks the chain against the system's authorities and `sslrootcert`,
//! `verify-full` also the host name.

use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::SslMode;
use crate::StoreError;

/// The connector for `mode` (not [`SslMode::Disable`]).
pub(super) fn connector(
    mode: SslMode,
    root_cert: Option<String>,
) -> Result<MakeRustlsConnect, StoreError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| StoreError::Config(format!("TLS: {e}")))?;
    let config = match mode {
        SslMode::Prefer | SslMode::Require | SslMode::Disable => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Unchecked(provider)))
            .with_no_client_auth(),
        SslMode::VerifyCa | SslMode::VerifyFull => {
            let roots = Arc::new(roots(root_cert)?);
            let webpki = WebPkiServerVerifier::builder_with_provider(roots, provider)
                .build()
                .map_err(|e| StoreError::Config(format!("TLS: {e}")))?;
            let verifier: Arc<dyn ServerCertVerifier> = if mode == SslMode::VerifyCa {
                Arc::new(ChainOnly(webpki))
            } else {
                webpki
            };
            builder
                .dangerous()
                .with_custom_certificate_verifier(verifier)
                .with_no_client_auth()
        }
    };
    Ok(MakeRustlsConnect::new(config))
}

/// What is wrong with the server's certificate when `error` is a refused one, and what to do
/// (`root_cert`: the `sslrootcert` given); `None` for any other error.
pub(super) fn explain(error: &postgres::Error, root_cert: Option<&str>) -> Option<String> {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    let tls = loop {
        let e = cause?;
        // tokio-postgres-rustls hands rustls's error over inside an `io::Error`, whose
        // `source` skips it.
        let inner = e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<rustls::Error>());
        if let Some(tls) = inner.or_else(|| e.downcast_ref::<rustls::Error>()) {
            break tls;
        }
        cause = e.source();
    };
    let rustls::Error::InvalidCertificate(problem) = tls else {
        return None;
    };
    Some(match problem {
        // A bad signature: an authority of the same name signed it, but not this one.
        CertificateError::UnknownIssuer | CertificateError::BadSignature => match root_cert {
            Some(path) => format!(
                "the server's certificate is not trusted: it is signed neither by the \
                 authority in sslrootcert={path} nor by one of the system's (is it the \
                 authority that signed the server's certificate?)"
            ),
            None => "the server's certificate is not trusted: no authority of the system's \
                     signed it; name the one that did with sslrootcert=/path/to/ca.pem in the \
                     URL"
            .to_owned(),
        },
        CertificateError::NotValidForNameContext {
            expected,
            presented,
        } => {
            // webpki shows the names as `DnsName("db.example")` and `IpAddress(10.0.0.1)`.
            let names: Vec<&str> = presented
                .iter()
                .map(|name| {
                    name.split_once('(')
                        .and_then(|(_, rest)| rest.strip_suffix(')'))
                        .map_or(name.as_str(), |inner| inner.trim_matches('"'))
                })
                .collect();
            format!(
                "the server's certificate is not valid for {} (it names {}): connect by a \
                 name it lists, or use sslmode=verify-ca to check only who signed it",
                expected.to_str(),
                if names.is_empty() {
                    "no host".to_owned()
                } else {
                    names.join(", ")
                }
            )
        }
        CertificateError::NotValidForName => "the server's certificate is not valid for the \
                                              host of the URL: connect by a name it lists, \
                                              or use sslmode=verify-ca to check only who \
                                              signed it"
            .to_owned(),
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
            "the server's certificate has expired: the server needs a new one".to_owned()
        }
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
            "the server's certificate is not valid yet (is this machine's clock right?)".to_owned()
        }
        other => format!("the server's certificate is refused: {other}"),
    })
}

/// The system's authorities, and those of `sslrootcert` (a PEM file) when given.
fn roots(root_cert: Option<String>) -> Result<RootCertStore, StoreError> {
    let mut roots = RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        // A system certificate rustls cannot use is skipped, as every TLS client does.
        let _ = roots.add(cert);
    }
    if let Some(path) = root_cert {
        use rustls::pki_types::pem::PemObject;
        let certs = CertificateDer::pem_file_iter(&path)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|e| StoreError::Config(format!("sslrootcert={path}: {e}")))?;
        for cert in certs {
            roots
                .add(cert)
                .map_err(|e| StoreError::Config(format!("sslrootcert={path}: {e}")))?;
        }
    }
    Ok(roots)
}

/// `prefer` and `require`: any certificate, the handshake's signatures still checked.
#[derive(Debug)]
struct Unchecked(Arc<CryptoProvider>);

impl ServerCertVerifier for Unchecked {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `verify-ca`: the chain checked, the host name not.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    //! Each `sslmode` against a server of the test's own with TLS on (a certificate signed by
    //! an authority made for the test).

    use std::sync::Arc;

    use crate::config::{Location, StoreConfig};
    use crate::postgres::PostgresConfig;
    use crate::reading::Reading;
    use crate::test_postgres::{ServerTls, TestServer};
    use crate::{Store, StoreError};

    /// A password in every URL: no message may repeat it (the server trusts everyone).
    const PASSWORD: &str = "hunter2secret";

    /// The URL of database `postgres` on `server` by `host`, with `parameters`.
    fn url(server: &TestServer, host: &str, parameters: &str) -> String {
        format!(
            "postgres://postgres:{PASSWORD}@{host}:{}/postgres?{parameters}",
            server.port()
        )
    }

    fn open(url: &str) -> Result<Store, StoreError> {
        let config = PostgresConfig::parse(url)?;
        Store::open(&StoreConfig::in_location(Location::Postgres(config)))
    }

    /// Opens the store at `url`, writes three readings, reads them back.
    fn write_and_read(url: &str) {
        let store = open(url).unwrap_or_else(|e| panic!("{url}: {e}"));
        let mut writer = store.writer().unwrap();
        let start = 1_794_960_000;
        for i in 0..3 {
            let mut reading = Reading::empty(Arc::from("home"), start + 10 * i);
            reading.energy_import_wh = Some(1000 + i);
            writer.push(reading);
        }
        writer.flush().unwrap();
        let reader = store.reader().unwrap();
        let id = reader.meter_id("home").unwrap();
        let rows = reader.raw_rows(id, start, start + 60).unwrap();
        assert_eq!(rows.len(), 3, "{url}");
    }

    /// The message of a failed open, checked not to show the password.
    fn refused(url: &str) -> String {
        let message = match open(url) {
            Ok(_) => panic!("{url} connected"),
            Err(e) => e.to_string(),
        };
        assert!(!message.contains(PASSWORD), "{message}");
        message
    }

    #[test]
    fn a_server_taking_only_tls_checked_by_each_sslmode() {
        let server = TestServer::start_tls(ServerTls {
            names: &["localhost", "127.0.0.1"],
            only: true,
        });
        let ca = server.ca_file().display().to_string();
        for host in ["127.0.0.1", "localhost"] {
            write_and_read(&url(
                &server,
                host,
                &format!("sslmode=verify-full&sslrootcert={ca}"),
            ));
        }
        write_and_read(&url(
            &server,
            "127.0.0.1",
            &format!("sslmode=verify-ca&sslrootcert={ca}"),
        ));
        // Encrypted without checking the certificate, as libpq does.
        write_and_read(&url(&server, "127.0.0.1", "sslmode=require"));
        write_and_read(&url(&server, "127.0.0.1", "sslmode=prefer"));

        // An authority the client does not know, with and without the mode checking the
        // host name.
        for mode in ["verify-full", "verify-ca"] {
            let message = refused(&url(&server, "127.0.0.1", &format!("sslmode={mode}")));
            assert!(
                message.contains("certificate is not trusted")
                    && message.contains("sslrootcert=/path/to/ca.pem"),
                "{message}"
            );
        }
        // Another authority than the server's.
        let other = TestServer::start_tls(ServerTls {
            names: &["127.0.0.1"],
            only: true,
        });
        let wrong = other.ca_file().display().to_string();
        let message = refused(&url(
            &server,
            "127.0.0.1",
            &format!("sslmode=verify-full&sslrootcert={wrong}"),
        ));
        assert!(
            message.contains("certificate is not trusted")
                && message.contains(&format!("sslrootcert={wrong}")),
            "{message}"
        );
        // No TLS: PostgreSQL says no.
        let message = refused(&url(&server, "127.0.0.1", "sslmode=disable"));
        assert!(
            message.contains("no pg_hba.conf entry for host \"127.0.0.1\"")
                && message.contains("no encryption"),
            "{message}"
        );
    }

    #[test]
    fn a_certificate_for_another_name_passes_only_verify_ca() {
        let server = TestServer::start_tls(ServerTls {
            names: &["db.example"],
            only: false,
        });
        let ca = server.ca_file().display().to_string();
        write_and_read(&url(
            &server,
            "localhost",
            &format!("sslmode=verify-ca&sslrootcert={ca}"),
        ));
        let message = refused(&url(
            &server,
            "localhost",
            &format!("sslmode=verify-full&sslrootcert={ca}"),
        ));
        assert!(
            message.contains(
                "the server's certificate is not valid for localhost (it names db.example)"
            ) && message.contains("sslmode=verify-ca"),
            "{message}"
        );
        // Plain connections are still taken by this server.
        write_and_read(&url(&server, "127.0.0.1", "sslmode=disable"));
    }

    #[test]
    fn require_against_a_server_without_tls_is_refused() {
        let server = TestServer::start();
        let message = refused(&url(&server, "127.0.0.1", "sslmode=require"));
        assert!(message.contains("server does not support TLS"), "{message}");
        // `prefer` falls back to a plain connection.
        write_and_read(&url(&server, "127.0.0.1", "sslmode=prefer"));
    }
}
