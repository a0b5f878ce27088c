//! Shared set-up: every provider scheme configured, as hookd would be in production.
#![allow(dead_code)]

use std::sync::OnceLock;

use hookd::config::Config;
use hookd::verify::Providers;

pub const STRIPE_SECRET: &str = "whsec_fuzz";

pub const NAMES: &[&str] = &[
    "stripe", "github", "paypal", "standard", "shopify", "slack", "gitlab", "twilio", "paddle",
    "square", "linear", "acme",
];

pub struct World {
    pub config: Config,
    pub providers: Providers,
    pub runtime: tokio::runtime::Runtime,
}

pub fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("hookd-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("payment.json"),
            r#"{"type":"object","required":["id","type"],"properties":{"id":{"type":"string","maxLength":64},"data":{"type":"object","properties":{"object":{"type":"object","properties":{"amount":{"type":"integer","minimum":1},"currency":{"type":"string","pattern":"^[a-z]{3}$"}}}}}}}"#,
        )
        .unwrap();
        let toml = dir.join("hookd.toml");
        std::fs::write(
            &toml,
            r#"
[providers.acme]
scheme = "hmac"
header = "X-Acme-Signature"
prefix = "sha256="
signed = "{timestamp}.{body}"
timestamp_header = "X-Acme-Timestamp"
idempotency_pointer = "/id"
event_type_pointer = "/type"

[[schemas]]
provider = "stripe"
events = ["payment_intent.*"]
schema = "payment.json"
"#,
        )
        .unwrap();
        let vars = [
            ("HOOKD_CONFIG", toml.to_str().unwrap()),
            ("STRIPE_WEBHOOK_SECRET", STRIPE_SECRET),
            ("GITHUB_WEBHOOK_SECRET", "gh"),
            ("PAYPAL_WEBHOOK_ID", "WEBHOOK_ID"),
            // Nothing listens there: a certificate fetch fails at once, without the network.
            ("PAYPAL_CERT_URL_PREFIXES", "https://127.0.0.1:9/v1/notifications/certs/"),
            ("STANDARD_WEBHOOK_SECRET", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
            ("SHOPIFY_WEBHOOK_SECRET", "shp"),
            ("SLACK_WEBHOOK_SECRET", "slk"),
            ("GITLAB_WEBHOOK_SECRET", "glt"),
            ("TWILIO_WEBHOOK_SECRET", "twl"),
            ("PADDLE_WEBHOOK_SECRET", "pdl_ntfset_x"),
            ("SQUARE_WEBHOOK_SECRET", "sq"),
            ("LINEAR_WEBHOOK_SECRET", "lin_wh_x"),
            ("ACME_WEBHOOK_SECRET", "acme"),
        ];
        let config = Config::from_vars(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())))
            .expect("fuzz configuration");
        let providers =
            hookd::verify::Providers::from_config(&config.providers).expect("providers");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        World {
            config,
            providers,
            runtime,
        }
    })
}
