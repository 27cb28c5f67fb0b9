//! Health check paths: `CC_HEALTH_CHECK_PATH`, or `CC_HEALTH_CHECK_PATH_0`, `_1`, ... in
//! numeric order; `/` when none is set.

use crate::DetectError;
use plan::{Env, HealthCheck};

const SINGLE: &str = "CC_HEALTH_CHECK_PATH";
const NUMBERED_PREFIX: &str = "CC_HEALTH_CHECK_PATH_";

pub fn health_check(env: &Env) -> Result<HealthCheck, DetectError> {
    let mut numbered = Vec::new();
    for (name, value) in env.with_prefix(NUMBERED_PREFIX) {
        let suffix = &name[NUMBERED_PREFIX.len()..];
        let index: u32 = suffix.parse().map_err(|_| DetectError::HealthPathIndex {
            variable: name.to_string(),
            suffix: suffix.to_string(),
        })?;
        if !value.trim().is_empty() {
            numbered.push((index, name, value.trim()));
        }
    }
    // Numeric, not lexical: _10 comes after _9.
    numbered.sort_by_key(|(index, _, _)| *index);

    let single = env.non_empty(SINGLE).map(|v| (SINGLE, v.trim()));
    let source = match (single.is_some(), numbered.is_empty()) {
        (false, true) => {
            return Ok(HealthCheck {
                source: "default".into(),
                paths: vec!["/".into()],
            })
        }
        (true, true) => SINGLE,
        (false, false) => "CC_HEALTH_CHECK_PATH_N",
        // Both forms: every path is checked, the single one first.
        (true, false) => "CC_HEALTH_CHECK_PATH+CC_HEALTH_CHECK_PATH_N",
    };
    let mut paths = Vec::new();
    for (variable, value) in single
        .into_iter()
        .chain(numbered.into_iter().map(|(_, n, v)| (n, v)))
    {
        if !value.starts_with('/') {
            return Err(DetectError::HealthPath {
                variable: variable.to_string(),
                value: value.to_string(),
            });
        }
        // A token in a path stays out of the plan; healthcheck puts it back.
        paths.push(plan::secret::hide(value, env));
    }
    Ok(HealthCheck {
        source: source.into(),
        paths,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(vars: &[(&str, &str)]) -> Result<HealthCheck, DetectError> {
        health_check(&vars.iter().copied().collect())
    }

    #[test]
    fn paths_in_every_form() {
        type Case<'a> = (&'a [(&'a str, &'a str)], &'a str, &'a [&'a str]);
        let cases: &[Case] = &[
            (&[], "default", &["/"]),
            (
                &[("CC_HEALTH_CHECK_PATH", "/health")],
                "CC_HEALTH_CHECK_PATH",
                &["/health"],
            ),
            (
                &[
                    ("CC_HEALTH_CHECK_PATH_10", "/ten"),
                    ("CC_HEALTH_CHECK_PATH_2", "/two"),
                    ("CC_HEALTH_CHECK_PATH_0", "/zero"),
                ],
                "CC_HEALTH_CHECK_PATH_N",
                &["/zero", "/two", "/ten"],
            ),
            (
                &[
                    ("CC_HEALTH_CHECK_PATH", "/a"),
                    ("CC_HEALTH_CHECK_PATH_0", "/b"),
                ],
                "CC_HEALTH_CHECK_PATH+CC_HEALTH_CHECK_PATH_N",
                &["/a", "/b"],
            ),
            (&[("CC_HEALTH_CHECK_PATH", "  ")], "default", &["/"]),
        ];
        for (vars, source, paths) in cases {
            let hc = check(vars).unwrap();
            assert_eq!(hc.source, *source, "{vars:?}");
            assert_eq!(hc.paths, *paths, "{vars:?}");
        }
    }

    #[test]
    fn bad_paths_name_the_variable() {
        assert_eq!(
            check(&[("CC_HEALTH_CHECK_PATH_1", "health")]).unwrap_err(),
            DetectError::HealthPath {
                variable: "CC_HEALTH_CHECK_PATH_1".into(),
                value: "health".into()
            }
        );
        assert!(matches!(
            check(&[("CC_HEALTH_CHECK_PATH_X", "/x")]),
            Err(DetectError::HealthPathIndex { .. })
        ));
    }
}
