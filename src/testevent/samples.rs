//! The sample events `hookd trigger` sends: realistic bodies of the common event types of
//! every built-in provider, as files `samples/<provider>/<name>.json` embedded in the binary.
//! Each body holds `{{unique}}` where the provider puts its event id, replaced by a fresh value
//! on every send, so a trigger is never taken for a replay of the last one.
//!
//! Owns the list and the lookup; signing is `sign`'s, sending the caller's.

/// One sample event.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub provider: &'static str,
    /// Its event type as hookd shows it (for GitLab, the name the CLI takes).
    pub name: &'static str,
    /// For providers that send the type in a header (GitHub, GitLab, Shopify): its value.
    pub header_type: Option<&'static str>,
    body: &'static str,
}

/// `sample!(provider, name)`: the file `samples/<provider>/<name>.json`; `header` when the
/// provider sends the type in a header, as the name; `header "..."` as that.
macro_rules! sample {
    ($provider:literal, $name:literal $(, header $($header:literal)?)?) => {
        Sample {
            provider: $provider,
            name: $name,
            header_type: sample!(@header $name $(, header $($header)?)?),
            body: include_str!(concat!("../../samples/", $provider, "/", $name, ".json")),
        }
    };
    (@header $name:literal) => { None };
    (@header $name:literal, header) => { Some($name) };
    (@header $name:literal, header $header:literal) => { Some($header) };
}

/// Every sample, by provider.
pub const SAMPLES: &[Sample] = &[
    sample!("stripe", "charge.refunded"),
    sample!("stripe", "checkout.session.completed"),
    sample!("stripe", "customer.subscription.created"),
    sample!("stripe", "customer.subscription.deleted"),
    sample!("stripe", "invoice.paid"),
    sample!("stripe", "invoice.payment_failed"),
    sample!("stripe", "payment_intent.payment_failed"),
    sample!("stripe", "payment_intent.succeeded"),
    sample!("github", "issues", header),
    sample!("github", "ping", header),
    sample!("github", "pull_request", header),
    sample!("github", "push", header),
    sample!("github", "release", header),
    sample!("shopify", "app/uninstalled", header),
    sample!("shopify", "customers/create", header),
    sample!("shopify", "orders/create", header),
    sample!("shopify", "orders/paid", header),
    sample!("shopify", "products/update", header),
    sample!("slack", "app_mention"),
    sample!("slack", "message"),
    sample!("slack", "reaction_added"),
    sample!("gitlab", "issue", header "Issue Hook"),
    sample!("gitlab", "merge_request", header "Merge Request Hook"),
    sample!("gitlab", "pipeline", header "Pipeline Hook"),
    sample!("gitlab", "push", header "Push Hook"),
    sample!("twilio", "com.twilio.messaging.message.delivered"),
    sample!("twilio", "com.twilio.messaging.message.failed"),
    sample!("paddle", "subscription.canceled"),
    sample!("paddle", "subscription.created"),
    sample!("paddle", "transaction.completed"),
    sample!("square", "payment.created"),
    sample!("square", "payment.updated"),
    sample!("square", "refund.created"),
    sample!("linear", "Comment.create"),
    sample!("linear", "Issue.create"),
    sample!("linear", "Issue.update"),
    sample!("standard", "invoice.paid"),
    sample!("standard", "user.created"),
    sample!("paypal", "PAYMENT.CAPTURE.COMPLETED"),
];

/// What stands for a fresh id in a sample's body.
const UNIQUE: &str = "{{unique}}";

impl Sample {
    /// The body to send: the sample with a fresh id where it holds [`UNIQUE`].
    pub fn body(&self) -> Vec<u8> {
        self.body
            .replace(UNIQUE, &uuid::Uuid::new_v4().simple().to_string())
            .into_bytes()
    }
}

/// The sample `name` of `provider`, or an error that lists what there is.
pub fn find(provider: &str, name: &str) -> Result<&'static Sample, String> {
    let of_provider: Vec<&Sample> = SAMPLES.iter().filter(|s| s.provider == provider).collect();
    if of_provider.is_empty() {
        let mut providers: Vec<&str> = SAMPLES.iter().map(|s| s.provider).collect();
        providers.dedup();
        return Err(format!(
            "no samples for provider {provider:?}; there are samples for {}",
            providers.join(", ")
        ));
    }
    of_provider
        .iter()
        .find(|s| s.name == name)
        .copied()
        .ok_or_else(|| {
            let names: Vec<&str> = of_provider.iter().map(|s| s.name).collect();
            format!(
                "no {provider} sample {name:?}; {provider} has {} (hookd trigger --list)",
                names.join(", ")
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_sample_is_json_with_a_fresh_id_each_time() {
        for s in SAMPLES {
            assert!(
                s.body.contains(UNIQUE),
                "{} {} has no {UNIQUE}",
                s.provider,
                s.name
            );
            let (a, b) = (s.body(), s.body());
            assert_ne!(a, b, "{} {}", s.provider, s.name);
            let v: serde_json::Value = serde_json::from_slice(&a)
                .unwrap_or_else(|e| panic!("{} {}: {e}", s.provider, s.name));
            // Where the type is in the body, it is the sample's (Linear's is the type and the
            // action; Slack's the inner event's).
            if let Some(t) = v
                .get("type")
                .or(v.get("event_type"))
                .and_then(|t| t.as_str())
                && !matches!(s.provider, "linear" | "slack")
            {
                assert_eq!(t, s.name, "{}", s.provider);
            }
        }
    }

    #[test]
    fn unknown_providers_and_types_say_what_there_is() {
        let header = |p, n| find(p, n).map(|s| s.header_type);
        assert_eq!(header("stripe", "invoice.paid"), Ok(None));
        assert_eq!(header("github", "push"), Ok(Some("push")));
        assert_eq!(header("shopify", "orders/paid"), Ok(Some("orders/paid")));
        assert_eq!(header("gitlab", "push"), Ok(Some("Push Hook")));
        let e = find("nosuch", "x").unwrap_err();
        assert!(
            e.contains("no samples for provider \"nosuch\"") && e.contains("stripe"),
            "{e}"
        );
        let e = find("stripe", "invoice.nope").unwrap_err();
        assert!(e.contains("invoice.paid") && e.contains("--list"), "{e}");
    }
}
