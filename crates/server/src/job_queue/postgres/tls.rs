//! TLS to PostgreSQL with rustls: the server's certificate is checked against the
//! webpki roots plus the CA certificates in `$PGSSLROOTCERT` (libpq's variable, a PEM
//! file), so a private CA works as with psql. Whether TLS is used follows the URL's
//! `sslmode` as libpq does: `prefer` (the default) uses it when the server offers it,
//! `require` refuses a server without it, `disable` never uses it.

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use tokio_postgres_rustls::MakeRustlsConnect;

/// The connector every connection uses; the error says what is wrong with the CA file.
pub fn connector() -> Result<MakeRustlsConnect, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = std::env::var_os("PGSSLROOTCERT") {
        let shown = std::path::Path::new(&path).display().to_string();
        let certificates = CertificateDer::pem_file_iter(&path)
            .map_err(|error| format!("cannot read PGSSLROOTCERT {shown}: {error}"))?;
        let mut added = 0;
        for certificate in certificates {
            let certificate = certificate
                .map_err(|error| format!("PGSSLROOTCERT {shown} is not PEM: {error}"))?;
            roots
                .add(certificate)
                .map_err(|error| format!("PGSSLROOTCERT {shown}: {error}"))?;
            added += 1;
        }
        if added == 0 {
            return Err(format!("PGSSLROOTCERT {shown} holds no certificate"));
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| format!("TLS settings: {error}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}
