use super::*;

fn settings() -> TransformSettings {
    TransformSettings {
        timeout: Duration::from_millis(200),
        memory_limit_bytes: 8 << 20,
        threads: 1,
    }
}

fn script(name: &str, source: &str) -> Script {
    Script {
        name: name.into(),
        source: source.into(),
    }
}

fn engine(source: &str) -> Engine {
    Engine::new(&settings(), &[script("t.js", source)]).expect("the script loads")
}

fn input() -> TransformInput {
    TransformInput {
        provider: "stripe".into(),
        event_type: "charge.succeeded".into(),
        text: r#"{"id":"evt_1","amount":5}"#.into(),
        ..TransformInput::default()
    }
    .complete()
}

#[test]
fn a_json_body_is_serialized_and_headers_are_kept() {
    let e = engine(
        "function transform(event) {\n  return { body: { cents: event.body.amount * 100, type: event.type }, headers: { 'X-Source': event.provider } };\n}",
    );
    let Transformed::Deliver(p) = e.run("t.js", &input()).unwrap() else {
        panic!("delivered")
    };
    assert_eq!(p.body, br#"{"cents":500,"type":"charge.succeeded"}"#);
    assert_eq!(p.content_type.as_deref(), Some("application/json"));
    assert_eq!(
        p.headers.get("x-source").map(String::as_str),
        Some("stripe")
    );
}

#[test]
fn a_string_body_is_sent_as_is_with_its_content_type() {
    let e = engine(
        "function transform(e) { return { body: 'amount=' + e.body.amount, headers: { 'content-type': 'application/x-www-form-urlencoded' } }; }",
    );
    let Transformed::Deliver(p) = e.run("t.js", &input()).unwrap() else {
        panic!("delivered")
    };
    assert_eq!(p.body, b"amount=5");
    assert_eq!(
        p.content_type.as_deref(),
        Some("application/x-www-form-urlencoded")
    );
    assert!(p.headers.is_empty());
    let plain = engine("function transform(e) { return { body: e.text }; }");
    let Transformed::Deliver(p) = plain.run("t.js", &input()).unwrap() else {
        panic!("delivered")
    };
    assert_eq!(p.content_type.as_deref(), Some("text/plain; charset=utf-8"));
}

#[test]
fn null_skips() {
    let e =
        engine("function transform(e) { return e.body.amount > 10 ? { body: e.body } : null; }");
    assert_eq!(e.run("t.js", &input()).unwrap(), Transformed::Skip);
}

#[test]
fn wrong_shapes_are_refused_with_what_was_wrong() {
    for (source, expected) in [
        (
            "function transform(e) { }",
            "undefined (did the function `return`?)",
        ),
        (
            "function transform(e) { return 'x'; }",
            "it returned a value of type string",
        ),
        (
            "function transform(e) { return [1]; }",
            "it returned an array",
        ),
        (
            "function transform(e) { return { bdy: 1 }; }",
            "unknown key \"bdy\"",
        ),
        (
            "function transform(e) { return { headers: {} }; }",
            "has no `body`",
        ),
        (
            "function transform(e) { return { body: () => 1 }; }",
            "no JSON form",
        ),
        (
            "function transform(e) { return { body: 'x', headers: { a: 1 } }; }",
            "header \"a\" is a value of type int, not a string",
        ),
        (
            "function transform(e) { return { body: 'x', headers: { 'X-Hookd-Event-Id': 'forged' } }; }",
            "set by hookd",
        ),
        (
            "function transform(e) { return { body: 'x', headers: [] }; }",
            "`headers` is an array",
        ),
        (
            "async function transform(e) { return { body: 'x' }; }",
            "Promise",
        ),
    ] {
        let err = engine(source).run("t.js", &input()).unwrap_err();
        assert!(
            matches!(err, TransformError::Shape { .. }),
            "{source}: {err}"
        );
        let text = err.to_string();
        assert!(text.starts_with("transform t.js: "), "{text}");
        assert!(text.contains(expected), "{source}: {text}");
        assert!(
            text.contains("expected null (skip) or { body, headers }"),
            "{text}"
        );
    }
}

#[test]
fn a_throw_names_the_file_and_line() {
    let e = engine(
        "function transform(e) {\n  const x = 1;\n  throw new TypeError('no amount in ' + e.type);\n}",
    );
    let err = e.run("t.js", &input()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "transform t.js:3: TypeError: no amount in charge.succeeded"
    );
    let e = engine("function transform(e) {\n  return e.nothing.deeper;\n}");
    let err = e.run("t.js", &input()).unwrap_err().to_string();
    assert!(err.starts_with("transform t.js:2: TypeError: "), "{err}");
    let e = engine("function transform(e) { throw 'plain'; }");
    let err = e.run("t.js", &input()).unwrap_err().to_string();
    assert_eq!(err, "transform t.js: threw \"plain\"");
}

#[test]
fn an_endless_loop_is_stopped_at_the_time_cap_and_the_engine_goes_on() {
    let e = Engine::new(
        &settings(),
        &[
            script("loop.js", "function transform(e) { for (;;) {} }"),
            script(
                "catch.js",
                "function transform(e) { try { for (;;) {} } catch (x) { return { body: 'escaped' }; } }",
            ),
            script("ok.js", "function transform(e) { return { body: 'ok' }; }"),
        ],
    )
    .unwrap();
    for name in ["loop.js", "catch.js"] {
        let started = std::time::Instant::now();
        let err = e.run(name, &input()).unwrap_err();
        assert!(matches!(err, TransformError::Timeout { .. }), "{err}");
        assert_eq!(
            err.to_string(),
            format!("transform {name}: stopped after 200 ms (HOOKD_TRANSFORM_TIMEOUT_MS)")
        );
        // Generous: the machine may be loaded; the point is that it returns.
        assert!(started.elapsed() < Duration::from_secs(20));
    }
    assert!(matches!(
        e.run("ok.js", &input()).unwrap(),
        Transformed::Deliver(_)
    ));
}

#[test]
fn unbounded_allocation_hits_the_memory_cap_and_the_engine_goes_on() {
    let e = Engine::new(
        &TransformSettings {
            timeout: Duration::from_secs(30),
            ..settings()
        },
        &[
            script(
                "grow.js",
                "function transform(e) { const a = []; for (;;) { a.push('x'.repeat(1024) + a.length); } }",
            ),
            script("ok.js", "function transform(e) { return { body: 'ok' }; }"),
        ],
    )
    .unwrap();
    let err = e.run("grow.js", &input()).unwrap_err();
    assert!(matches!(err, TransformError::Memory { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        "transform grow.js: out of memory (the cap is 8 MB, HOOKD_TRANSFORM_MEMORY_MB)"
    );
    assert!(matches!(
        e.run("ok.js", &input()).unwrap(),
        Transformed::Deliver(_)
    ));
}

#[test]
fn a_script_that_does_not_compile_names_the_file_and_line() {
    let Err(err) = Engine::new(
        &settings(),
        &[script(
            "bad.js",
            "function transform(e) {\n  return {\n    body: e.body,,\n  };\n}",
        )],
    ) else {
        panic!("a syntax error must not load")
    };
    assert!(matches!(err, TransformError::Compile { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.starts_with("transform bad.js:3: SyntaxError: "),
        "{text}"
    );
    let Err(err) = Engine::new(&settings(), &[script("none.js", "const x = 1;")]) else {
        panic!("a script without transform must not load")
    };
    assert_eq!(
        err.to_string(),
        "transform none.js: the script must define `function transform(event)`"
    );
    let Err(err) = Engine::new(&settings(), &[script("top.js", "for (;;) {}")]) else {
        panic!("a top level that never ends must not load")
    };
    assert!(matches!(err, TransformError::Timeout { .. }), "{err}");
}

#[test]
fn scripts_have_no_io() {
    // No module loader, no std/os modules, no host functions: only the language.
    let e = engine(
        "function transform(e) { return { body: [typeof require, typeof process, typeof std, typeof os, typeof fetch, typeof XMLHttpRequest].join(',') }; }",
    );
    let Transformed::Deliver(p) = e.run("t.js", &input()).unwrap() else {
        panic!("delivered")
    };
    assert_eq!(
        String::from_utf8(p.body).unwrap(),
        "undefined,undefined,undefined,undefined,undefined,undefined"
    );
    let e = engine("function transform(e) { import('os'); return null; }");
    assert!(
        e.run("t.js", &input()).is_ok(),
        "a dynamic import is only a rejected promise"
    );
}

#[tokio::test]
async fn the_pool_runs_calls_off_the_runtime_and_reports_load_errors() {
    let t = Transforms::start(
        &TransformSettings {
            threads: 2,
            ..settings()
        },
        &[
            script(
                "ok.js",
                "function transform(e) { return { body: e.provider }; }",
            ),
            script("loop.js", "function transform(e) { for (;;) {} }"),
        ],
    )
    .unwrap();
    let ok: Arc<str> = "ok.js".into();
    let looping: Arc<str> = "loop.js".into();
    // A looping call holds one thread; the other keeps answering.
    let stuck = tokio::spawn({
        let t = t.clone();
        async move { t.run(&looping, input()).await }
    });
    let Transformed::Deliver(p) = t.run(&ok, input()).await.unwrap() else {
        panic!("delivered")
    };
    assert_eq!(p.body, b"stripe");
    assert!(matches!(
        stuck.await.unwrap(),
        Err(TransformError::Timeout { .. })
    ));
    let unknown = t.run(&"other.js".into(), input()).await.unwrap_err();
    assert_eq!(
        unknown.to_string(),
        "transform other.js: no such script is loaded"
    );
    let Err(err) = Transforms::start(&settings(), &[script("bad.js", "function (")]) else {
        panic!("a syntax error must stop the pool's start")
    };
    assert!(
        err.to_string()
            .starts_with("transform bad.js:1: SyntaxError"),
        "{err}"
    );
}

#[test]
fn an_event_file_may_give_the_body_or_the_text() {
    let from_body: TransformInput =
        serde_json::from_str(r#"{"provider":"github","type":"push","body":{"ref":"main"}}"#)
            .unwrap();
    assert_eq!(from_body.complete().text, r#"{"ref":"main"}"#);
    let from_text: TransformInput = serde_json::from_str(r#"{"text":"{\"a\":1}"}"#).unwrap();
    assert_eq!(from_text.complete().body, serde_json::json!({"a": 1}));
    // What `hookd events show --json` prints: `event_type`, and the raw body as a string.
    let shown: TransformInput = serde_json::from_str(
        r#"{"id":"x","event_type":"push","status":"completed","body":"{\"ref\":\"main\"}","body_encoding":"utf8"}"#,
    )
    .unwrap();
    let shown = shown.complete();
    assert_eq!(shown.event_type, "push");
    assert_eq!(shown.text, r#"{"ref":"main"}"#);
    assert_eq!(shown.body, serde_json::json!({"ref": "main"}));
    let form: TransformInput = serde_json::from_str(r#"{"text":"a=1"}"#).unwrap();
    assert!(form.complete().body.is_null());
    let missing = Script::read(Path::new("/nonexistent/x.js")).unwrap_err();
    assert!(
        missing
            .to_string()
            .starts_with("transform /nonexistent/x.js: cannot read: "),
        "{missing}"
    );
}

#[test]
fn the_default_caps_fit_the_largest_body_hookd_accepts() {
    // HOOKD_MAX_BODY_BYTES defaults to 1 MiB: a body that size, of many small objects (the
    // costliest shape to parse), goes through an identity transform under the default caps.
    let item = r#"{"id":"in_1QbLx2EfGh7aB1cD","amount":4999,"currency":"eur","tags":["a","b"]},"#;
    let mut text = String::from(r#"{"items":["#);
    while text.len() + item.len() < (1 << 20) - 2 {
        text.push_str(item);
    }
    text.pop();
    text.push_str("]}");
    let e = Engine::new(
        &TransformSettings::default(),
        &[script(
            "id.js",
            "function transform(e) { return { body: e.body }; }",
        )],
    )
    .unwrap();
    let event = TransformInput {
        text: text.clone(),
        ..TransformInput::default()
    }
    .complete();
    let Transformed::Deliver(p) = e.run("id.js", &event).unwrap() else {
        panic!("delivered")
    };
    assert_eq!(p.body.len(), text.len());
}
