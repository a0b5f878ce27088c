//! The web console: sessions, CSRF and escaping over plain HTTP (both stores), and the whole
//! console in a real headless Chromium (tests/browser/console.mjs, playwright-core driving
//! Debian's chromium), with screenshots saved under target/browser-artifacts/.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::support::*;
use hookd::event::EventStatus;
use reqwest::StatusCode;

pub(crate) const WAIT: Duration = Duration::from_secs(20);
pub(crate) const READ_TOKEN: &str = "console-read-token-for-tests";
const XSS_TYPE: &str = "<img src=x onerror=alert(1)>";

both_backends!(sessions_csrf_and_escaping);

/// A client that shows redirects instead of following them.
pub(crate) fn browserless() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn set_cookies(r: &reqwest::Response) -> Vec<String> {
    r.headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

/// `name=value` of the cookie `name` set by `r`.
fn cookie_pair(r: &reqwest::Response, name: &str) -> String {
    set_cookies(r)
        .into_iter()
        .find(|c| c.starts_with(&format!("{name}=")))
        .unwrap_or_else(|| panic!("no {name} cookie"))
        .split(';')
        .next()
        .unwrap()
        .to_owned()
}

/// The value of the hidden `csrf` field of a page.
pub(crate) fn csrf_of(html: &str) -> String {
    let at = html.find(r#"name="csrf" value=""#).expect("a csrf field") + 19;
    html[at..].split('"').next().unwrap().to_owned()
}

/// Log in with `token`; the session cookie (`hookd_session=...`) and the whole Set-Cookie.
pub(crate) async fn login(
    c: &reqwest::Client,
    url: &str,
    token: &str,
    extra: &[(&str, &str)],
) -> (String, String) {
    let r = c.get(format!("{url}/ui/login")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let login_cookie = cookie_pair(&r, "hookd_login_csrf");
    let csrf = csrf_of(&r.text().await.unwrap());
    let mut req = c
        .post(format!("{url}/ui/login"))
        .header("cookie", &login_cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("csrf={csrf}&token={token}"));
    for (k, v) in extra {
        req = req.header(*k, *v);
    }
    let r = req.send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER, "login with {token}");
    assert_eq!(r.headers()["location"], "/ui/events");
    let full = set_cookies(&r)
        .into_iter()
        .find(|c| c.starts_with("hookd_session="))
        .unwrap();
    (cookie_pair(&r, "hookd_session"), full)
}

pub(crate) async fn page(c: &reqwest::Client, url: &str, cookie: &str) -> (StatusCode, String) {
    let r = c.get(url).header("cookie", cookie).send().await.unwrap();
    (r.status(), r.text().await.unwrap())
}

pub(crate) async fn form(
    c: &reqwest::Client,
    url: &str,
    cookie: &str,
    body: &str,
    origin: Option<&str>,
) -> reqwest::Response {
    let mut req = c
        .post(url)
        .header("cookie", cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body.to_owned());
    if let Some(o) = origin {
        req = req.header("origin", o);
    }
    req.send().await.unwrap()
}

async fn sessions_csrf_and_escaping(b: Backend) {
    let db = TestDb::new(b).await;
    let server = TestServer::start(&db, "", &[("HOOKD_ADMIN_READ_TOKEN", READ_TOKEN)]).await;
    let body = format!(
        r#"{{"id":"evt_xss","object":"event","type":"{}","note":"</script><script>alert(2)</script>"}}"#,
        XSS_TYPE
    );
    let id = id_of(server.post_stripe(&body).await).await;
    server.wait_status(id, EventStatus::Completed, WAIT).await;
    let c = browserless();
    let url = &server.url;

    // No session: pages send the browser to the login, forms are refused.
    let r = c.get(format!("{url}/ui/events")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()["location"], "/ui/login");
    let r = form(
        &c,
        &format!("{url}/ui/events/{id}/replay"),
        "",
        "csrf=x",
        None,
    )
    .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);

    // Login needs the form's token (login CSRF) and a valid admin token.
    let r = c
        .post(format!("{url}/ui/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("csrf=forged&token={ADMIN_TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(
        set_cookies(&r)
            .iter()
            .all(|c| !c.starts_with("hookd_session="))
    );
    let r = c.get(format!("{url}/ui/login")).send().await.unwrap();
    let lc = cookie_pair(&r, "hookd_login_csrf");
    let csrf = csrf_of(&r.text().await.unwrap());
    let r = form(
        &c,
        &format!("{url}/ui/login"),
        &lc,
        &format!("csrf={csrf}&token=wrong"),
        None,
    )
    .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    let (cookie, full) = login(&c, url, ADMIN_TOKEN, &[]).await;
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/ui"] {
        assert!(full.contains(attr), "{full}");
    }
    assert!(!full.contains("Secure"), "plain http: {full}");
    let (_, secure) = login(&c, url, ADMIN_TOKEN, &[("x-forwarded-proto", "https")]).await;
    assert!(secure.contains("; Secure"), "{secure}");

    // Pages: strict headers, every value escaped.
    let r = c
        .get(format!("{url}/ui/events"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let csp = r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    assert_eq!(r.headers()["x-frame-options"], "DENY");
    let html = r.text().await.unwrap();
    assert!(
        html.contains("&lt;img src=x onerror=alert(1)&gt;"),
        "not escaped"
    );
    assert!(!html.contains(XSS_TYPE));
    let (s, detail) = page(&c, &format!("{url}/ui/events/{id}"), &cookie).await;
    assert_eq!(s, StatusCode::OK);
    assert!(!detail.contains(XSS_TYPE) && !detail.contains("<script>alert(2)"));
    assert!(detail.contains("&lt;/script&gt;&lt;script&gt;alert(2)&lt;/script&gt;"));
    let csrf = csrf_of(&detail);

    // Forms: without the session's CSRF token, or from another site, nothing happens.
    let replay = format!("{url}/ui/events/{id}/replay");
    let r = form(&c, &replay, &cookie, "csrf=wrong", None).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = form(&c, &replay, &cookie, "", None).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = form(
        &c,
        &replay,
        &cookie,
        &format!("csrf={csrf}"),
        Some("http://evil.example"),
    )
    .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(server.event(id).await.replays, 0);
    let r = form(&c, &replay, &cookie, &format!("csrf={csrf}"), Some(url)).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        r.headers()["location"].to_str().unwrap(),
        format!("/ui/events/{id}?done=replay")
    );
    server.wait_status(id, EventStatus::Completed, WAIT).await;
    assert_eq!(server.event(id).await.replays, 1);

    // A read token's session shows no buttons and may not act.
    let (read_cookie, _) = login(&c, url, READ_TOKEN, &[]).await;
    let (_, read_page) = page(&c, &format!("{url}/ui/events/{id}"), &read_cookie).await;
    assert!(!read_page.contains(r#"id="replay""#));
    let read_csrf = csrf_of(&read_page);
    let r = form(
        &c,
        &replay,
        &read_cookie,
        &format!("csrf={read_csrf}"),
        None,
    )
    .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(server.event(id).await.replays, 1);
    let log = server.admin_get("/audit").await;
    let first = &log["entries"][0];
    assert_eq!(first["actor"], "read (console)");
    assert_eq!(first["action"], "event.replay");
    assert_eq!(first["status"], 403);
    let replayed = log["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "event.replay" && e["status"] == 200)
        .unwrap();
    assert_eq!(replayed["actor"], "admin (console)");

    // Logout ends the session everywhere.
    let r = form(
        &c,
        &format!("{url}/ui/logout"),
        &cookie,
        &format!("csrf={csrf}"),
        None,
    )
    .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert!(
        set_cookies(&r)
            .iter()
            .any(|c| c.starts_with("hookd_session=;"))
    );
    let r = c
        .get(format!("{url}/ui/events"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    server.stop().await;

    // Without any admin token there is no console.
    let server = TestServer::start(&db, "", &[("HOOKD_ADMIN_TOKEN", "")]).await;
    let r = c
        .get(format!("{}/ui/login", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    server.stop().await;
}

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Chromium (with the browser driver and node), or a message that says how to get them.
fn browser_tools() -> PathBuf {
    let chromium = std::env::var_os("HOOKD_TEST_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    assert!(
        chromium.exists(),
        "Chromium is missing ({}): scripts/test.sh installs Debian's chromium package \
         (apt-get install chromium), or set HOOKD_TEST_CHROMIUM",
        chromium.display()
    );
    let driver = repo().join("tests/browser/node_modules/playwright-core");
    assert!(
        driver.exists(),
        "playwright-core is missing ({}): run scripts/test.sh, which runs npm ci in tests/browser",
        driver.display()
    );
    let node = std::process::Command::new("node").arg("--version").output();
    assert!(
        node.is_ok_and(|o| o.status.success()),
        "node is required to drive the browser (apt-get install nodejs)"
    );
    chromium
}

/// Run `tests/browser/<script>` against the hookd at `url`, logged in with the admin token, with
/// `extra` variables; its report, once it said `<passed>`.
pub(crate) async fn run_browser(
    script: &str,
    url: &str,
    extra: Vec<(&'static str, String)>,
    passed: &str,
) -> String {
    let chromium = browser_tools();
    let script = repo().join("tests/browser").join(script);
    let artifacts = repo().join("target/browser-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let url = url.to_owned();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("node")
            .arg(&script)
            .current_dir(repo().join("tests/browser"))
            .env("HOOKD_URL", &url)
            .env("HOOKD_TOKEN", ADMIN_TOKEN)
            .env("CHROMIUM", &chromium)
            .env("ARTIFACTS", &artifacts)
            .envs(extra)
            .output()
            .expect("run node")
    })
    .await
    .unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && report.contains(passed),
        "the browser test failed (screenshots in target/browser-artifacts):\n{report}"
    );
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_in_a_real_browser() {
    let db = TestDb::new(Backend::Sqlite).await;
    // Invoices are forwarded to a target that fails twice, then works: two dead letters, and a
    // redrive that succeeds.
    let target = Target::start(Behaviour {
        fail_first: 2,
        ..Default::default()
    })
    .await;
    let routes = format!(
        "[[routes]]\nname = \"billing\"\nprovider = \"stripe\"\nevents = [\"invoice.*\"]\nsteps = [{{ action = \"forward\", url = \"{}\" }}]\n",
        target.url
    );
    let server = TestServer::start(&db, &routes, &[("HOOKD_MAX_ATTEMPTS", "1")]).await;
    let mut dead = Vec::new();
    for t in ["invoice.payment_failed", "invoice.finalization_failed"] {
        let (_, body) = stripe_event(t);
        let id = id_of(server.post_stripe(&body).await).await;
        server.wait_status(id, EventStatus::DeadLetter, WAIT).await;
        dead.push(id);
    }
    for t in [
        "payment_intent.succeeded",
        "charge.succeeded",
        "customer.created",
    ] {
        let (_, body) = stripe_event(t);
        server.post_stripe(&body).await;
    }
    let body = format!(r#"{{"id":"evt_xss","object":"event","type":"{XSS_TYPE}"}}"#);
    let xss = id_of(server.post_stripe(&body).await).await;
    server.wait_status(xss, EventStatus::Completed, WAIT).await;

    let extra = vec![
        ("DEAD_ID", dead[0].to_string()),
        ("OTHER_DEAD_ID", dead[1].to_string()),
        ("XSS_ID", xss.to_string()),
        ("XSS_TYPE", XSS_TYPE.to_owned()),
        ("STRIPE_SECRET", STRIPE_SECRET.to_owned()),
        ("INVOICES", "2".to_owned()),
    ];
    run_browser("console.mjs", &server.url, extra, "console test passed").await;

    // What the browser did is in the store.
    let e = server.event(dead[0]).await;
    assert_eq!((e.status, e.replays), (EventStatus::Completed, 1));
    assert_eq!(server.event(dead[1]).await.status, EventStatus::DeadLetter);
    assert!(
        repo()
            .join("target/browser-artifacts/04-redriven.png")
            .exists()
    );
    server.stop().await;
}
