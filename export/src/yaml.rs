//! A YAML writer for the manifests: block style, so that they read like the ones people
//! write. Strings that could be read as anything else are double-quoted (JSON escapes are
//! valid YAML); multi-line files (a VCL) are literal blocks. (A writer of our own: serde_yaml
//! is no longer maintained, and these manifests need nothing more.)

use serde_json::Value;

/// Documents separated by `---`.
pub fn documents(docs: &[Value]) -> String {
    noted(docs, &Default::default())
}

/// Documents separated by `---`, each with the comment lines `notes` holds for its index
/// (what a reader must know that the document cannot say).
pub fn noted(docs: &[Value], notes: &std::collections::BTreeMap<usize, Vec<String>>) -> String {
    let mut out = String::new();
    for (i, doc) in docs.iter().enumerate() {
        out.push_str("---\n");
        for line in notes.get(&i).into_iter().flatten() {
            let line: String = line
                .chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .collect();
            out.push_str(&format!("# {line}\n"));
        }
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

/// A multi-line text that a literal block keeps as it is: no character a block cannot hold
/// (a form feed, NEL, ...: those go double-quoted, escaped), no leading blank, no trailing
/// blank on a line.
fn is_block(text: &str) -> bool {
    text.contains('\n')
        && !text.starts_with([' ', '\t', '\n'])
        && text.lines().all(|l| !l.ends_with([' ', '\t']))
        && text.chars().all(|c| c == '\n' || c == '\t' || printable(c))
}

/// A character YAML (1.1 and 1.2) takes as it is inside a scalar: not a control character,
/// not NEL or the other characters YAML 1.1 reads as line breaks, not a byte-order mark.
fn printable(c: char) -> bool {
    !(c.is_control() || matches!(c, '\u{2028}' | '\u{2029}' | '\u{feff}'))
}

fn scalar_key(key: &str) -> String {
    if plain(key) {
        key.to_string()
    } else {
        quoted(key)
    }
}

fn scalar(value: &Value) -> String {
    match value {
        Value::String(text) if plain(text) => text.clone(),
        Value::String(text) => quoted(text),
        other => other.to_string(),
    }
}

/// A double-quoted scalar: `\` and `"` escaped, every character YAML would not keep as it
/// is written `\uXXXX` (`\t`, `\n` for those two), which YAML 1.1 and 1.2 both read.
fn quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if !printable(c) => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A string that YAML 1.1 and 1.2 parsers all read back as the same string without quotes.
/// Conservative: only letters, digits and `_-./`, never first a digit, a sign or a dot (so
/// no number of any base or form, `1_000`, `0x1F`, `0b101`, `1e3`, `.inf`, no date
/// `2024-01-01`), and none of the words a parser reads as a boolean or null (`yes`, `on`,
/// `y`, `null`, `~`, ..., in any case).
fn plain(text: &str) -> bool {
    const TAKEN: [&str; 11] = [
        "true", "false", "yes", "no", "on", "off", "null", "y", "n", "", "~",
    ];
    !TAKEN.contains(&text.to_ascii_lowercase().as_str())
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-./".contains(c))
        && !text.starts_with(|c: char| c.is_ascii_digit() || "-+.".contains(c))
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
