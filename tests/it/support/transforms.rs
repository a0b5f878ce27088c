//! What tests of JavaScript transforms share: the committed example scripts, and an event's
//! step outcomes as the admin API shows them (a skip is an outcome of its own).

use std::path::Path;

/// The path of a committed example transform (`examples/transforms/<name>`).
pub fn example_transform(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/transforms")
        .join(name)
        .display()
        .to_string()
}

/// The step results of an event as the admin API shows them: (step, outcome), sorted.
pub fn step_outcomes(e: &serde_json::Value) -> Vec<(String, String)> {
    let mut s: Vec<(String, String)> = e["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["step"].as_str().unwrap().to_owned(),
                s["outcome"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    s.sort();
    s
}
