//! The console's configuration pages: the whole flow in a real headless Chromium
//! (tests/browser/config.mjs), and every refusal of its forms over plain HTTP (a server's
//! message next to the field it names, file-managed entries, PayPal's test event, a missing
//! `HOOKD_SECRET_KEY`, read-only sessions), each audited.

use std::time::Duration;

use reqwest::StatusCode;

use crate::console::{READ_TOKEN, WAIT, browserless, csrf_of, form, login, page, run_browser};
use crate::support::*;

const KEY: &str = "k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

/// A console session over plain HTTP: its cookie and the CSRF token its forms carry.
struct Session {
    c: reqwest::Client,
    cookie: String,
    csrf: String,
}

impl Session {
    /// Log in to the console at `url` with `token`; the session's CSRF token is read from the
    /// configuration page.
    async fn open(url: &str, token: &str) -> Self {
        let c = browserless();
        let (cookie, _) = login(&c, url, token, &[]).await;
        let (status, html) = page(&c, &format!("{url}/ui/config"), &cookie).await;
        assert_eq!(status, StatusCode::OK, "{html}");
        let csrf = csrf_of(&html);
        Self { c, cookie, csrf }
    }

    /// GET a console page: the status and the page.
    async fn page(&self, url: &str) -> (StatusCode, String) {
        page(&self.c, url, &self.cookie).await
    }

    /// Post a console form with the session's CSRF token: the status and the page.
    async fn post(&self, url: &str, fields: &[(&str, &str)]) -> (StatusCode, String) {
        let body: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("csrf", &self.csrf)
            .extend_pairs(fields)
            .finish();
        let r = form(&self.c, url, &self.cookie, &body, None).await;
        (r.status(), r.text().await.unwrap())
    }
}

/// How many entries of the audit log page `log` record `action` answered with `status`.
fn audited(log: &serde_json::Value, action: &str, status: u64) -> usize {
    log["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == action && e["status"] == status)
        .count()
}

/// The server's message shown next to form field `field`.
fn field_error(html: &str, field: &str) -> String {
    let marker = format!(r#"data-field="{field}">"#);
    let at = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no error next to {field}: {html}"))
        + marker.len();
    html[at..].split("</p>").next().unwrap().to_owned()
}

/// A server with a read token beside the admin one, and a secret key so providers can be stored.
async fn start(db: &TestDb) -> TestServer {
    TestServer::start(
        db,
        "",
        &[
            ("HOOKD_ADMIN_READ_TOKEN", READ_TOKEN),
            ("HOOKD_SECRET_KEY", KEY),
        ],
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_forms_refuse_with_the_servers_message() {
    let db = TestDb::new(Backend::Sqlite).await;
    let server = start(&db).await;
    let url = server.url.as_str();
    let admin = Session::open(url, ADMIN_TOKEN).await;
    let providers = format!("{url}/ui/config/providers");

    // A provider's mistakes, each next to its field, the form kept.
    let (status, html) = admin
        .post(&providers, &[("name", "pp"), ("scheme", "paypal")])
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        field_error(&html, "secret").contains("webhook id PayPal shows"),
        "{html}"
    );
    assert!(html.contains(r#"value="paypal""#));
    let (status, html) = admin
        .post(
            &providers,
            &[("name", "bad"), ("scheme", "github"), ("settings", "[1]")],
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(field_error(&html, "settings").contains("expected a JSON object"));
    let (status, html) = admin.post(&providers, &[("scheme", "github")]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(field_error(&html, "name").contains("needs a name"));

    // PayPal cannot be signed here: the page says so, and a forced test event is refused.
    let (status, html) = admin
        .post(
            &providers,
            &[
                ("name", "pp"),
                ("scheme", "paypal"),
                ("secret", "WH-TEST-1"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(!html.contains("secret-once") && html.contains(r#"id="no-test""#));
    assert!(html.contains("only PayPal has"));
    let sample = [("sample", "PAYMENT.CAPTURE.COMPLETED")];
    let (_, html) = admin.post(&format!("{providers}/pp/test"), &sample).await;
    assert!(html.contains(r#"class="alert" id="test-result""#), "{html}");
    assert!(html.contains("has no sample"), "{html}");
    // A sample the scheme does not have.
    let (_, html) = admin
        .post(&providers, &[("name", "gh"), ("scheme", "github")])
        .await;
    assert!(html.contains("secret-value"));
    let (_, html) = admin
        .post(&format!("{providers}/gh/test"), &[("sample", "nope")])
        .await;
    assert!(html.contains("has no sample &quot;nope&quot;"), "{html}");

    // File-managed: read-only.
    let (status, html) = admin
        .post(&providers, &[("name", "stripe"), ("scheme", "stripe")])
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(html.contains("managed by file"));
    let (status, _) = admin
        .post(&format!("{providers}/stripe/secrets"), &[])
        .await;
    assert_eq!(status, StatusCode::CONFLICT);

    // Routes and destinations.
    let routes = format!("{url}/ui/config/routes");
    let (status, html) = admin
        .post(&routes, &[("name", "r"), ("route", "{nope")])
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(field_error(&html, "route").contains("not JSON"));
    let (status, html) = admin
        .post(&routes, &[("name", "bad name"), ("route", "{}")])
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(field_error(&html, "name").contains("a route name is"));
    let dests = format!("{url}/ui/config/destinations");
    let (status, html) = admin
        .post(
            &dests,
            &[
                ("name", "d"),
                ("url", "http://127.0.0.1:9/"),
                ("headers", "no colon"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(field_error(&html, "headers").contains("is not `Name: value`"));
    for missing in ["/ui/config/routes/nosuch", "/ui/config/providers/nosuch"] {
        let (status, _) = admin.page(&format!("{url}{missing}")).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{missing}");
    }

    // A read-only session sees no form and may not write.
    let reader = Session::open(url, READ_TOKEN).await;
    let (_, html) = reader.page(&format!("{url}/ui/config")).await;
    assert!(!html.contains("route-form") && !html.contains("provider-form"));
    let writes = [
        (providers.clone(), vec![("name", "x"), ("scheme", "github")]),
        (format!("{providers}/gh/secrets"), vec![]),
        (format!("{providers}/gh/test"), vec![("sample", "push")]),
        (routes.clone(), vec![("name", "x"), ("route", "{}")]),
        (
            dests.clone(),
            vec![("name", "x"), ("url", "http://127.0.0.1:9/")],
        ),
    ];
    for (to, fields) in &writes {
        let (status, _) = reader.post(to, fields).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{to}");
    }
    let config = server.admin_get("/config").await;
    assert!(config["routes"].as_array().unwrap().is_empty());
    assert!(config["destinations"].as_array().unwrap().is_empty());

    // Every attempt is in the audit log, with the API's action names, no secret in it.
    let log = server.admin_get("/audit?limit=200").await;
    let count = |action: &str, status: u64| audited(&log, action, status);
    assert_eq!(count("config.provider.put", 403), 1);
    assert_eq!(count("config.route.put", 400), 2);
    assert_eq!(count("config.provider.test_event", 400), 2);
    assert_eq!(count("config.provider.put", 200), 2);
    assert!(!log.to_string().contains("WH-TEST-1"));
    server.stop().await;

    // Without HOOKD_SECRET_KEY, storing a secret is refused with what to set.
    let db = TestDb::new(Backend::Sqlite).await;
    let server = TestServer::start(&db, "", &[]).await;
    let url = server.url.as_str();
    let admin = Session::open(url, ADMIN_TOKEN).await;
    let (status, html) = admin
        .post(
            &format!("{url}/ui/config/providers"),
            &[("name", "acme"), ("scheme", "github")],
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(html.contains("HOOKD_SECRET_KEY"), "{html}");
    server.stop().await;
}

/// The console's Delete buttons call the admin API's functions: a destination a route names is
/// refused (409, the route named), a file-managed provider too, an unknown entry is 404, a
/// read-only session 403; each deletion and refusal is audited under the API's action name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_deletes_entries_like_the_api() {
    let db = TestDb::new(Backend::Sqlite).await;
    let server = start(&db).await;
    let url = server.url.as_str();
    let admin = Session::open(url, ADMIN_TOKEN).await;
    let at = |path: &str| format!("{url}/ui/config/{path}");
    let made = [
        (at("providers"), vec![("name", "gh"), ("scheme", "github")]),
        (
            at("destinations"),
            vec![("name", "d"), ("url", "http://127.0.0.1:9/")],
        ),
        (
            at("routes"),
            vec![
                ("name", "r"),
                (
                    "route",
                    r#"{"provider":"gh","steps":[{"action":"forward","destination":"d"}]}"#,
                ),
            ],
        ),
    ];
    for (to, fields) in &made {
        let (status, html) = admin.post(to, fields).await;
        assert!(
            status.is_success() || status.is_redirection(),
            "{to}: {html}"
        );
    }
    let (_, html) = admin.page(&at("providers/gh")).await;
    assert!(
        html.contains(r#"action="/ui/config/providers/gh/delete""#),
        "{html}"
    );
    let (_, html) = admin.page(&at("routes/r")).await;
    assert!(
        html.contains(r#"action="/ui/config/routes/r/delete""#),
        "{html}"
    );
    let (_, html) = admin.page(&at("providers/stripe")).await;
    assert!(
        !html.contains("/delete"),
        "a Delete button on a file-managed provider"
    );

    // Refusals: in use, managed by file, unknown, read-only.
    let (status, html) = admin.post(&at("destinations/d/delete"), &[]).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(html.contains("route &quot;r&quot;"), "{html}");
    let (status, html) = admin.post(&at("providers/stripe/delete"), &[]).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(html.contains("managed by file"), "{html}");
    let (status, _) = admin.post(&at("routes/nosuch/delete"), &[]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let reader = Session::open(url, READ_TOKEN).await;
    let (_, html) = reader.page(&at("providers/gh")).await;
    assert!(
        !html.contains("/delete"),
        "a Delete button for a read session"
    );
    for entry in ["providers/gh", "routes/r", "destinations/d"] {
        let to = at(&format!("{entry}/delete"));
        let (status, _) = reader.post(&to, &[]).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{to}");
    }
    let config = server.admin_get("/config").await;
    assert_eq!(config["routes"].as_array().unwrap().len(), 1, "{config}");

    // Deleted, in the order a route's references allow.
    for entry in ["routes/r", "destinations/d", "providers/gh"] {
        let r = form(
            &admin.c,
            &at(&format!("{entry}/delete")),
            &admin.cookie,
            &format!("csrf={}", admin.csrf),
            None,
        )
        .await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER, "{entry}");
        assert_eq!(r.headers()["location"], "/ui/config");
    }
    let config = server.admin_get("/config").await;
    assert!(config["routes"].as_array().unwrap().is_empty(), "{config}");
    assert!(config["destinations"].as_array().unwrap().is_empty());
    assert!(
        !config["providers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "gh")
    );

    let log = server.admin_get("/audit?limit=200").await;
    let count = |action: &str, status: u64| audited(&log, action, status);
    for action in ["provider", "route", "destination"] {
        let action = format!("config.{action}.delete");
        assert_eq!(count(&action, 200), 1, "{action}");
        assert_eq!(count(&action, 403), 1, "{action}");
    }
    assert_eq!(count("config.destination.delete", 409), 1);
    assert_eq!(count("config.provider.delete", 409), 1);
    assert_eq!(count("config.route.delete", 404), 1);
    server.stop().await;
}

/// The configuration pages in Chromium (tests/browser/config.mjs): a provider created with its
/// secret shown once, a route refused with the server's message next to the field then fixed,
/// a destination, a signed test event accepted through the intake and processed, then the
/// three deleted with their Delete buttons; a file-managed provider read-only; a read-only
/// session refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_pages_in_a_real_browser() {
    let db = TestDb::new(Backend::Sqlite).await;
    let target = Target::start(Behaviour::default()).await;
    let server = start(&db).await;
    let extra = vec![
        ("HOOKD_READ_TOKEN", READ_TOKEN.to_owned()),
        ("TARGET_URL", target.url.clone()),
    ];
    run_browser(
        "config.mjs",
        &server.url,
        extra,
        "config console test passed",
    )
    .await;
    // The test event went through the intake to the route's destination.
    let deadline = std::time::Instant::now() + WAIT;
    while target.received().is_empty() {
        assert!(std::time::Instant::now() < deadline, "nothing forwarded");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    server.stop().await;
}
