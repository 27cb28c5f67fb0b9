//! Reading and writing plans. A plan is one JSON object; a tool refuses a schema it does not know.

use crate::model::{Plan, SCHEMA};
use serde_json::Value;
use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};

/// Where a tool reads its plan: `--plan FILE`, or stdin (also `--plan -`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlanSource {
    Stdin,
    File(PathBuf),
}

impl PlanSource {
    /// `None` or `-` mean stdin, as the Unix tradition has it.
    pub fn from_flag(flag: Option<&Path>) -> Self {
        match flag {
            Some(p) if p != Path::new("-") => PlanSource::File(p.to_path_buf()),
            _ => PlanSource::Stdin,
        }
    }

    fn describe(&self) -> String {
        match self {
            PlanSource::Stdin => "the plan on stdin".to_string(),
            PlanSource::File(p) => format!("the plan `{}`", p.display()),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("no plan on stdin: stdin is a terminal")]
    StdinIsTerminal { tool: String },
    #[error("cannot read {what}: {source}")]
    Read {
        what: String,
        source: std::io::Error,
    },
    /// Nothing came down the pipe: the step before this one failed and said why.
    #[error("{what} is empty: the step before failed")]
    UpstreamFailed { what: String },
    #[error("{what} is empty")]
    Empty { what: String },
    #[error("{what} is not JSON: {detail}")]
    NotJson { what: String, detail: String },
    #[error("{what} has no `schema` field: it is not a uvdeploy plan")]
    NoSchema { what: String },
    #[error("{what} has schema {found}, this tool reads schema {SCHEMA} only")]
    UnknownSchema { what: String, found: Value },
    #[error("{what} does not fit schema {SCHEMA}: {detail}")]
    Invalid { what: String, detail: String },
}

impl crate::report::Failure for PlanError {
    fn exit_code(&self) -> u8 {
        match self {
            // The step before chose the exit code the pipeline reports.
            PlanError::UpstreamFailed { .. } => crate::report::exit::FAILED,
            _ => crate::report::exit::USAGE,
        }
    }
    fn hint(&self) -> Option<String> {
        match self {
            PlanError::StdinIsTerminal { tool } => Some(format!(
                "pipe one in (`detect APP_DIR | {tool}`) or pass `--plan FILE`"
            )),
            PlanError::Empty { .. } | PlanError::NoSchema { .. } => {
                Some("make one with `detect APP_DIR`".into())
            }
            PlanError::UnknownSchema { .. } => {
                Some("make the plan with the `detect` of the same uvdeploy version".into())
            }
            _ => None,
        }
    }
    fn is_silent(&self) -> bool {
        matches!(self, PlanError::UpstreamFailed { .. })
    }
}

/// Reads and checks a plan. `tool` names the reader in hints.
pub fn read_plan(source: &PlanSource, tool: &str) -> Result<Plan, PlanError> {
    let what = source.describe();
    let text = match source {
        PlanSource::Stdin => {
            let mut stdin = std::io::stdin();
            if stdin.is_terminal() {
                return Err(PlanError::StdinIsTerminal {
                    tool: tool.to_string(),
                });
            }
            let mut text = String::new();
            stdin
                .read_to_string(&mut text)
                .map_err(|source| PlanError::Read {
                    what: what.clone(),
                    source,
                })?;
            if text.trim().is_empty() && stdin_is_a_pipe() {
                return Err(PlanError::UpstreamFailed { what });
            }
            text
        }
        PlanSource::File(path) => {
            std::fs::read_to_string(path).map_err(|source| PlanError::Read {
                what: what.clone(),
                source,
            })?
        }
    };
    parse_plan(&text, &what)
}

/// Whether stdin is a pipe: an empty pipe means the step before failed (a file or
/// `/dev/null` given by hand is not a pipe, and its emptiness is worth an error).
fn stdin_is_a_pipe() -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::metadata("/dev/stdin").is_ok_and(|m| m.file_type().is_fifo())
}

/// Parses plan text; `what` names where it came from in errors.
pub fn parse_plan(text: &str, what: &str) -> Result<Plan, PlanError> {
    let what = what.to_string();
    if text.trim().is_empty() {
        return Err(PlanError::Empty { what });
    }
    let value: Value = serde_json::from_str(text).map_err(|e| PlanError::NotJson {
        what: what.clone(),
        detail: e.to_string(),
    })?;
    match value.get("schema") {
        None => return Err(PlanError::NoSchema { what }),
        Some(Value::Number(n)) if n.as_u64() == Some(u64::from(SCHEMA)) => {}
        Some(other) => {
            return Err(PlanError::UnknownSchema {
                what,
                found: other.clone(),
            })
        }
    }
    let mut plan: Plan = serde_json::from_value(value).map_err(|e| PlanError::Invalid {
        what,
        detail: e.to_string(),
    })?;
    plan.migrate();
    Ok(plan)
}

/// The plan's JSON Schema (draft 2020-12), generated from these types: `docs/plan.schema.json`
/// is this, and a test keeps it current.
pub fn schema() -> String {
    let schema = serde_json::to_value(schemars::schema_for!(Plan)).expect("a schema serializes");
    serde_json::to_string_pretty(&sorted(schema)).expect("a schema serializes") + "\n"
}

/// The keys of every object in order: the same text whatever the build's serde_json features
/// (`export` turns on `preserve_order`, and Cargo unifies features across the workspace).
fn sorted(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(entries.into_iter().map(|(k, v)| (k, sorted(v))).collect())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(sorted).collect()),
        other => other,
    }
}

/// Writes the plan on stdout, for `main`: a reader that went away is a quiet end
/// ([`crate::report::WriteError`]).
pub fn print_plan(plan: &Plan, pretty: bool) -> Result<(), crate::report::WriteError> {
    write_plan(plan, pretty, &mut std::io::stdout().lock()).map_err(crate::report::WriteError)
}

/// Writes the plan as one JSON document and a newline; `pretty` for people.
pub fn write_plan(plan: &Plan, pretty: bool, out: &mut impl Write) -> std::io::Result<()> {
    let text = if pretty {
        serde_json::to_string_pretty(plan)
    } else {
        serde_json::to_string(plan)
    }
    .map_err(std::io::Error::other)?;
    writeln!(out, "{text}")?;
    out.flush()
}

/// A new state directory for a deployment of app `name` under `tmp`: private by its name,
/// which cannot be guessed (no other user can prepare it), and readable by others (0755):
/// varnishd drops to its own user and reads its files there. The one place it is made, for
/// `uvdeploy deploy` and for `flowctl` on its own.
pub fn new_state_dir(name: &str, tmp: &Path) -> std::io::Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    // Short enough for any file system (and a Unix socket's path), whatever the app is called.
    let short: String = name.chars().take(40).collect();
    let dir = tempfile::Builder::new()
        .prefix(&format!("uvdeploy-{short}."))
        .tempdir_in(tmp)?
        .keep();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../tests/plan-example.json");

    #[test]
    fn the_spec_example_parses_and_round_trips() {
        let plan = parse_plan(EXAMPLE, "example").unwrap();
        assert_eq!(plan.ports.app, 9000);
        assert_eq!(plan.hops.as_ref().unwrap().len(), 2);
        let mut out = Vec::new();
        write_plan(&plan, false, &mut out).unwrap();
        let again = parse_plan(std::str::from_utf8(&out).unwrap(), "again").unwrap();
        assert_eq!(plan, again);
    }

    #[test]
    fn unknown_fields_are_passed_on() {
        let mut value: Value = serde_json::from_str(EXAMPLE).unwrap();
        value["added_by_a_newer_tool"] = serde_json::json!({"x": 1});
        let plan = parse_plan(&value.to_string(), "p").unwrap();
        let out = serde_json::to_value(&plan).unwrap();
        assert_eq!(out["added_by_a_newer_tool"]["x"], 1);
    }

    #[test]
    fn an_unknown_schema_is_refused_by_number() {
        let err = parse_plan(r#"{"schema": 2}"#, "the plan on stdin").unwrap_err();
        assert_eq!(
            err.to_string().lines().next().unwrap(),
            "the plan on stdin has schema 2, this tool reads schema 1 only"
        );
    }

    #[test]
    fn bad_input_says_what_is_wrong() {
        assert!(matches!(
            parse_plan("  \n", "p"),
            Err(PlanError::Empty { .. })
        ));
        assert!(matches!(
            parse_plan("{", "p"),
            Err(PlanError::NotJson { .. })
        ));
        assert!(matches!(
            parse_plan("{}", "p"),
            Err(PlanError::NoSchema { .. })
        ));
        assert!(matches!(
            parse_plan(r#"{"schema": 1}"#, "p"),
            Err(PlanError::Invalid { .. })
        ));
    }

    /// `docs/plan.schema.json` is what the types say; `UVDEPLOY_UPDATE_SCHEMA=1 cargo test -p
    /// uvdeploy-plan` writes it anew after a change of the plan.
    #[test]
    fn the_schema_in_docs_is_current() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/plan.schema.json");
        let current = schema();
        if std::env::var_os("UVDEPLOY_UPDATE_SCHEMA").is_some() {
            std::fs::write(&path, &current).unwrap();
        }
        let written = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            written == current,
            "docs/plan.schema.json is not current: run `UVDEPLOY_UPDATE_SCHEMA=1 cargo test -p uvdeploy-plan` and commit it"
        );
    }

    #[test]
    fn the_example_plan_fits_the_schema_s_top_level_fields() {
        let schema: Value = serde_json::from_str(&schema()).unwrap();
        let example: Value = serde_json::from_str(EXAMPLE).unwrap();
        let properties = schema["properties"].as_object().unwrap();
        for field in example.as_object().unwrap().keys() {
            assert!(properties.contains_key(field), "{field} is in the schema");
        }
        for required in schema["required"].as_array().unwrap() {
            assert!(
                example.get(required.as_str().unwrap()).is_some(),
                "{required}"
            );
        }
    }

    #[test]
    fn dash_means_stdin() {
        assert_eq!(
            PlanSource::from_flag(Some(Path::new("-"))),
            PlanSource::Stdin
        );
        assert_eq!(PlanSource::from_flag(None), PlanSource::Stdin);
        assert_eq!(
            PlanSource::from_flag(Some(Path::new("p.json"))),
            PlanSource::File("p.json".into())
        );
    }
}
