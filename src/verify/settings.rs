//! Providers as configured: each one's name, the setting that turns it on, and its scheme's
//! validated settings; and the verifiers built from them at start.
//!
//! Owns the settings types of verification and the errors that name a wrong setting. It must
//! never read the environment or a file (the configuration reader does, through the
//! [`registry`](super::registry)), and never build a verifier for a provider whose secret is unset.

use super::paypal_certs::CertSetupError;
use super::section::{ProviderError, SettingError};
use super::{
    GenericVerifier, GithubVerifier, GitlabVerifier, HmacSpec, LinearVerifier, PaddleVerifier,
    PaypalSettings, PaypalVerifier, Providers, Secrets, ShopifyVerifier, SlackVerifier,
    SquareVerifier, StandardKeys, StandardVerifier, StripeVerifier, TwilioVerifier, Verifier,
};

/// One provider endpoint, `/webhooks/{name}`.
#[derive(Debug, Clone)]
pub struct ProviderConfig {
    /// The URL path segment, and the prefix of its environment variables (upper-cased).
    pub name: String,
    /// The setting that turns it on (`STRIPE_WEBHOOK_SECRET`), named while it is off.
    pub setting: String,
    /// `None` while that setting is unset: the provider accepts nothing.
    pub verifier: Option<VerifierConfig>,
}

/// A provider's validated scheme settings.
#[derive(Debug, Clone)]
pub enum VerifierConfig {
    Stripe {
        secrets: Secrets,
        tolerance_secs: u64,
    },
    Github {
        secrets: Secrets,
    },
    Paypal(PaypalSettings),
    Standard {
        keys: StandardKeys,
        tolerance_secs: u64,
    },
    Shopify {
        secrets: Secrets,
    },
    Slack {
        secrets: Secrets,
        tolerance_secs: u64,
    },
    Gitlab {
        secrets: Secrets,
    },
    Twilio {
        auth_tokens: Secrets,
        shared_keys: Option<Secrets>,
        public_url: Option<String>,
    },
    Paddle {
        secrets: Secrets,
        tolerance_secs: u64,
    },
    Square {
        secrets: Secrets,
        public_url: Option<String>,
    },
    Linear {
        secrets: Secrets,
        tolerance_secs: u64,
    },
    Hmac {
        secrets: Secrets,
        spec: HmacSpec,
    },
}

impl VerifierConfig {
    /// The name of its scheme, as `scheme = "..."` gives it.
    pub fn scheme(&self) -> &'static str {
        match self {
            Self::Stripe { .. } => "stripe",
            Self::Github { .. } => "github",
            Self::Paypal(_) => "paypal",
            Self::Standard { .. } => "standard",
            Self::Shopify { .. } => "shopify",
            Self::Slack { .. } => "slack",
            Self::Gitlab { .. } => "gitlab",
            Self::Twilio { .. } => "twilio",
            Self::Paddle { .. } => "paddle",
            Self::Square { .. } => "square",
            Self::Linear { .. } => "linear",
            Self::Hmac { .. } => "hmac",
        }
    }

    /// The verifier these settings describe.
    pub fn build(&self) -> Result<Box<dyn Verifier>, CertSetupError> {
        Ok(match self.clone() {
            Self::Stripe {
                secrets,
                tolerance_secs,
            } => Box::new(StripeVerifier::new(secrets, tolerance_secs)),
            Self::Github { secrets } => Box::new(GithubVerifier::new(secrets)),
            Self::Paypal(settings) => Box::new(PaypalVerifier::new(settings)?),
            Self::Standard {
                keys,
                tolerance_secs,
            } => Box::new(StandardVerifier::new(keys, tolerance_secs)),
            Self::Shopify { secrets } => Box::new(ShopifyVerifier::new(secrets)),
            Self::Slack {
                secrets,
                tolerance_secs,
            } => Box::new(SlackVerifier::new(secrets, tolerance_secs)),
            Self::Gitlab { secrets } => Box::new(GitlabVerifier::new(secrets)),
            Self::Twilio {
                auth_tokens,
                shared_keys,
                public_url,
            } => Box::new(TwilioVerifier::new(auth_tokens, shared_keys, public_url)),
            Self::Paddle {
                secrets,
                tolerance_secs,
            } => Box::new(PaddleVerifier::new(secrets, tolerance_secs)),
            Self::Square {
                secrets,
                public_url,
            } => Box::new(SquareVerifier::new(secrets, public_url)),
            Self::Linear {
                secrets,
                tolerance_secs,
            } => Box::new(LinearVerifier::new(secrets, tolerance_secs)),
            Self::Hmac { secrets, spec } => Box::new(GenericVerifier::new(secrets, spec)),
        })
    }
}

impl Providers {
    /// The verifiers for every provider that has its secret configured; the others are known
    /// but off, and say which setting would turn them on.
    pub fn from_config(providers: &[ProviderConfig]) -> Result<Self, ProviderError> {
        let mut p = Self::default();
        for provider in providers {
            match &provider.verifier {
                Some(v) => {
                    let verifier = v.build().map_err(|source| ProviderError {
                        provider: provider.name.clone(),
                        source: Box::new(SettingError::Setup(source)),
                    })?;
                    p.insert(&provider.name, verifier);
                }
                None => p.insert_off(&provider.name, &provider.setting),
            }
        }
        Ok(p)
    }
}
