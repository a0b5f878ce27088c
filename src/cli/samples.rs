//! The sample events `hookd trigger` sends: realistic bodies of the common event types of
//! every built-in provider, as files in `samples/<provider>/` embedded in the binary. Each body
//! holds `{{unique}}` where the provider puts its event id, replaced by a fresh value on every
//! send, so a trigger is never taken for a replay of the last one.
//!
//! Owns the list and the lookup; signing and sending are `sign`'s and the command's.

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

macro_rules! sample {
    ($provider:literal, $name:literal, $header:expr, $file:literal) => {
        Sample {
            provider: $provider,
            name: $name,
            header_type: $header,
            body: include_str!(concat!("../../samples/", $file)),
        }
    };
}

/// Every sample, by provider.
pub const SAMPLES: &[Sample] = &[
    sample!(
        "stripe",
        "charge.refunded",
        None,
        "stripe/charge.refunded.json"
    ),
    sample!(
        "stripe",
        "checkout.session.completed",
        None,
        "stripe/checkout.session.completed.json"
    ),
    sample!(
        "stripe",
        "customer.subscription.created",
        None,
        "stripe/customer.subscription.created.json"
    ),
    sample!(
        "stripe",
        "customer.subscription.deleted",
        None,
        "stripe/customer.subscription.deleted.json"
    ),
    sample!("stripe", "invoice.paid", None, "stripe/invoice.paid.json"),
    sample!(
        "stripe",
        "invoice.payment_failed",
        None,
        "stripe/invoice.payment_failed.json"
    ),
    sample!(
        "stripe",
        "payment_intent.payment_failed",
        None,
        "stripe/payment_intent.payment_failed.json"
    ),
    sample!(
        "stripe",
        "payment_intent.succeeded",
        None,
        "stripe/payment_intent.succeeded.json"
    ),
    sample!("github", "issues", Some("issues"), "github/issues.json"),
    sample!("github", "ping", Some("ping"), "github/ping.json"),
    sample!(
        "github",
        "pull_request",
        Some("pull_request"),
        "github/pull_request.json"
    ),
    sample!("github", "push", Some("push"), "github/push.json"),
    sample!("github", "release", Some("release"), "github/release.json"),
    sample!(
        "shopify",
        "app/uninstalled",
        Some("app/uninstalled"),
        "shopify/app-uninstalled.json"
    ),
    sample!(
        "shopify",
        "customers/create",
        Some("customers/create"),
        "shopify/customers-create.json"
    ),
    sample!(
        "shopify",
        "orders/create",
        Some("orders/create"),
        "shopify/orders-create.json"
    ),
    sample!(
        "shopify",
        "orders/paid",
        Some("orders/paid"),
        "shopify/orders-paid.json"
    ),
    sample!(
        "shopify",
        "products/update",
        Some("products/update"),
        "shopify/products-update.json"
    ),
    sample!("slack", "app_mention", None, "slack/app_mention.json"),
    sample!("slack", "message", None, "slack/message.json"),
    sample!("slack", "reaction_added", None, "slack/reaction_added.json"),
    sample!("gitlab", "issue", Some("Issue Hook"), "gitlab/issue.json"),
    sample!(
        "gitlab",
        "merge_request",
        Some("Merge Request Hook"),
        "gitlab/merge_request.json"
    ),
    sample!(
        "gitlab",
        "pipeline",
        Some("Pipeline Hook"),
        "gitlab/pipeline.json"
    ),
    sample!("gitlab", "push", Some("Push Hook"), "gitlab/push.json"),
    sample!(
        "twilio",
        "com.twilio.messaging.message.delivered",
        None,
        "twilio/com.twilio.messaging.message.delivered.json"
    ),
    sample!(
        "twilio",
        "com.twilio.messaging.message.failed",
        None,
        "twilio/com.twilio.messaging.message.failed.json"
    ),
    sample!(
        "paddle",
        "subscription.canceled",
        None,
        "paddle/subscription.canceled.json"
    ),
    sample!(
        "paddle",
        "subscription.created",
        None,
        "paddle/subscription.created.json"
    ),
    sample!(
        "paddle",
        "transaction.completed",
        None,
        "paddle/transaction.completed.json"
    ),
    sample!(
        "square",
        "payment.created",
        None,
        "square/payment.created.json"
    ),
    sample!(
        "square",
        "payment.updated",
        None,
        "square/payment.updated.json"
    ),
    sample!(
        "square",
        "refund.created",
        None,
        "square/refund.created.json"
    ),
    sample!(
        "linear",
        "Comment.create",
        None,
        "linear/Comment.create.json"
    ),
    sample!("linear", "Issue.create", None, "linear/Issue.create.json"),
    sample!("linear", "Issue.update", None, "linear/Issue.update.json"),
    sample!(
        "standard",
        "invoice.paid",
        None,
        "standard/invoice.paid.json"
    ),
    sample!(
        "standard",
        "user.created",
        None,
        "standard/user.created.json"
    ),
    sample!(
        "paypal",
        "PAYMENT.CAPTURE.COMPLETED",
        None,
        "paypal/PAYMENT.CAPTURE.COMPLETED.json"
    ),
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
        assert_eq!(
            find("stripe", "invoice.paid").map(|s| s.name),
            Ok("invoice.paid")
        );
        let e = find("nosuch", "x").unwrap_err();
        assert!(
            e.contains("no samples for provider \"nosuch\"") && e.contains("stripe"),
            "{e}"
        );
        let e = find("stripe", "invoice.nope").unwrap_err();
        assert!(e.contains("invoice.paid") && e.contains("--list"), "{e}");
    }
}
