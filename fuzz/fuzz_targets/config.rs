//! Arbitrary configuration files (providers, routes, templates, filters, limits, schemas):
//! either a configuration or an error that names the setting, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let path = std::env::temp_dir().join(format!("hookd-fuzz-config-{}.toml", std::process::id()));
    if std::fs::write(&path, text).is_err() {
        return;
    }
    let vars = [
        ("HOOKD_CONFIG".to_owned(), path.display().to_string()),
        ("STRIPE_WEBHOOK_SECRET".to_owned(), "whsec_fuzz".to_owned()),
        ("SMTP_URL".to_owned(), "smtp://127.0.0.1:9?tls=none".to_owned()),
        ("SMTP_FROM".to_owned(), "hookd@example.com".to_owned()),
    ];
    if let Ok(config) = hookd::config::Config::from_vars(vars) {
        let _ = hookd::verify::Providers::from_config(&config.providers);
        let _ = hookd::actions::Router::new(&config.actions.routes, None);
    }
});
