//! A signed test event for a provider (the console's "send a signed test event"): a sample of
//! its scheme (the samples of `hookd trigger`), signed with its live secret exactly as the
//! provider would sign it. Posting it through the intake is the caller's: the operator layer
//! never sends a webhook, and never returns a secret, only the signature made with it.

use crate::ops::{Ops, OpsError};
use crate::testevent::samples::{SAMPLES, Sample};
use crate::testevent::sign::{Signed, sign};

impl Ops {
    /// The samples provider `name` can be sent: those of its scheme (none for PayPal's, which
    /// only PayPal can sign, nor for a scheme without samples).
    pub fn test_samples(&self, name: &str) -> Result<Vec<&'static Sample>, OpsError> {
        let scheme = self.config_provider(name)?.scheme;
        Ok(SAMPLES
            .iter()
            .filter(|s| s.provider == scheme && scheme != "paypal")
            .collect())
    }

    /// Sample `sample` of provider `name`'s scheme, signed as the provider signs it, to be
    /// posted to hookd at `base` (whose `Host` the schemes that sign the URL reconstruct).
    pub fn signed_test_event(
        &self,
        name: &str,
        sample: &str,
        base: &str,
    ) -> Result<Signed, OpsError> {
        let sample = self
            .test_samples(name)?
            .into_iter()
            .find(|s| s.name == sample)
            .ok_or_else(|| {
                OpsError::Invalid(format!("provider {name} has no sample {sample:?}"))
            })?;
        let provider = self.live.provider_now(name)?.ok_or(OpsError::NotFound)?;
        sign(
            &provider,
            base,
            self.live.base().public_url.as_deref(),
            sample.body(),
            sample.header_type,
            chrono::Utc::now().timestamp(),
        )
        .map_err(OpsError::Invalid)
    }
}
