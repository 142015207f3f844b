//! The configuration is documented twice, in `sidekick.example.toml` and in the README's
//! table; both must list exactly the keys the code has, with its defaults.

use super::Config;
use std::collections::BTreeMap;

/// Defaults that depend on the machine or are too long for a table: how each document
/// shows them instead of the value.
const DESCRIBED: &[(&str, &str)] = &[
    ("model.threads_batch", "number of cores"),
    ("model.seed", "unset"),
    ("storage.keep_messages_days", "keep everything"),
    ("chat.system_prompt", "seed 003's \"regular on this server\" prompt"),
    ("retrieval.index_path", "`<storage.path>/vectors.usearch`"),
    ("train.targets", "all seven projections"),
    ("console.tls_cert", "none (HTTP)"),
    ("console.tls_key", "none"),
];

/// `section.key` → default, from the code (tables other than sections are left out).
fn code_defaults() -> BTreeMap<String, toml::Value> {
    let toml::Value::Table(sections) = toml::Value::try_from(Config::default()).unwrap() else { panic!("a table") };
    let mut out = BTreeMap::new();
    for (section, keys) in sections {
        let toml::Value::Table(keys) = keys else { continue };
        for (key, value) in keys {
            if !value.is_table() {
                out.insert(format!("{section}.{key}"), value);
            }
        }
    }
    // Options without a default are not serialized; they are documented all the same.
    out.entry("model.seed".into()).or_insert(toml::Value::String("unset".into()));
    out.entry("storage.keep_messages_days".into()).or_insert(toml::Value::String("keep everything".into()));
    out
}

/// Equal, taking `f32` settings widened to `f64` (1.1 becomes 1.100000023841858) as equal.
fn same(a: &toml::Value, b: &toml::Value) -> bool {
    match (a.as_float().or(a.as_integer().map(|i| i as f64)), b.as_float().or(b.as_integer().map(|i| i as f64))) {
        (Some(x), Some(y)) if a.is_float() || b.is_float() => (x - y).abs() <= 1e-6 * x.abs().max(1.0),
        _ => a == b,
    }
}

fn repo_file(name: &str) -> String {
    std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(name)).unwrap()
}

#[test]
fn the_example_file_lists_every_key_with_the_code_default() {
    let code = code_defaults();
    let text = repo_file("sidekick.example.toml");
    let example: toml::Table = text.parse().unwrap();
    let mut listed = BTreeMap::new();
    for (section, keys) in &example {
        for (key, value) in keys.as_table().unwrap() {
            if !value.is_table() {
                listed.insert(format!("{section}.{key}"), value.clone());
            }
        }
    }
    // Keys whose default depends on the machine are shown commented out.
    let mut section = String::new();
    for line in text.lines() {
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_string();
        } else if let Some((key, _)) = line.strip_prefix("# ").and_then(|l| l.split_once(" = ")) {
            if DESCRIBED.iter().any(|(k, _)| *k == format!("{section}.{key}")) {
                listed.insert(format!("{section}.{key}"), code[&format!("{section}.{key}")].clone());
            }
        }
    }
    for (key, value) in &code {
        match listed.get(key) {
            None => panic!("sidekick.example.toml does not list {key} (default {value})"),
            Some(shown) if DESCRIBED.iter().all(|(k, _)| k != key) => {
                assert!(same(shown, value), "sidekick.example.toml says {key} = {shown}; the code has {value}")
            }
            Some(_) => {}
        }
    }
    let extra: Vec<_> = listed.keys().filter(|k| !code.contains_key(*k)).collect();
    assert!(extra.is_empty(), "sidekick.example.toml lists keys the code does not have: {extra:?}");
    let reactions = &example["rl"]["reactions"];
    let code_reactions = toml::Value::try_from(&Config::default().rl.reactions).unwrap();
    let (listed, code) = (reactions.as_table().unwrap(), code_reactions.as_table().unwrap());
    assert_eq!(listed.keys().collect::<Vec<_>>(), code.keys().collect::<Vec<_>>(), "[rl.reactions]");
    assert!(listed.iter().all(|(emoji, v)| same(v, &code[emoji])), "[rl.reactions] values");
}

#[test]
fn the_readme_table_lists_every_key_with_the_code_default() {
    let code = code_defaults();
    let readme = repo_file("README.md");
    let mut rows = BTreeMap::new();
    for line in readme.lines() {
        let cells: Vec<&str> = line.split(" | ").map(|c| c.trim_matches(|c| c == '|' || c == ' ')).collect();
        if cells.len() < 3 {
            continue;
        }
        if let Some(key) = cells[0].strip_prefix('`').and_then(|k| k.strip_suffix('`')) {
            if code.contains_key(key)
                || (key.contains('.') && !key.contains(' ') && key.chars().next().is_some_and(|c| c.is_ascii_lowercase()))
            {
                rows.insert(key.to_string(), cells[1].to_string());
            }
        }
    }
    for (key, value) in &code {
        let shown = rows.get(key).unwrap_or_else(|| panic!("the README's configuration table has no row for {key}"));
        if let Some((_, described)) = DESCRIBED.iter().find(|(k, _)| k == key) {
            assert_eq!(shown, described, "{key} in the README");
            continue;
        }
        let plain = shown.trim_matches('`');
        let matches = match value {
            toml::Value::String(s) => plain == s,
            toml::Value::Float(_) => plain.parse::<f64>().is_ok_and(|v| same(&toml::Value::Float(v), value)),
            toml::Value::Integer(i) => plain.parse::<i64>().is_ok_and(|v| v == *i),
            toml::Value::Boolean(b) => plain.parse::<bool>().is_ok_and(|v| v == *b),
            other => plain == other.to_string(),
        };
        assert!(matches, "the README says {key} defaults to {shown}; the code has {value}");
    }
    let extra: Vec<_> = rows.keys().filter(|k| !code.contains_key(*k)).collect();
    assert!(extra.is_empty(), "the README documents keys the code does not have: {extra:?}");
}
