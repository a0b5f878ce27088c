//! The `email` action: a plain-text message through one SMTP server (`SMTP_URL`).
//!
//! Owns the SMTP settings (URL, TLS mode, credentials, extra trusted CA), the message built from
//! a step's templates, and the classification of SMTP failures (the server is unwell, or this
//! message was refused). It must never send credentials over an unencrypted connection and
//! never retry on its own: one call is one delivery attempt, the worker decides the rest.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::message::{Mailbox, Message};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use serde::Deserialize;
use serde_json::Value;

use super::ActionError;
use super::breaker::Destination;
use super::template::Template;
use crate::event::ClaimedEvent;

/// An email address (`ops@example.com` or `Ops <ops@example.com>`), checked at config load.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct Recipient(Mailbox);

/// Text that is not an email address.
#[derive(Debug, thiserror::Error)]
#[error("{text:?} is not an email address: {source}")]
pub struct AddressError {
    text: String,
    source: lettre::address::AddressError,
}

impl TryFrom<String> for Recipient {
    type Error = AddressError;
    fn try_from(s: String) -> Result<Self, AddressError> {
        Mailbox::from_str(s.trim())
            .map(Self)
            .map_err(|source| AddressError { text: s, source })
    }
}

impl FromStr for Recipient {
    type Err = AddressError;
    fn from_str(s: &str) -> Result<Self, AddressError> {
        Self::try_from(s.to_owned())
    }
}

/// An SMTP setting that cannot work; never shows the credentials.
#[derive(Debug, thiserror::Error)]
pub enum SmtpSettingError {
    #[error("not a URL ({source})")]
    Url { source: url::ParseError },
    #[error("scheme {0:?} is not smtp or smtps")]
    Scheme(String),
    #[error("unknown option {0} (only smtp://...?tls=none)")]
    Option(String),
    #[error("no host")]
    NoHost,
    #[error("credentials are not UTF-8 after percent-decoding")]
    Credentials,
    #[error("credentials over an unencrypted connection (tls=none) are refused")]
    Plaintext,
    #[error("no PEM certificate in it")]
    NoPem,
    #[error("{source}")]
    Pem {
        source: lettre::transport::smtp::Error,
    },
}

/// The fields of an `email` step.
pub(super) struct EmailSpec<'a> {
    pub to: &'a [Recipient],
    pub subject: &'a Template,
    pub body: &'a Template,
    pub from: Option<&'a Recipient>,
    pub timeout_ms: Option<u64>,
}

/// How the connection to the SMTP server is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpSecurity {
    /// `smtp://` (the default): plain connect, then STARTTLS, which must succeed.
    StartTls,
    /// `smtps://`: TLS from the first byte.
    Tls,
    /// `smtp://...?tls=none`: no encryption, for a relay on the same host or network only.
    None,
}

/// Where email goes: parsed from `SMTP_URL` and its companion settings.
#[derive(Clone)]
pub struct SmtpSettings {
    host: String,
    port: u16,
    security: SmtpSecurity,
    credentials: Option<(String, String)>,
    /// Sender for steps that do not name one (`SMTP_FROM`).
    pub from: Option<Recipient>,
    /// Per-message timeout unless a step sets `timeout_ms` (`HOOKD_SMTP_TIMEOUT_MS`).
    pub timeout: Duration,
    /// Extra trusted roots, PEM (`HOOKD_SMTP_CA_FILE`), for a relay with a private CA.
    ca: Option<Certificate>,
}

impl fmt::Debug for SmtpSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpSettings")
            .field("server", &self.destination().to_string())
            .field("security", &self.security)
            .field("user", &self.credentials.as_ref().map(|(u, _)| u))
            .field("from", &self.from)
            .field("timeout", &self.timeout)
            .field("extra_ca", &self.ca.is_some())
            .finish()
    }
}

impl SmtpSettings {
    /// Parse `smtp://[user:password@]host[:port][?tls=none]` or `smtps://...`. Default ports:
    /// 587 (submission, STARTTLS), 465 (TLS), 25 with `tls=none`.
    pub fn from_url(url: &str) -> Result<Self, SmtpSettingError> {
        let parsed = reqwest::Url::parse(url).map_err(|source| SmtpSettingError::Url { source })?;
        let mut security = match parsed.scheme() {
            "smtp" => SmtpSecurity::StartTls,
            "smtps" => SmtpSecurity::Tls,
            other => return Err(SmtpSettingError::Scheme(other.to_owned())),
        };
        for (k, v) in parsed.query_pairs() {
            match (k.as_ref(), v.as_ref(), security) {
                ("tls", "none", SmtpSecurity::StartTls) => security = SmtpSecurity::None,
                ("tls", "starttls" | "required", SmtpSecurity::StartTls) => {}
                _ => return Err(SmtpSettingError::Option(format!("{k}={v}"))),
            }
        }
        let host = parsed
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or(SmtpSettingError::NoHost)?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = parsed.port().unwrap_or(match security {
            SmtpSecurity::StartTls => 587,
            SmtpSecurity::Tls => 465,
            SmtpSecurity::None => 25,
        });
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8()
                .map(|c| c.into_owned())
                .map_err(|_| SmtpSettingError::Credentials)
        };
        let credentials = if parsed.username().is_empty() {
            None
        } else {
            Some((
                decode(parsed.username())?,
                decode(parsed.password().unwrap_or(""))?,
            ))
        };
        if credentials.is_some() && security == SmtpSecurity::None {
            return Err(SmtpSettingError::Plaintext);
        }
        Ok(Self {
            host,
            port,
            security,
            credentials,
            from: None,
            timeout: Duration::from_secs(10),
            ca: None,
        })
    }

    /// Trust the certificates in this PEM text as well as the system's.
    pub fn trust_pem(&mut self, pem: &[u8]) -> Result<(), SmtpSettingError> {
        if !String::from_utf8_lossy(pem).contains("BEGIN CERTIFICATE") {
            return Err(SmtpSettingError::NoPem);
        }
        self.ca =
            Some(Certificate::from_pem(pem).map_err(|source| SmtpSettingError::Pem { source })?);
        Ok(())
    }

    pub fn security(&self) -> SmtpSecurity {
        self.security
    }

    /// The breaker key: scheme, host and port, never the credentials.
    pub fn destination(&self) -> Destination {
        let scheme = if self.security == SmtpSecurity::Tls {
            "smtps"
        } else {
            "smtp"
        };
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        Destination::new(format!("{scheme}://{host}:{}", self.port))
    }
}

/// A ready SMTP client. Each message opens its own connection: nothing is pooled, so a
/// broken connection never outlives the message that found it.
#[derive(Clone)]
pub(super) struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    server: String,
    from: Option<Mailbox>,
    timeout: Duration,
}

impl Mailer {
    pub fn new(s: &SmtpSettings) -> Result<Self, lettre::transport::smtp::Error> {
        let tls_params = || {
            let mut b = TlsParameters::builder(s.host.clone());
            if let Some(ca) = &s.ca {
                b = b.add_root_certificate(ca.clone());
            }
            b.build_rustls()
        };
        let tls = match s.security {
            SmtpSecurity::StartTls => Tls::Required(tls_params()?),
            SmtpSecurity::Tls => Tls::Wrapper(tls_params()?),
            SmtpSecurity::None => Tls::None,
        };
        let mut b = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(s.host.clone())
            .port(s.port)
            .tls(tls)
            .timeout(Some(s.timeout));
        if let Some((user, password)) = &s.credentials {
            b = b.credentials(Credentials::new(user.clone(), password.clone()));
        }
        Ok(Self {
            transport: b.build(),
            server: s.destination().to_string(),
            from: s.from.clone().map(|r| r.0),
            timeout: s.timeout,
        })
    }

    /// The timeout of a step that does not set its own.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Build the message for `event` and hand it to the server once.
    pub async fn send(
        &self,
        spec: EmailSpec<'_>,
        step_key: &str,
        event: &ClaimedEvent,
        payload: &Value,
    ) -> Result<(), ActionError> {
        let from = spec
            .from
            .map(|r| r.0.clone())
            .or_else(|| self.from.clone())
            .ok_or_else(|| {
                ActionError::Email("no sender: set SMTP_FROM or the step's from".into())
            })?;
        // A payload value in the subject must not be able to start a new header line.
        let subject: String = spec
            .subject
            .render(event, payload)
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        let mut builder = Message::builder()
            .from(from)
            .subject(subject)
            // Stable per event and step, so a receiver can drop the copy an at-least-once
            // retry may send.
            .message_id(Some(match event.generation {
                0 => format!("<{}.{}@hookd>", event.id, id_safe(step_key)),
                n => format!("<{}.{}.replay{n}@hookd>", event.id, id_safe(step_key)),
            }))
            .raw_header(HeaderValue::new(
                HeaderName::new_from_ascii_str("X-Hookd-Event-Id"),
                event.id.to_string(),
            ))
            .header(ContentType::TEXT_PLAIN);
        for to in spec.to {
            builder = builder.to(to.0.clone());
        }
        let message = builder
            .body(spec.body.render(event, payload))
            .map_err(|e| ActionError::Email(e.to_string()))?;
        let timeout = spec
            .timeout_ms
            .map(Duration::from_millis)
            .unwrap_or(self.timeout);
        match tokio::time::timeout(timeout, self.transport.send(message)).await {
            Err(_) => Err(ActionError::SmtpTimeout {
                server: self.server.clone(),
                timeout_ms: timeout.as_millis() as u64,
            }),
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => {
                let code = e.status().map(|c| c.to_string());
                // A permanent answer refuses this message (bad recipient, content); anything
                // else (connection, TLS, 4xx, authentication) says the server cannot take mail.
                let auth = matches!(code.as_deref(), Some("530" | "534" | "535" | "538"));
                Err(ActionError::Smtp {
                    server: self.server.clone(),
                    error: super::error_chain(&e),
                    server_trouble: !e.is_permanent() || auth,
                })
            }
        }
    }
}

/// Characters allowed on the left of a Message-ID's `@`; anything else becomes `.`.
fn id_safe(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '.'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let s = SmtpSettings::from_url("smtp://mail.example.com").unwrap();
        assert_eq!(s.security(), SmtpSecurity::StartTls);
        assert_eq!(s.destination().to_string(), "smtp://mail.example.com:587");
        let s = SmtpSettings::from_url("smtps://u%40x:p%3Aw@mail.example.com").unwrap();
        assert_eq!(s.security(), SmtpSecurity::Tls);
        assert_eq!(s.credentials, Some(("u@x".to_owned(), "p:w".to_owned())));
        assert_eq!(s.destination().to_string(), "smtps://mail.example.com:465");
        assert!(!format!("{s:?}").contains("p:w"));
        let s = SmtpSettings::from_url("smtp://127.0.0.1:2525?tls=none").unwrap();
        assert_eq!(s.security(), SmtpSecurity::None);
        assert!(
            SmtpSettings::from_url("smtp://u:p@relay?tls=none")
                .unwrap_err()
                .to_string()
                .contains("unencrypted")
        );
        assert!(
            SmtpSettings::from_url("http://x")
                .unwrap_err()
                .to_string()
                .contains("scheme")
        );
        assert!(
            SmtpSettings::from_url("smtps://x?tls=none")
                .unwrap_err()
                .to_string()
                .contains("unknown option")
        );
        assert!(SmtpSettings::from_url("smtp:x").is_err());
    }

    #[test]
    fn recipients_are_checked() {
        assert!(Recipient::from_str("Ops <ops@example.com>").is_ok());
        assert!(Recipient::from_str("not an address").is_err());
        assert_eq!(id_safe("pay/0:email"), "pay.0.email");
    }
}
