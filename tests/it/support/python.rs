//! The Python tools of `tests/py/` and the test virtualenv they run in (aiosmtpd,
//! standardwebhooks, schemathesis), which `scripts/test.sh` creates. A missing virtualenv fails
//! the test with what to do; it never skips.

/// The Python interpreter of the test virtualenv (aiosmtpd, standardwebhooks), which
/// `scripts/test.sh` creates. Missing means the tests cannot run: fail, never skip.
pub fn python() -> std::path::PathBuf {
    let path = std::env::var_os("HOOKD_TEST_PYTHON")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-venv/bin/python")
        });
    assert!(
        path.exists(),
        "the test virtualenv is missing ({}): run scripts/test.sh, which creates it from \
         tests/py/requirements.txt, or set HOOKD_TEST_PYTHON",
        path.display()
    );
    path
}

/// A script in `tests/py/`.
pub fn py_script(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/py")
        .join(name)
}
