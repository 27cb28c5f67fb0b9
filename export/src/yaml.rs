//! A YAML writer for the manifests: block style, so that they read like the ones people
//! write. Strings that could be read as anything else are double-quoted (JSON escapes are
//! valid YAML); multi-line files (a VCL) are literal blocks. (A writer of our own: serde_yaml
//! is no longer maintained, and these manifests need nothing more.)

use serde_json::Value;

/// Documents separated by `---`.
pub fn documents(docs: &[Value]) -> String {
    let mut out = String::new();
    for doc in docs {
        out.push_str("---\n");
        node(doc, 0, &mut out);
    }
    out
}

fn node(value: &Value, indent: usize, out: &mut String) {
    match value {
        Value::Object(map) => {
            for (key, value) in map {
                out.push_str(&" ".repeat(indent));
                out.push_str(&scalar_key(key));
                out.push(':');
                after_key(value, indent, out);
            }
        }
        Value::Array(items) => {
            for item in items {
                out.push_str(&" ".repeat(indent));
                out.push('-');
                match item {
                    Value::Object(map) if !map.is_empty() => {
                        // The first key on the dash's line, the others aligned under it.
                        let mut first = true;
                        for (key, value) in map {
                            if first {
                                out.push(' ');
                                first = false;
                            } else {
                                out.push_str(&" ".repeat(indent + 2));
                            }
                            out.push_str(&scalar_key(key));
                            out.push(':');
                            after_key(value, indent + 2, out);
                        }
                    }
                    other => after_key(other, indent, out),
                }
            }
        }
        other => {
            out.push_str(&" ".repeat(indent));
            out.push_str(&scalar(other));
            out.push('\n');
        }
    }
}

/// What follows `key:` (or `-`): a scalar on the same line, or a nested block.
fn after_key(value: &Value, indent: usize, out: &mut String) {
    match value {
        Value::Object(map) if map.is_empty() => out.push_str(" {}\n"),
        Value::Array(items) if items.is_empty() => out.push_str(" []\n"),
        Value::Object(_) => {
            out.push('\n');
            node(value, indent + 2, out);
        }
        Value::Array(_) => {
            out.push('\n');
            node(value, indent, out);
        }
        Value::String(text) if is_block(text) => {
            let chomp = if text.ends_with("\n\n") {
                "+"
            } else if text.ends_with('\n') {
                ""
            } else {
                "-"
            };
            out.push_str(&format!(" |{chomp}\n"));
            for line in text.strip_suffix('\n').unwrap_or(text).split('\n') {
                if !line.is_empty() {
                    out.push_str(&" ".repeat(indent + 2));
                    out.push_str(line);
                }
                out.push('\n');
            }
        }
        other => {
            out.push(' ');
            out.push_str(&scalar(other));
            out.push('\n');
        }
    }
}

/// A multi-line text that a literal block keeps as it is.
fn is_block(text: &str) -> bool {
    text.contains('\n')
        && !text.starts_with([' ', '\t', '\n'])
        && text.lines().all(|l| !l.ends_with([' ', '\t']))
        && !text.contains('\r')
}

fn scalar_key(key: &str) -> String {
    if plain(key) {
        key.to_string()
    } else {
        Value::String(key.to_string()).to_string()
    }
}

fn scalar(value: &Value) -> String {
    match value {
        Value::String(text) if plain(text) => text.clone(),
        other => other.to_string(),
    }
}

/// A string YAML reads back as the same string without quotes.
fn plain(text: &str) -> bool {
    const TAKEN: [&str; 12] = [
        "true", "false", "yes", "no", "on", "off", "null", "~", "y", "n", "", ".",
    ];
    !TAKEN.contains(&text.to_ascii_lowercase().as_str())
        && text.parse::<f64>().is_err()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-./".contains(c))
        && !text.starts_with(['-', '.'])
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn block_style_with_quoting_where_needed() {
        let doc = json!({
            "kind": "Service",
            "metadata": {"name": "hello", "labels": {"app.kubernetes.io/name": "hello"}},
            "spec": {
                "ports": [{"port": 8080, "name": "http"}],
                "list": ["a b", "true", "8080", "-x", "/srv/x"],
                "empty": [],
                "none": {},
                "vcl": "vcl 4.1;\nbackend default {}\n",
                "flag": true
            }
        });
        let expected = r#"---
kind: Service
metadata:
  name: hello
  labels:
    app.kubernetes.io/name: hello
spec:
  ports:
  - port: 8080
    name: http
  list:
  - "a b"
  - "true"
  - "8080"
  - "-x"
  - /srv/x
  empty: []
  none: {}
  vcl: |
    vcl 4.1;
    backend default {}
  flag: true
"#;
        assert_eq!(documents(&[doc]), expected);
    }
}
