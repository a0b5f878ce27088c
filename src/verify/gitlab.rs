//! GitLab: nothing is signed; the webhook's secret token comes back verbatim in `X-Gitlab-Token`.
//! It is compared through SHA-256 digests in constant time, so neither its contents nor its
//! length leak through timing. `Idempotency-Key` is stable across GitLab's retries (older GitLab:
//! `X-Gitlab-Event-UUID`); `X-Gitlab-Event` (`Push Hook`, ...) is the event type.

use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{
    RawRequest, Secrets, VerifiedWebhook, Verifier, VerifyError, body_digest_key, header_key,
    parse_json, signature_header,
};

const HEADER: &str = "x-gitlab-token";

pub struct GitlabVerifier {
    /// Digests of the configured tokens: compared in place of the tokens themselves.
    digests: Vec<[u8; 32]>,
}

impl GitlabVerifier {
    pub fn new(secrets: Secrets) -> Self {
        Self {
            digests: secrets
                .iter()
                .map(|s| Sha256::digest(s.expose().as_bytes()).into())
                .collect(),
        }
    }

    fn token_matches(&self, token: &[u8]) -> bool {
        let got: [u8; 32] = Sha256::digest(token).into();
        let mut matched = subtle::Choice::from(0);
        for d in &self.digests {
            matched |= d.ct_eq(&got);
        }
        matched.into()
    }
}

#[derive(Deserialize)]
struct GitlabBody {
    object_kind: Option<String>,
}

#[async_trait::async_trait]
impl Verifier for GitlabVerifier {
    async fn verify(
        &self,
        provider: &str,
        req: &RawRequest<'_>,
    ) -> Result<VerifiedWebhook, VerifyError> {
        let token = signature_header(req.headers, HEADER, "X-Gitlab-Token")?;
        if !self.token_matches(token.as_bytes()) {
            return Err(VerifyError::InvalidSignature);
        }
        let body: GitlabBody = parse_json(req.body)?;
        let key = header_key(req.headers, "idempotency-key")
            .or_else(|| header_key(req.headers, "x-gitlab-event-uuid"))
            .unwrap_or_else(|| body_digest_key(req.body));
        let event_type = header_key(req.headers, "x-gitlab-event")
            .or(body.object_kind)
            .unwrap_or_else(|| "unknown".to_owned());
        // The token is the secret itself: it must never reach the store.
        Ok(VerifiedWebhook::new(
            provider,
            key,
            event_type,
            req,
            &[HEADER],
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::tests::{headers, run};

    fn gitlab(secrets: &[&str]) -> GitlabVerifier {
        GitlabVerifier::new(Secrets::new(secrets.iter().copied()).unwrap())
    }

    #[test]
    fn token_keys_and_types() {
        let body = r#"{"object_kind":"push","ref":"refs/heads/main"}"#;
        let v = gitlab(&["old-token", "glpat-token"]);
        let h = headers(&[
            (HEADER, "glpat-token"),
            ("x-gitlab-event", "Push Hook"),
            ("idempotency-key", "a7c9ab43-1f21-4a77-9a7e-a7c2d9b1e7a1"),
            (
                "x-gitlab-event-uuid",
                "13792a34-cac6-4fda-95a8-c58e00a3954e",
            ),
        ]);
        let w = run(&v, &h, body, 0).unwrap();
        assert_eq!(w.idempotency_key(), "a7c9ab43-1f21-4a77-9a7e-a7c2d9b1e7a1");
        assert_eq!(w.event_type(), "Push Hook");
        assert_eq!(w.headers()[HEADER], "[redacted]");
        // Older GitLab: no Idempotency-Key, no X-Gitlab-Event.
        let h = headers(&[
            (HEADER, "old-token"),
            (
                "x-gitlab-event-uuid",
                "13792a34-cac6-4fda-95a8-c58e00a3954e",
            ),
        ]);
        let w = run(&v, &h, body, 0).unwrap();
        assert_eq!(w.idempotency_key(), "13792a34-cac6-4fda-95a8-c58e00a3954e");
        assert_eq!(w.event_type(), "push");
    }

    #[test]
    fn wrong_truncated_or_missing_token() {
        let v = gitlab(&["glpat-token"]);
        for token in ["glpat-toke", "glpat-token2", "", "x"] {
            assert_eq!(
                run(&v, &headers(&[(HEADER, token)]), "{}", 0).unwrap_err(),
                VerifyError::InvalidSignature,
                "{token:?}"
            );
        }
        assert_eq!(
            run(&v, &headers(&[]), "{}", 0).unwrap_err().reason(),
            "missing_signature"
        );
        assert_eq!(
            run(&v, &headers(&[(HEADER, "glpat-token")]), "nope", 0)
                .unwrap_err()
                .reason(),
            "invalid_json"
        );
    }
}
