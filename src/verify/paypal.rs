//! PayPal: an RSA PKCS#1 v1.5 SHA-256 signature (`PAYPAL-TRANSMISSION-SIG`, base64) with the key
//! of the certificate at `PAYPAL-CERT-URL`, over
//! `<PAYPAL-TRANSMISSION-ID>|<PAYPAL-TRANSMISSION-TIME>|<webhook id>|<CRC-32 of the raw body>`,
//! the CRC as an unsigned decimal. The webhook id is this endpoint's own id at PayPal (config), so
//! a signature made for another PayPal customer's webhook never verifies here. Certificates are
//! fetched and checked by [`super::paypal_certs`]. The transmission time is signed, and must be
//! within the window. Body `id` (`WH-...`) is the idempotency key, `event_type` the event type.

use crc::{CRC_32_ISO_HDLC, Crc};
use serde::Deserialize;
use webpki::EndEntityCert;

use super::paypal_certs::{self, CertSetupError, CertStore, CertUrlPrefix, TrustRoots};
use super::section::{Section, SettingError};
use super::{
    RawRequest, Secrets, VerifiedWebhook, Verifier, VerifyError, body_digest_key, check_window,
    decode_base64, parse_json, required_header, signature_header,
};

const SIG: &str = "paypal-transmission-sig";

/// Everything the PayPal scheme is configured with.
#[derive(Debug, Clone)]
pub struct PaypalSettings {
    /// This endpoint's webhook id(s) at PayPal: part of the signed string.
    pub webhook_ids: Secrets,
    pub tolerance_secs: u64,
    pub cert_url_prefixes: Vec<CertUrlPrefix>,
    pub trust_roots: TrustRoots,
}

pub struct PaypalVerifier {
    webhook_ids: Secrets,
    tolerance_secs: u64,
    certs: CertStore,
}

/// The scheme's settings from a provider's section: the allow-listed certificate URL prefixes
/// (PayPal's own by default) and the trust roots (the public web's by default).
pub(super) fn settings(
    s: &Section<'_>,
    webhook_ids: Secrets,
) -> Result<PaypalSettings, SettingError> {
    let prefixes_setting = format!("{} (cert_url_prefixes)", s.var("CERT_URL_PREFIXES"));
    let prefixes = s
        .list("CERT_URL_PREFIXES", "cert_url_prefixes")?
        .unwrap_or_else(|| {
            paypal_certs::DEFAULT_PREFIXES
                .iter()
                .map(|p| p.to_string())
                .collect()
        });
    let cert_url_prefixes = prefixes
        .iter()
        .filter(|p| !p.is_empty())
        .map(|p| CertUrlPrefix::parse(p))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| SettingError::CertPrefix {
            setting: prefixes_setting.clone(),
            source,
        })?;
    if cert_url_prefixes.is_empty() {
        return Err(SettingError::Empty {
            setting: prefixes_setting,
        });
    }
    let trust_roots = match s.path("TRUST_ROOTS", "trust_roots")? {
        Some(path) => {
            TrustRoots::from_pem_file(&path).map_err(|source| SettingError::TrustRoots {
                setting: format!("{} (trust_roots)", s.var("TRUST_ROOTS")),
                source,
            })?
        }
        None => TrustRoots::PublicWeb,
    };
    Ok(PaypalSettings {
        webhook_ids,
        tolerance_secs: s.tolerance()?,
        cert_url_prefixes,
        trust_roots,
    })
}

impl PaypalVerifier {
    pub fn new(settings: PaypalSettings) -> Result<Self, CertSetupError> {
        Ok(Self {
            certs: CertStore::new(settings.cert_url_prefixes, &settings.trust_roots)?,
            webhook_ids: settings.webhook_ids,
            tolerance_secs: settings.tolerance_secs,
        })
    }
}

/// IEEE CRC-32 (zlib's, Java's `CRC32`), the one PayPal puts in the signed string.
pub(crate) fn crc32(body: &[u8]) -> u32 {
    Crc::<u32>::new(&CRC_32_ISO_HDLC).checksum(body)
}

/// The transmission time, RFC 3339, as unix seconds.
pub(crate) fn parse_time(value: &str) -> Result<i64, VerifyError> {
    chrono::DateTime::parse_from_rfc3339(value)
        .map(|t| t.timestamp())
        .map_err(|_| VerifyError::MalformedTimestamp("PAYPAL-TRANSMISSION-TIME is not RFC 3339"))
}

pub(crate) fn parse_signature(value: &str) -> Result<Vec<u8>, VerifyError> {
    let sig =
        decode_base64(value).ok_or(VerifyError::MalformedSignature("signature is not base64"))?;
    // RSA keys of 2048 to 8192 bits: anything else cannot be a signature worth checking.
    if !(256..=1024).contains(&sig.len()) {
        return Err(VerifyError::MalformedSignature(
            "signature length is not that of an RSA key",
        ));
    }
    Ok(sig)
}

#[derive(Deserialize)]
struct PaypalEvent {
    id: Option<String>,
    event_type: Option<String>,
}

#[async_trait::async_trait]
impl Verifier for PaypalVerifier {
    async fn verify(
        &self,
        provider: &str,
        req: &RawRequest<'_>,
    ) -> Result<VerifiedWebhook, VerifyError> {
        let h = req.headers;
        let sig = signature_header(h, SIG, "PAYPAL-TRANSMISSION-SIG")?;
        let id = required_header(h, "paypal-transmission-id", "PAYPAL-TRANSMISSION-ID")?;
        let time = required_header(h, "paypal-transmission-time", "PAYPAL-TRANSMISSION-TIME")?;
        let cert_url = required_header(h, "paypal-cert-url", "PAYPAL-CERT-URL")?;
        let algo = required_header(h, "paypal-auth-algo", "PAYPAL-AUTH-ALGO")?;
        if !algo.eq_ignore_ascii_case("SHA256withRSA") {
            return Err(VerifyError::unsupported(algo));
        }
        let sig = parse_signature(sig)?;
        // Everything cheap first: a stale or foreign request never causes a fetch.
        check_window(parse_time(time)?, req.now_unix, self.tolerance_secs)?;
        let url = self
            .certs
            .allowed(cert_url)
            .ok_or(VerifyError::CertUrlNotAllowed)?;
        let chain = self.certs.chain(&url, req.now_unix).await?;
        let leaf = chain
            .first()
            .and_then(|c| EndEntityCert::try_from(c).ok())
            .ok_or_else(|| VerifyError::InvalidCert("unreadable".into()))?;
        let crc = crc32(req.body);
        let signed_by_us = self.webhook_ids.iter().any(|webhook_id| {
            let msg = format!("{id}|{time}|{}|{crc}", webhook_id.expose());
            leaf.verify_signature(
                webpki::aws_lc_rs::RSA_PKCS1_2048_8192_SHA256,
                msg.as_bytes(),
                &sig,
            )
            .is_ok()
        });
        if !signed_by_us {
            return Err(VerifyError::InvalidSignature);
        }
        let event: PaypalEvent = parse_json(req.body)?;
        let key = event.id.unwrap_or_else(|| body_digest_key(req.body));
        let event_type = event.event_type.unwrap_or_else(|| "unknown".to_owned());
        Ok(VerifiedWebhook::new(provider, key, event_type, req, &[SIG]))
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine;
    use proptest::prelude::*;
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
        SigningKey,
    };
    use rustls_pki_types::CertificateDer;

    use super::*;
    use crate::verify::tests::{headers, run};

    const CERT_URL: &str = "https://api.paypal.com/v1/notifications/certs/CERT-360caa42-test";
    const BODY: &str = r#"{"id":"WH-2WR32451HC0233532-67976317FL4543714","event_type":"PAYMENT.CAPTURE.COMPLETED","resource":{"id":"42311647XV020574X"}}"#;
    const NOW: i64 = 1_700_000_000;
    const TIME: &str = "2023-11-14T22:13:20Z";

    struct Pki {
        root: CertificateDer<'static>,
        chain: Vec<CertificateDer<'static>>,
        key: KeyPair,
    }

    /// A root CA, an intermediate, and a leaf with `cn` valid between the two years.
    fn pki(cn: &str, from: i32, to: i32) -> Pki {
        let ca = |name: &str| {
            let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
            p.distinguished_name.push(DnType::CommonName, name);
            p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            p.key_usages = vec![
                KeyUsagePurpose::KeyCertSign,
                KeyUsagePurpose::DigitalSignature,
            ];
            p
        };
        let root_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let root_params = ca("hookd test root");
        let root = root_params.self_signed(&root_key).unwrap();
        let root_issuer = Issuer::new(root_params, &root_key);
        let mid_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mid_params = ca("hookd test intermediate");
        let mid = mid_params.signed_by(&mid_key, &root_issuer).unwrap();
        let mid_issuer = Issuer::new(mid_params, &mid_key);
        let key =
            KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048).unwrap();
        let mut p = CertificateParams::new(vec![cn.to_owned()]).unwrap();
        p.distinguished_name.push(DnType::CommonName, cn);
        p.not_before = rcgen::date_time_ymd(from, 1, 1);
        p.not_after = rcgen::date_time_ymd(to, 1, 1);
        let leaf = p.signed_by(&key, &mid_issuer).unwrap();
        Pki {
            root: root.der().clone(),
            chain: vec![leaf.der().clone(), mid.der().clone()],
            key,
        }
    }

    fn verifier(pki: &Pki, webhook_ids: &[&str]) -> PaypalVerifier {
        let v = PaypalVerifier::new(PaypalSettings {
            webhook_ids: Secrets::new(webhook_ids.iter().copied()).unwrap(),
            tolerance_secs: 300,
            cert_url_prefixes: crate::verify::paypal_certs::DEFAULT_PREFIXES
                .iter()
                .map(|p| CertUrlPrefix::parse(p).unwrap())
                .collect(),
            trust_roots: TrustRoots::Pem(vec![pki.root.clone()]),
        })
        .unwrap();
        v.certs.preload(CERT_URL, pki.chain.clone());
        v
    }

    fn sign(pki: &Pki, webhook_id: &str, body: &str) -> String {
        let msg = format!(
            "3a5d8fc0-8307-11ee-9f6d-5b3ebc4c7f91|{TIME}|{webhook_id}|{}",
            crc32(body.as_bytes())
        );
        base64::engine::general_purpose::STANDARD.encode(pki.key.sign(msg.as_bytes()).unwrap())
    }

    fn request<'a>(sig: &'a str, cert_url: &'a str, algo: &'a str) -> Vec<(&'static str, &'a str)> {
        vec![
            (
                "paypal-transmission-id",
                "3a5d8fc0-8307-11ee-9f6d-5b3ebc4c7f91",
            ),
            ("paypal-transmission-time", TIME),
            ("paypal-transmission-sig", sig),
            ("paypal-cert-url", cert_url),
            ("paypal-auth-algo", algo),
        ]
    }

    #[test]
    fn crc_known_answer() {
        assert_eq!(
            crc32(br#"{"id":"evt_123","object":"event","type":"ping"}"#),
            2_168_057_469
        );
    }

    #[test]
    fn verifies_with_the_certificate_key() {
        let pki = pki("messageverificationcerts.paypal.com", 2020, 2030);
        let v = verifier(&pki, &["WEBHOOK_ID", "8PT597110X687430LKGECATA"]);
        let sig = sign(&pki, "8PT597110X687430LKGECATA", BODY);
        let h = headers(&request(&sig, CERT_URL, "SHA256withRSA"));
        let w = run(&v, &h, BODY, NOW).unwrap();
        assert_eq!(
            w.idempotency_key(),
            "WH-2WR32451HC0233532-67976317FL4543714"
        );
        assert_eq!(w.event_type(), "PAYMENT.CAPTURE.COMPLETED");
        assert_eq!(w.headers()[SIG], "[redacted]");
        let tampered = BODY.replace("42311647", "42311648");
        assert_eq!(
            run(&v, &h, &tampered, NOW).unwrap_err(),
            VerifyError::InvalidSignature
        );
        // Signed for another PayPal webhook: not ours.
        let other = verifier(&pki, &["WEBHOOK_ID"]);
        assert_eq!(
            run(&other, &h, BODY, NOW).unwrap_err(),
            VerifyError::InvalidSignature
        );
        for now in [NOW - 301, NOW + 301] {
            assert_eq!(
                run(&v, &h, BODY, now).unwrap_err().reason(),
                "timestamp_out_of_tolerance"
            );
        }
    }

    #[test]
    fn rejects_what_is_not_a_paypal_certificate() {
        let wrong_cn = pki("messageverificationcerts.evil.com", 2020, 2030);
        let v = verifier(&wrong_cn, &["W"]);
        let h = headers(&request(
            &sign(&wrong_cn, "W", BODY),
            CERT_URL,
            "SHA256withRSA",
        ));
        let e = run(&v, &h, BODY, NOW).unwrap_err();
        assert_eq!(e.reason(), "invalid_cert", "{e}");
        assert!(e.to_string().contains("subject CN"), "{e}");

        let expired = pki("messageverificationcerts.paypal.com", 2020, 2022);
        let v = verifier(&expired, &["W"]);
        let h = headers(&request(
            &sign(&expired, "W", BODY),
            CERT_URL,
            "SHA256withRSA",
        ));
        let e = run(&v, &h, BODY, NOW).unwrap_err();
        assert_eq!(e.reason(), "invalid_cert", "{e}");
        assert!(e.to_string().contains("Expired"), "{e}");

        // Chains to a root that is not configured.
        let good = pki("messageverificationcerts.paypal.com", 2020, 2030);
        let stranger = pki("messageverificationcerts.paypal.com", 2020, 2030);
        let v = verifier(&stranger, &["W"]);
        v.certs.preload(CERT_URL, good.chain.clone());
        let h = headers(&request(&sign(&good, "W", BODY), CERT_URL, "SHA256withRSA"));
        let e = run(&v, &h, BODY, NOW).unwrap_err();
        assert_eq!(e.reason(), "invalid_cert", "{e}");
        assert!(e.to_string().contains("not trusted"), "{e}");
    }

    #[test]
    fn header_checks_come_before_any_fetch() {
        let pki = pki("messageverificationcerts.paypal.com", 2020, 2030);
        let v = verifier(&pki, &["W"]);
        let sig = sign(&pki, "W", BODY);
        let check =
            |pairs: &[(&str, &str)]| run(&v, &headers(pairs), BODY, NOW).unwrap_err().reason();
        let evil = "https://169.254.169.254/v1/notifications/certs/x";
        assert_eq!(
            check(&request(&sig, evil, "SHA256withRSA")),
            "cert_url_not_allowed"
        );
        assert_eq!(
            check(&request(&sig, CERT_URL, "SHA1withRSA")),
            "unsupported_algorithm"
        );
        assert_eq!(
            check(&request("%%%", CERT_URL, "SHA256withRSA")),
            "malformed_signature"
        );
        assert_eq!(
            check(&request(&sig[..40], CERT_URL, "SHA256withRSA")),
            "malformed_signature"
        );
        let mut r = request(&sig, CERT_URL, "SHA256withRSA");
        r[1].1 = "yesterday";
        assert_eq!(check(&r), "malformed_timestamp");
        assert_eq!(check(&r[2..]), "missing_header");
        assert_eq!(check(&[]), "missing_signature");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn parsers_never_panic(s in ".{0,120}") {
            let _ = parse_time(&s);
            let _ = parse_signature(&s);
        }
    }
}
