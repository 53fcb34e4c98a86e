//! TLS to PostgreSQL with rustls, as libpq's `sslmode` asks: `prefer` and
//! `require` encrypt without checking the certificate, `verify-ca` checks
//! its chain against `sslrootcert` (or the built-in Mozilla roots),
//! `verify-full` the chain and the host name. The client library asks for
//! TLS itself (its own `prefer` or `require`); this is the connector it
//! hands the socket to, with the certificate's hash for SCRAM channel
//! binding (`tls-server-end-point`, RFC 5929), so that a password login
//! over an unchecked certificate cannot be relayed.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use postgres::Socket;
use postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect, TlsStream};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use sha2::{Digest, Sha256, Sha384, Sha512};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::config::{PostgresUrl, SslMode};
use crate::error::{Error, Result};

/// The connector for `url`'s `sslmode` (never used with `disable`).
///
/// # Errors
/// [`Error::Config`] when the `sslrootcert` file cannot be read or holds
/// no certificate.
pub(crate) fn connector(url: &PostgresUrl) -> Result<RustlsConnector> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let check = match url.ssl_mode() {
        SslMode::VerifyCa | SslMode::VerifyFull => {
            let roots = roots(url)?;
            let webpki = WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
                .build()
                .map_err(|e| Error::Config(format!("database: {url}: {e}")))?;
            Check::Chain {
                webpki,
                host_name: url.ssl_mode() == SslMode::VerifyFull,
            }
        }
        _ => Check::Nothing,
    };
    let verifier = Verifier {
        check,
        algorithms: provider.signature_verification_algorithms,
    };
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Config(format!("database: TLS: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    Ok(RustlsConnector {
        config: Arc::new(config),
    })
}

/// The CA certificates of `sslrootcert`, or the built-in Mozilla roots.
fn roots(url: &PostgresUrl) -> Result<Arc<RootCertStore>> {
    let Some(path) = url.root_cert() else {
        return Ok(Arc::new(RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        }));
    };
    let named =
        |why: String| Error::Config(format!("database: sslrootcert={}: {why}", path.display()));
    let pem = std::fs::read(path).map_err(|e| named(format!("cannot read: {e}")))?;
    let mut store = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| named(format!("not PEM: {e}")))?;
        store
            .add(cert)
            .map_err(|e| named(format!("not a CA certificate: {e}")))?;
    }
    if store.is_empty() {
        return Err(named(
            "holds no certificate (PEM: -----BEGIN CERTIFICATE-----)".into(),
        ));
    }
    Ok(Arc::new(store))
}

/// What is checked of the server's certificate.
#[derive(Debug)]
enum Check {
    /// Nothing (`prefer`, `require`): encryption only.
    Nothing,
    /// Its chain up to a root (`verify-ca`), and its host name
    /// (`verify-full`).
    Chain {
        webpki: Arc<WebPkiServerVerifier>,
        host_name: bool,
    },
}

#[derive(Debug)]
struct Verifier {
    check: Check,
    /// The handshake's signatures are checked whatever the mode.
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        let Check::Chain { webpki, host_name } = &self.check else {
            return Ok(ServerCertVerified::assertion());
        };
        match webpki.verify_server_cert(end_entity, intermediates, server_name, ocsp, now) {
            // The name is checked after the chain: a wrong name means a good chain.
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if !host_name => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// Makes a TLS connection for each connection the client library opens.
#[derive(Clone)]
pub(crate) struct RustlsConnector {
    config: Arc<ClientConfig>,
}

impl MakeTlsConnect<Socket> for RustlsConnector {
    type Stream = RustlsStream;
    type TlsConnect = RustlsConnect;
    type Error = rustls::pki_types::InvalidDnsNameError;

    fn make_tls_connect(&mut self, host: &str) -> std::result::Result<RustlsConnect, Self::Error> {
        Ok(RustlsConnect {
            connector: tokio_rustls::TlsConnector::from(self.config.clone()),
            // An address (`127.0.0.1`) is checked against the certificate's
            // IP addresses, a name against its DNS names.
            name: ServerName::try_from(host.to_owned())?,
        })
    }
}

/// One TLS handshake on a connection's socket.
pub(crate) struct RustlsConnect {
    connector: tokio_rustls::TlsConnector,
    name: ServerName<'static>,
}

impl TlsConnect<Socket> for RustlsConnect {
    type Stream = RustlsStream;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<RustlsStream>> + Send>>;

    fn connect(self, socket: Socket) -> Self::Future {
        let handshake = self.connector.connect(self.name, socket);
        Box::pin(async move { handshake.await.map(RustlsStream) })
    }
}

/// A TLS connection to PostgreSQL.
pub(crate) struct RustlsStream(tokio_rustls::client::TlsStream<Socket>);

impl TlsStream for RustlsStream {
    fn channel_binding(&self) -> ChannelBinding {
        let (_, session) = self.0.get_ref();
        session
            .peer_certificates()
            .and_then(|certs| certs.first())
            .and_then(|cert| end_point_hash(cert))
            .map_or_else(ChannelBinding::none, ChannelBinding::tls_server_end_point)
    }
}

impl AsyncRead for RustlsStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for RustlsStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// The `tls-server-end-point` channel binding of a certificate (RFC 5929
/// §4.1): its hash with the hash function of its signature algorithm,
/// SHA-256 for MD5 and SHA-1. `None` for an algorithm without one (Ed25519,
/// RSA-PSS): the login then goes without channel binding, as the server
/// does not offer it either.
fn end_point_hash(cert: &[u8]) -> Option<Vec<u8>> {
    // Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm
    // AlgorithmIdentifier ::= SEQUENCE { algorithm OID, … }, signature }
    let (0x30, certificate, _) = der(cert)? else {
        return None;
    };
    let (0x30, _, rest) = der(certificate)? else {
        return None;
    };
    let (0x30, algorithm, _) = der(rest)? else {
        return None;
    };
    let (0x06, oid, _) = der(algorithm)? else {
        return None;
    };
    const RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01]; // 1.2.840.113549.1.1
    const ECDSA_SHA1: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x01]; // 1.2.840.10045.4.1
    const ECDSA_SHA2: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03]; // 1.2.840.10045.4.3
    enum Hash {
        Sha256,
        Sha384,
        Sha512,
    }
    let hash = match oid {
        [prefix @ .., n] if prefix == RSA => match n {
            0x04 | 0x05 | 0x0b => Hash::Sha256, // md5, sha1, sha256 WithRSAEncryption
            0x0c => Hash::Sha384,
            0x0d => Hash::Sha512,
            _ => return None,
        },
        _ if oid == ECDSA_SHA1 => Hash::Sha256,
        [prefix @ .., n] if prefix == ECDSA_SHA2 => match n {
            0x02 => Hash::Sha256,
            0x03 => Hash::Sha384,
            0x04 => Hash::Sha512,
            _ => return None,
        },
        _ => return None,
    };
    Some(match hash {
        Hash::Sha256 => Sha256::digest(cert).to_vec(),
        Hash::Sha384 => Sha384::digest(cert).to_vec(),
        Hash::Sha512 => Sha512::digest(cert).to_vec(),
    })
}

/// The first DER element of `input`: its tag, its contents and what
/// follows it.
fn der(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let (len, rest) = rest.split_at(n);
        (
            len.iter().fold(0, |acc, b| acc << 8 | usize::from(*b)),
            rest,
        )
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

/// What went wrong in a TLS handshake, if `e` is one: the server refused
/// TLS, or its certificate did not pass. Either is final: waiting would
/// not change it.
pub(crate) fn failure(e: &postgres::Error, url: &PostgresUrl) -> Option<Error> {
    let mode = url.ssl_mode().as_str();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        if cause.to_string() == "server does not support TLS" {
            return Some(Error::Storage(format!(
                "PostgreSQL at {url} does not accept TLS connections (sslmode={mode}); \
                 turn ssl on in its postgresql.conf, or use sslmode=prefer or disable"
            )));
        }
        let tls = cause
            .downcast_ref::<io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<rustls::Error>());
        if let Some(rustls::Error::InvalidCertificate(why)) = tls {
            let roots = match url.root_cert() {
                Some(path) => format!("sslrootcert={}", path.display()),
                None => "the built-in roots (no sslrootcert)".into(),
            };
            let what = match why {
                CertificateError::UnknownIssuer => "its issuer is not among the roots",
                CertificateError::NotValidForName
                | CertificateError::NotValidForNameContext { .. } => {
                    "it is not for this host (connect by a name or address it has, or use verify-ca)"
                }
                CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                    "it has expired"
                }
                CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                    "it is not valid yet"
                }
                _ => "it was refused",
            };
            return Some(Error::Storage(format!(
                "PostgreSQL at {url}: TLS certificate verification failed (sslmode={mode}, \
                 against {roots}): {what} ({why:?})"
            )));
        }
        source = cause.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_channel_binding_hash_follows_the_certificate_signature() {
        // The test certificate is signed with ecdsa-with-SHA256.
        let pem = include_bytes!("../../../tests/tls/server.pem");
        let cert = CertificateDer::from_pem_slice(pem).unwrap();
        assert_eq!(
            end_point_hash(&cert),
            Some(Sha256::digest(cert.as_ref()).to_vec())
        );
        let ca =
            CertificateDer::from_pem_slice(include_bytes!("../../../tests/tls/ca.pem")).unwrap();
        assert_eq!(end_point_hash(&ca).map(|h| h.len()), Some(32));
        // Made-up certificates: an empty TBS and each algorithm.
        let cert = |oid: &[u8]| {
            let alg = [&[0x06, oid.len() as u8][..], oid].concat();
            let body = [
                &[0x30, 0x00, 0x30, alg.len() as u8][..],
                &alg,
                &[0x03, 0x01, 0x00],
            ]
            .concat();
            [&[0x30, body.len() as u8][..], &body].concat()
        };
        let rsa = |n: u8| cert(&[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, n]);
        let ecdsa = |n: u8| cert(&[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, n]);
        let len = |c: Vec<u8>| end_point_hash(&c).map(|h| h.len());
        assert_eq!(len(rsa(0x05)), Some(32), "SHA-1 becomes SHA-256");
        assert_eq!(len(rsa(0x0b)), Some(32));
        assert_eq!(len(rsa(0x0c)), Some(48));
        assert_eq!(len(rsa(0x0d)), Some(64));
        assert_eq!(len(rsa(0x0a)), None, "RSA-PSS: none");
        assert_eq!(len(ecdsa(0x03)), Some(48));
        assert_eq!(len(ecdsa(0x04)), Some(64));
        assert_eq!(len(cert(&[0x2b, 0x65, 0x70])), None, "Ed25519: none");
        assert_eq!(end_point_hash(&[0x30, 0x05, 0x30]), None, "truncated");
        assert_eq!(end_point_hash(&[]), None);
    }

    #[test]
    fn a_root_file_without_a_certificate_is_refused_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "no PEM here\n").unwrap();
        let url = |root: &std::path::Path| {
            crate::config::parse_database(&format!(
                "postgres://u:pw@127.0.0.1/d?sslmode=verify-full&sslrootcert={}",
                root.display()
            ))
            .map(|db| match db {
                crate::config::Database::Postgres(url) => url,
                other => panic!("{other:?}"),
            })
            .unwrap()
        };
        let e = connector(&url(&empty)).err().unwrap().to_string();
        assert!(
            e.contains("empty.pem") && e.contains("holds no certificate"),
            "{e}"
        );
        let e = connector(&url(&dir.path().join("missing.pem")))
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("missing.pem") && e.contains("cannot read"),
            "{e}"
        );
        assert!(!e.contains("pw@"), "{e}");
        let ca = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/tls/ca.pem");
        assert!(connector(&url(ca.as_ref())).is_ok());
    }
}
