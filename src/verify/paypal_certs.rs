//! PayPal's signing certificates: the one place in `verify` that does I/O.
//!
//! A PayPal webhook names the certificate it was signed with by URL (`PAYPAL-CERT-URL`). The URL
//! comes from the request, so it is fetched only when it lies under an allow-listed prefix (by
//! default `https` on PayPal's four API hosts under `/v1/notifications/certs/`), never following a
//! redirect, with a timeout and a size cap: hookd cannot be made to fetch anything else (SSRF).
//!
//! A fetched chain is trusted only if its first certificate chains to a configured trust root, is
//! within its validity period and has a single subject CN `messageverificationcerts….paypal.com`.
//! Verified chains are cached by URL (bounded, with expiry) and re-checked against the clock on
//! every use, so a certificate that expires while cached stops working at once.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::Url;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, TrustAnchor, UnixTime};
use webpki::{EndEntityCert, ExtendedKeyUsageValidator, KeyPurposeIdIter};

use super::VerifyError;

/// PayPal's live and sandbox API hosts, where its certificates are published.
pub const DEFAULT_PREFIXES: [&str; 4] = [
    "https://api.paypal.com/v1/notifications/certs/",
    "https://api-m.paypal.com/v1/notifications/certs/",
    "https://api.sandbox.paypal.com/v1/notifications/certs/",
    "https://api-m.sandbox.paypal.com/v1/notifications/certs/",
];

const CACHE_ENTRIES: usize = 32;
const CACHE_TTL: Duration = Duration::from_secs(3600);
const MAX_CERT_BYTES: usize = 64 * 1024;
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// A certificate URL prefix that cannot be allow-listed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PrefixError {
    #[error("{prefix:?} is not a URL ({source})")]
    Url {
        prefix: String,
        source: url::ParseError,
    },
    #[error("{0:?} is not an http(s) URL")]
    Scheme(String),
    #[error("{0:?} has credentials in it")]
    Credentials(String),
    #[error("{0:?} has a query or fragment")]
    Query(String),
    #[error("{0:?} has no host")]
    NoHost(String),
}

/// A trust-root bundle that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum RootsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not a PEM bundle: {source}")]
    Pem {
        path: String,
        source: rustls_pki_types::pem::Error,
    },
    #[error("{0} holds no PEM certificate")]
    Empty(String),
    #[error("certificate {index} in {path}: {source}")]
    Root {
        index: usize,
        path: String,
        source: webpki::Error,
    },
}

/// The certificate fetcher cannot be set up.
#[derive(Debug, thiserror::Error)]
#[error("cannot build the certificate HTTP client: {source}")]
pub struct CertSetupError {
    source: reqwest::Error,
}

/// One allow-listed place certificates may be fetched from: a scheme, host and port, and a path
/// prefix that ends with `/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertUrlPrefix {
    scheme: String,
    host: String,
    port: u16,
    path: String,
}

impl CertUrlPrefix {
    pub fn parse(prefix: &str) -> Result<Self, PrefixError> {
        let url = Url::parse(prefix.trim()).map_err(|source| PrefixError::Url {
            prefix: prefix.to_owned(),
            source,
        })?;
        if !matches!(url.scheme(), "https" | "http") {
            return Err(PrefixError::Scheme(prefix.to_owned()));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(PrefixError::Credentials(prefix.to_owned()));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(PrefixError::Query(prefix.to_owned()));
        }
        let (Some(host), Some(port)) = (url.host_str(), url.port_or_known_default()) else {
            return Err(PrefixError::NoHost(prefix.to_owned()));
        };
        let mut path = url.path().to_owned();
        // A prefix is a folder: `/certs` must not also allow `/certs-evil/...`.
        if !path.ends_with('/') {
            path.push('/');
        }
        Ok(Self {
            scheme: url.scheme().to_owned(),
            host: host.to_owned(),
            port,
            path,
        })
    }

    fn allows(&self, url: &Url) -> bool {
        url.scheme() == self.scheme
            && url.host_str() == Some(self.host.as_str())
            && url.port_or_known_default() == Some(self.port)
            && url.path().len() > self.path.len()
            && url.path().starts_with(&self.path)
    }
}

/// The certificate authorities a PayPal certificate must chain to.
#[derive(Debug, Clone)]
pub enum TrustRoots {
    /// Mozilla's public web roots, compiled in (`webpki-root-certs`).
    PublicWeb,
    /// Roots from a PEM bundle (`PAYPAL_TRUST_ROOTS`).
    Pem(Vec<CertificateDer<'static>>),
}

impl TrustRoots {
    /// Read a PEM bundle; every certificate in it must be usable as a root.
    pub fn from_pem_file(path: &Path) -> Result<Self, RootsError> {
        let shown = || path.display().to_string();
        let bytes = std::fs::read(path).map_err(|source| RootsError::Read {
            path: shown(),
            source,
        })?;
        let certs = CertificateDer::pem_slice_iter(&bytes)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|source| RootsError::Pem {
                path: shown(),
                source,
            })?;
        if certs.is_empty() {
            return Err(RootsError::Empty(shown()));
        }
        for (i, c) in certs.iter().enumerate() {
            webpki::anchor_from_trusted_cert(c).map_err(|source| RootsError::Root {
                index: i + 1,
                path: shown(),
                source,
            })?;
        }
        Ok(Self::Pem(certs))
    }

    fn anchors(&self) -> Vec<TrustAnchor<'static>> {
        let certs: &[CertificateDer<'_>] = match self {
            Self::PublicWeb => webpki_root_certs::TLS_SERVER_ROOT_CERTS,
            Self::Pem(certs) => certs,
        };
        certs
            .iter()
            .filter_map(|c| webpki::anchor_from_trusted_cert(c).ok())
            .map(|a| a.to_owned())
            .collect()
    }
}

/// Extended key usage is not what makes a PayPal certificate: the trust root and the CN are.
/// PayPal's SDKs never checked it, so neither does hookd.
struct AnyUsage;

impl ExtendedKeyUsageValidator for AnyUsage {
    fn validate(&self, _: KeyPurposeIdIter<'_, '_>) -> Result<(), webpki::Error> {
        Ok(())
    }
}

/// A chain as fetched: the signing certificate first, then intermediates.
pub type Chain = Arc<Vec<CertificateDer<'static>>>;

struct Cached {
    chain: Chain,
    expires: Instant,
}

/// Fetches, checks and caches PayPal signing certificates.
pub struct CertStore {
    prefixes: Vec<CertUrlPrefix>,
    anchors: Vec<TrustAnchor<'static>>,
    http: reqwest::Client,
    cache: Mutex<HashMap<String, Cached>>,
}

impl CertStore {
    pub fn new(prefixes: Vec<CertUrlPrefix>, roots: &TrustRoots) -> Result<Self, CertSetupError> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(FETCH_TIMEOUT)
            .connect_timeout(FETCH_TIMEOUT)
            .build()
            .map_err(|source| CertSetupError { source })?;
        Ok(Self {
            prefixes,
            anchors: roots.anchors(),
            http,
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// The URL, parsed and normalised, if it is under an allow-listed prefix.
    pub fn allowed(&self, raw: &str) -> Option<Url> {
        let url = Url::parse(raw).ok()?;
        let clean = url.username().is_empty()
            && url.password().is_none()
            && url.query().is_none()
            && url.fragment().is_none()
            // Encoded dots or slashes could be read as `..` or `/` by the server.
            && !url.path().to_ascii_lowercase().contains("%2")
            && !url.path().to_ascii_lowercase().contains("%5c");
        (clean && self.prefixes.iter().any(|p| p.allows(&url))).then_some(url)
    }

    /// The chain at `url` (allow-listed by the caller), checked for `now_unix`.
    pub async fn chain(&self, url: &Url, now_unix: i64) -> Result<Chain, VerifyError> {
        if let Some(chain) = self.cached(url.as_str()) {
            check_chain(&chain, &self.anchors, now_unix)?;
            return Ok(chain);
        }
        let chain = Arc::new(self.fetch(url).await?);
        check_chain(&chain, &self.anchors, now_unix)?;
        self.remember(url.as_str(), chain.clone());
        Ok(chain)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Cached>> {
        // The map is always consistent between statements, so a panic elsewhere cannot poison it.
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn cached(&self, url: &str) -> Option<Chain> {
        self.lock()
            .get(url)
            .filter(|c| c.expires > Instant::now())
            .map(|c| c.chain.clone())
    }

    fn remember(&self, url: &str, chain: Chain) {
        let now = Instant::now();
        let mut cache = self.lock();
        cache.retain(|_, c| c.expires > now);
        if cache.len() >= CACHE_ENTRIES
            && let Some(oldest) = cache
                .iter()
                .min_by_key(|(_, c)| c.expires)
                .map(|(k, _)| k.clone())
        {
            cache.remove(&oldest);
        }
        cache.insert(
            url.to_owned(),
            Cached {
                chain,
                expires: now + CACHE_TTL,
            },
        );
    }

    /// Put a chain in the cache as if it had been fetched.
    #[cfg(test)]
    pub(crate) fn preload(&self, url: &str, chain: Vec<CertificateDer<'static>>) {
        self.remember(url, Arc::new(chain));
    }

    async fn fetch(&self, url: &Url) -> Result<Vec<CertificateDer<'static>>, VerifyError> {
        let unavailable =
            |e: reqwest::Error| VerifyError::CertUnavailable(e.without_url().to_string());
        let mut resp = self
            .http
            .get(url.clone())
            .send()
            .await
            .map_err(unavailable)?;
        let status = resp.status();
        if status.is_server_error() {
            return Err(VerifyError::CertUnavailable(format!("HTTP {status}")));
        }
        if !status.is_success() {
            return Err(VerifyError::InvalidCert(format!(
                "the certificate URL answered HTTP {status}"
            )));
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(unavailable)? {
            if body.len() + chunk.len() > MAX_CERT_BYTES {
                return Err(VerifyError::InvalidCert(format!(
                    "the certificate is larger than {MAX_CERT_BYTES} bytes"
                )));
            }
            body.extend_from_slice(&chunk);
        }
        let chain = CertificateDer::pem_slice_iter(&body)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| VerifyError::InvalidCert(format!("not PEM: {e}")))?;
        if chain.is_empty() {
            return Err(VerifyError::InvalidCert("no PEM certificate".into()));
        }
        Ok(chain)
    }
}

/// The rules a PayPal signing chain must meet at `now_unix`.
pub(crate) fn check_chain(
    chain: &[CertificateDer<'_>],
    anchors: &[TrustAnchor<'_>],
    now_unix: i64,
) -> Result<(), VerifyError> {
    let invalid = |what: &str, e: webpki::Error| VerifyError::InvalidCert(format!("{what}: {e}"));
    let (leaf, intermediates) = chain
        .split_first()
        .ok_or_else(|| VerifyError::InvalidCert("no certificate".into()))?;
    let ee = EndEntityCert::try_from(leaf).map_err(|e| invalid("unreadable", e))?;
    let time = UnixTime::since_unix_epoch(Duration::from_secs(now_unix.max(0).unsigned_abs()));
    ee.verify_for_usage(
        webpki::ALL_VERIFICATION_ALGS,
        anchors,
        intermediates,
        time,
        AnyUsage,
        None,
        None,
    )
    .map_err(|e| invalid("not trusted", e))?;
    match subject_cn(ee.subject()) {
        Some(cn) if is_paypal_cn(&cn) => Ok(()),
        Some(cn) => Err(VerifyError::InvalidCert(format!(
            "subject CN {:?} is not PayPal's message verification name",
            cn.chars().take(80).collect::<String>()
        ))),
        None => Err(VerifyError::InvalidCert(
            "the subject has no single common name".into(),
        )),
    }
}

/// `messageverificationcerts.paypal.com`, `messageverificationcerts.sandbox.paypal.com`.
pub(crate) fn is_paypal_cn(cn: &str) -> bool {
    let cn = cn.to_ascii_lowercase();
    cn.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
        && cn.starts_with("messageverificationcerts")
        && cn.ends_with(".paypal.com")
}

/// One DER element: tag, contents, and what follows. Definite lengths only, as DER requires.
fn der_next(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let (bytes, after) = rest.split_at(n);
        rest = after;
        bytes
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b))
    };
    if rest.len() < len {
        return None;
    }
    let (contents, after) = rest.split_at(len);
    Some((tag, contents, after))
}

/// The subject's common name, if it has exactly one. `subject` is the contents of the Name
/// SEQUENCE (a run of RDN SETs), as webpki hands it out.
pub(crate) fn subject_cn(subject: &[u8]) -> Option<String> {
    const SET: u8 = 0x31;
    const SEQUENCE: u8 = 0x30;
    const OID: u8 = 0x06;
    const OID_COMMON_NAME: &[u8] = &[0x55, 0x04, 0x03];
    const STRINGS: [u8; 3] = [0x0c, 0x13, 0x16]; // UTF8String, PrintableString, IA5String
    let mut found = Vec::new();
    let mut rdns = subject;
    while !rdns.is_empty() {
        let (tag, mut attributes, rest) = der_next(rdns)?;
        if tag != SET {
            return None;
        }
        rdns = rest;
        while !attributes.is_empty() {
            let (tag, attribute, rest) = der_next(attributes)?;
            attributes = rest;
            let (oid_tag, oid, value) = der_next(attribute)?;
            if tag != SEQUENCE || oid_tag != OID {
                return None;
            }
            if oid == OID_COMMON_NAME {
                let (value_tag, text, trailing) = der_next(value)?;
                if !STRINGS.contains(&value_tag) || !trailing.is_empty() {
                    return None;
                }
                found.push(std::str::from_utf8(text).ok()?.to_owned());
            }
        }
    }
    (found.len() == 1).then(|| found.remove(0))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn store(prefixes: &[&str]) -> CertStore {
        let prefixes = prefixes
            .iter()
            .map(|p| CertUrlPrefix::parse(p).unwrap())
            .collect();
        CertStore::new(prefixes, &TrustRoots::Pem(Vec::new())).unwrap()
    }

    #[test]
    fn default_allow_list() {
        let s = store(&DEFAULT_PREFIXES);
        for ok in [
            "https://api.paypal.com/v1/notifications/certs/CERT-360caa42-fca2a594-ad47cb8d",
            "https://api-m.sandbox.paypal.com/v1/notifications/certs/CERT-1",
            "https://API.PAYPAL.COM:443/v1/notifications/certs/CERT-1",
        ] {
            assert!(s.allowed(ok).is_some(), "{ok}");
        }
        for bad in [
            "http://api.paypal.com/v1/notifications/certs/CERT-1",
            "https://api.paypal.com:8443/v1/notifications/certs/CERT-1",
            "https://api.paypal.com.evil.com/v1/notifications/certs/CERT-1",
            "https://evil.com/v1/notifications/certs/CERT-1",
            "https://api.paypal.com@evil.com/v1/notifications/certs/CERT-1",
            "https://user@api.paypal.com/v1/notifications/certs/CERT-1",
            "https://api.paypal.com/v1/notifications/certs/",
            "https://api.paypal.com/v1/notifications/certs/../../oauth2/token",
            "https://api.paypal.com/v1/notifications/certs/%2e%2e/%2e%2e/x",
            "https://api.paypal.com/v1/notifications/certs/a%2fb",
            "https://api.paypal.com/v1/notifications/certsX/CERT-1",
            "https://api.paypal.com/v1/notifications/certs/CERT-1?x=1",
            "https://api.paypal.com/v1/notifications/certs/CERT-1#x",
            "https://169.254.169.254/latest/meta-data/",
            "file:///etc/passwd",
            "not a url",
            "",
        ] {
            assert!(s.allowed(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn prefixes_are_checked() {
        assert!(CertUrlPrefix::parse("ftp://x/").is_err());
        assert!(CertUrlPrefix::parse("https://u:p@x/").is_err());
        assert!(CertUrlPrefix::parse("https://x/?a=1").is_err());
        assert!(CertUrlPrefix::parse("nope").is_err());
        let s = store(&["http://127.0.0.1:8080/certs"]);
        assert!(s.allowed("http://127.0.0.1:8080/certs/a.pem").is_some());
        assert!(
            s.allowed("http://127.0.0.1:8080/certs-evil/a.pem")
                .is_none()
        );
        assert!(s.allowed("http://127.0.0.1:8081/certs/a.pem").is_none());
    }

    #[test]
    fn common_names() {
        assert!(is_paypal_cn("messageverificationcerts.paypal.com"));
        assert!(is_paypal_cn("messageverificationcerts.sandbox.paypal.com"));
        assert!(is_paypal_cn("MessageVerificationCerts.PayPal.com"));
        for bad in [
            "paypal.com",
            "messageverificationcerts.paypal.com.evil.com",
            "evil.messageverificationcerts.paypal.com",
            "messageverificationcerts.evil.com",
            "messageverificationcerts\0.paypal.com",
            "messageverificationcerts paypal.com",
        ] {
            assert!(!is_paypal_cn(bad), "{bad:?}");
        }
    }

    #[test]
    fn subject_cn_reads_der() {
        // SET { SEQUENCE { OID 2.5.4.6 (C), PrintableString "US" } },
        // SET { SEQUENCE { OID 2.5.4.3 (CN), UTF8String "a.paypal.com" } }
        let mut name = vec![
            0x31, 0x0b, 0x30, 0x09, 0x06, 0x03, 0x55, 0x04, 0x06, 0x13, 0x02,
        ];
        name.extend_from_slice(b"US");
        name.extend_from_slice(&[
            0x31, 0x15, 0x30, 0x13, 0x06, 0x03, 0x55, 0x04, 0x03, 0x0c, 0x0c,
        ]);
        name.extend_from_slice(b"a.paypal.com");
        assert_eq!(subject_cn(&name).as_deref(), Some("a.paypal.com"));
        // Two CNs: ambiguous, refused.
        let twice = [&name[13..], &name[13..]].concat();
        assert_eq!(subject_cn(&twice), None);
        assert_eq!(subject_cn(&name[..name.len() - 1]), None);
        assert_eq!(subject_cn(&name[..13]), None);
    }

    static DEFAULT_STORE: std::sync::LazyLock<CertStore> =
        std::sync::LazyLock::new(|| store(&DEFAULT_PREFIXES));

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]
        #[test]
        fn der_and_names_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..96), s in ".{0,80}") {
            let _ = subject_cn(&bytes);
            let _ = der_next(&bytes);
            let _ = is_paypal_cn(&s);
            let _ = CertUrlPrefix::parse(&s);
            let _ = DEFAULT_STORE.allowed(&s);
            let _ = check_chain(&[CertificateDer::from(bytes)], &[], 0);
        }
    }
}
