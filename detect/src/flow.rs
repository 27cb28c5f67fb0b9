//! Request Flow: which middlewares sit between the public port and the app, in which order.
//! Active by presence (Otoroshi challenge, Varnish, Redirection.io, in that order), or exactly
//! the list in `CC_REQUEST_FLOW`; `disable` for none, `block` to block public access.

use crate::DetectError;
use plan::{Env, Middleware, RequestFlow};
use std::path::Path;

const OTOROSHI_SECRET: &str = "OTOROSHI_CHALLENGE_SECRET";
const REDIRECTIONIO_KEY: &str = "CC_REDIRECTIONIO_PROJECT_KEY";
const DEFAULT_VCL: &str = "clevercloud/varnish.vcl";
const DEFAULT_STORAGE_SIZE: &str = "1G";

/// The request flow, and the variables it leaves without effect.
pub fn request_flow(env: &Env, app_dir: &Path) -> Result<(RequestFlow, Vec<String>), DetectError> {
    let mut ignored = Vec::new();
    let Some(value) = env.non_empty("CC_REQUEST_FLOW").map(str::trim) else {
        // `custom` is never auto-detected: its command alone does nothing.
        if env.non_empty("CC_REQUEST_FLOW_CUSTOM").is_some() {
            ignored.push("CC_REQUEST_FLOW_CUSTOM".to_string());
        }
        let flow = RequestFlow {
            source: "auto".into(),
            blocked: false,
            middlewares: auto_detected(env, app_dir)?,
        };
        return Ok((flow, ignored));
    };

    let names = parse_flow_list(value)?;
    let mut flow = RequestFlow {
        source: "CC_REQUEST_FLOW".into(),
        blocked: false,
        middlewares: Vec::new(),
    };
    match names.as_slice() {
        ["disable"] => {}
        ["block"] => flow.blocked = true,
        _ => {
            for name in &names {
                flow.middlewares.push(configured(name, env, app_dir)?);
            }
        }
    }
    // Services configured but left out of the chain: say so rather than drop them silently.
    for (name, variable) in [
        ("otoroshi-challenge", OTOROSHI_SECRET),
        ("varnish", "CC_VARNISH_FILE"),
        ("redirectionio", REDIRECTIONIO_KEY),
        ("custom", "CC_REQUEST_FLOW_CUSTOM"),
    ] {
        if !names.contains(&name) && env.non_empty(variable).is_some() {
            ignored.push(variable.to_string());
        }
    }
    Ok((flow, ignored))
}

/// Splits and checks `CC_REQUEST_FLOW`: known names, none empty or repeated, and the keywords
/// `block` and `disable` only alone.
fn parse_flow_list(value: &str) -> Result<Vec<&str>, DetectError> {
    let names: Vec<&str> = value.split(',').map(str::trim).collect();
    for (i, name) in names.iter().enumerate() {
        if name.is_empty() {
            return Err(DetectError::EmptyMiddlewareName(value.into()));
        }
        let is_keyword = matches!(*name, "block" | "disable");
        if !is_keyword && !Middleware::NAMES.contains(name) {
            return Err(DetectError::UnknownMiddleware(name.to_string()));
        }
        if is_keyword && names.len() > 1 {
            return Err(DetectError::KeywordNotAlone {
                keyword: name.to_string(),
                value: value.into(),
            });
        }
        if names[..i].contains(name) {
            return Err(DetectError::DuplicateMiddleware {
                name: name.to_string(),
                value: value.into(),
            });
        }
    }
    Ok(names)
}

fn auto_detected(env: &Env, app_dir: &Path) -> Result<Vec<Middleware>, DetectError> {
    let mut middlewares = Vec::new();
    if env.non_empty(OTOROSHI_SECRET).is_some() {
        middlewares.push(otoroshi());
    }
    if let Some(varnish) = varnish(env, app_dir)? {
        middlewares.push(varnish);
    }
    if env.non_empty(REDIRECTIONIO_KEY).is_some() {
        middlewares.push(redirectionio(env, app_dir));
    }
    Ok(middlewares)
}

/// A middleware that `CC_REQUEST_FLOW` names: its configuration must be there.
fn configured(name: &str, env: &Env, app_dir: &Path) -> Result<Middleware, DetectError> {
    let missing = |name, variable| DetectError::MiddlewareNotConfigured { name, variable };
    match name {
        "otoroshi-challenge" => match env.non_empty(OTOROSHI_SECRET) {
            Some(_) => Ok(otoroshi()),
            None => Err(missing("otoroshi-challenge", OTOROSHI_SECRET)),
        },
        "varnish" => varnish(env, app_dir)?.ok_or(DetectError::VarnishNotConfigured),
        "redirectionio" => match env.non_empty(REDIRECTIONIO_KEY) {
            Some(_) => Ok(redirectionio(env, app_dir)),
            None => Err(missing("redirectionio", REDIRECTIONIO_KEY)),
        },
        "custom" => custom(env),
        other => Err(DetectError::UnknownMiddleware(other.into())),
    }
}

fn otoroshi() -> Middleware {
    Middleware::OtoroshiChallenge {
        secret_env: OTOROSHI_SECRET.into(),
    }
}

/// Varnish is on when `CC_VARNISH_FILE` is set (the file must exist) or the default VCL exists.
/// Either must resolve inside the application: a link to a file elsewhere is refused before
/// anything reads it.
fn varnish(env: &Env, app_dir: &Path) -> Result<Option<Middleware>, DetectError> {
    let (variable, value) = match env.non_empty("CC_VARNISH_FILE").map(str::trim) {
        Some(value) => ("CC_VARNISH_FILE", value),
        None if app_dir.join(DEFAULT_VCL).exists() => (DEFAULT_VCL, DEFAULT_VCL),
        None => return Ok(None),
    };
    // A path from the app root: `/config/varnish.vcl` means `<app>/config/varnish.vcl`.
    let relative = value.trim_start_matches('/');
    let looked = app_dir.join(relative);
    let resolved = match looked.canonicalize() {
        Ok(resolved) => resolved,
        Err(_) if variable == DEFAULT_VCL => looked.clone(),
        Err(_) => {
            return Err(DetectError::VarnishFileMissing {
                value: value.into(),
                looked,
            })
        }
    };
    if !resolved.starts_with(app_dir) {
        return Err(DetectError::VarnishFileOutside {
            variable,
            value: value.into(),
            resolved,
            app_dir: app_dir.into(),
        });
    }
    if !resolved.is_file() {
        return Err(DetectError::VarnishFileMissing {
            value: value.into(),
            looked,
        });
    }
    let storage_size = env
        .non_empty("CC_VARNISH_STORAGE_SIZE")
        .map(str::trim)
        .unwrap_or(DEFAULT_STORAGE_SIZE);
    match size_in_bytes(storage_size) {
        None => return Err(DetectError::VarnishStorageSize(storage_size.into())),
        Some(bytes) if bytes > MAX_STORAGE_BYTES => {
            return Err(DetectError::VarnishStorageTooLarge(storage_size.into()))
        }
        Some(_) => {}
    }
    Ok(Some(Middleware::Varnish {
        vcl: relative.to_string(),
        storage_size: storage_size.into(),
    }))
}

/// 1 TiB: more than any instance's memory, and far below what `varnishd` would overflow on.
const MAX_STORAGE_BYTES: u128 = 1 << 40;

/// What `varnishd -s malloc,SIZE` accepts (digits and an optional unit), in bytes.
fn size_in_bytes(s: &str) -> Option<u128> {
    let digits = s.trim_end_matches(|c: char| "kKmMgGtT".contains(c));
    if s.len() - digits.len() > 1
        || digits.is_empty()
        || !digits.chars().all(|c| c.is_ascii_digit())
    {
        return None;
    }
    let shift = match s[digits.len()..].to_ascii_lowercase().as_str() {
        "" => 0,
        "k" => 10,
        "m" => 20,
        "g" => 30,
        _ => 40,
    };
    digits.parse::<u128>().ok()?.checked_mul(1 << shift)
}

fn redirectionio(env: &Env, app_dir: &Path) -> Middleware {
    let instance_name = env
        .non_empty("CC_REDIRECTIONIO_INSTANCE_NAME")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|| {
            app_dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "app".into())
        });
    Middleware::Redirectionio {
        project_key_env: REDIRECTIONIO_KEY.into(),
        instance_name,
    }
}

fn custom(env: &Env) -> Result<Middleware, DetectError> {
    let command = env
        .non_empty("CC_REQUEST_FLOW_CUSTOM")
        .ok_or(DetectError::MiddlewareNotConfigured {
            name: "custom",
            variable: "CC_REQUEST_FLOW_CUSTOM",
        })?
        .trim();
    for placeholder in ["@@LISTEN_PORT@@", "@@FORWARD_PORT@@"] {
        if !command.contains(placeholder) {
            return Err(DetectError::CustomPlaceholder {
                value: command.into(),
                missing: placeholder,
            });
        }
    }
    Ok(Middleware::Custom {
        command: plan::secret::hide_in_shell(command, env),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An app directory with a `clevercloud/varnish.vcl` and a `config/other.vcl`.
    fn app_with_vcl() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("clevercloud")).unwrap();
        std::fs::create_dir_all(dir.path().join("config")).unwrap();
        std::fs::write(dir.path().join("clevercloud/varnish.vcl"), "").unwrap();
        std::fs::write(dir.path().join("config/other.vcl"), "").unwrap();
        dir
    }

    fn names(vars: &[(&str, &str)], app: &Path) -> Result<Vec<&'static str>, DetectError> {
        let (flow, _) = request_flow(&vars.iter().copied().collect(), app)?;
        Ok(flow.middlewares.iter().map(Middleware::name).collect())
    }

    const ALL: &[(&str, &str)] = &[
        ("OTOROSHI_CHALLENGE_SECRET", "s"),
        ("CC_REDIRECTIONIO_PROJECT_KEY", "k"),
        (
            "CC_REQUEST_FLOW_CUSTOM",
            "proxy @@LISTEN_PORT@@ @@FORWARD_PORT@@",
        ),
    ];

    #[test]
    fn auto_detection_and_ordering() {
        let app = app_with_vcl();
        let empty = tempfile::tempdir().unwrap();
        let with = |extra: &[(&'static str, &'static str)]| {
            let mut v = ALL.to_vec();
            v.extend_from_slice(extra);
            v
        };
        type Case<'a> = (Vec<(&'a str, &'a str)>, &'a Path, Vec<&'a str>);
        let cases: Vec<Case> = vec![
            (vec![], empty.path(), vec![]),
            (vec![], app.path(), vec!["varnish"]),
            (
                ALL.to_vec(),
                app.path(),
                vec!["otoroshi-challenge", "varnish", "redirectionio"],
            ),
            (
                ALL.to_vec(),
                empty.path(),
                vec!["otoroshi-challenge", "redirectionio"],
            ),
            (
                with(&[("CC_REQUEST_FLOW", "redirectionio,varnish")]),
                app.path(),
                vec!["redirectionio", "varnish"],
            ),
            (
                with(&[("CC_REQUEST_FLOW", "otoroshi-challenge, custom ,varnish")]),
                app.path(),
                vec!["otoroshi-challenge", "custom", "varnish"],
            ),
            (with(&[("CC_REQUEST_FLOW", "disable")]), app.path(), vec![]),
            (with(&[("CC_REQUEST_FLOW", "block")]), app.path(), vec![]),
        ];
        for (vars, dir, expected) in &cases {
            assert_eq!(&names(vars, dir).unwrap(), expected, "{vars:?}");
        }
    }

    #[test]
    fn block_and_ignored_services() {
        let app = app_with_vcl();
        let mut vars = ALL.to_vec();
        vars.push(("CC_REQUEST_FLOW", "block"));
        let (flow, ignored) = request_flow(&vars.into_iter().collect(), app.path()).unwrap();
        assert!(flow.blocked);
        assert_eq!(
            ignored,
            [
                "OTOROSHI_CHALLENGE_SECRET",
                "CC_REDIRECTIONIO_PROJECT_KEY",
                "CC_REQUEST_FLOW_CUSTOM"
            ]
        );
        let (_, ignored) = request_flow(&ALL.iter().copied().collect(), app.path()).unwrap();
        assert_eq!(ignored, ["CC_REQUEST_FLOW_CUSTOM"]);
    }

    #[test]
    fn varnish_file_and_storage() {
        let app = app_with_vcl();
        let (flow, _) = request_flow(
            &[
                ("CC_VARNISH_FILE", "/config/other.vcl"),
                ("CC_VARNISH_STORAGE_SIZE", "256M"),
            ]
            .into_iter()
            .collect(),
            app.path(),
        )
        .unwrap();
        assert_eq!(
            flow.middlewares,
            [Middleware::Varnish {
                vcl: "config/other.vcl".into(),
                storage_size: "256M".into()
            }]
        );
        for size in ["1G", "512M", "100", "2t"] {
            assert!(size_in_bytes(size).is_some(), "{size}");
        }
        for size in ["", "G", "1GB", "1.5G", "-1G"] {
            assert!(size_in_bytes(size).is_none(), "{size}");
        }
    }

    #[test]
    fn configuration_errors() {
        let app = app_with_vcl();
        let empty = tempfile::tempdir().unwrap();
        let err = |vars: &[(&str, &str)], dir: &Path| names(vars, dir).unwrap_err().to_string();
        assert_eq!(
            err(&[("CC_REQUEST_FLOW", "varnsh")], app.path()),
            "CC_REQUEST_FLOW: unknown middleware \"varnsh\" (known: otoroshi-challenge, varnish, redirectionio, custom, block, disable)"
        );
        assert!(err(&[("CC_REQUEST_FLOW", "custom")], app.path())
            .contains("CC_REQUEST_FLOW_CUSTOM is not set"));
        assert!(err(
            &[
                ("CC_REQUEST_FLOW", "custom"),
                ("CC_REQUEST_FLOW_CUSTOM", "p @@LISTEN_PORT@@")
            ],
            app.path()
        )
        .contains("lacks @@FORWARD_PORT@@"));
        assert!(err(&[("CC_VARNISH_FILE", "/nope.vcl")], app.path())
            .starts_with("CC_VARNISH_FILE: `/nope.vcl` does not exist"));
        assert!(err(&[("CC_REQUEST_FLOW", "varnish")], empty.path())
            .contains("no Varnish configuration"));
        assert!(
            err(&[("CC_REQUEST_FLOW", "otoroshi-challenge")], app.path())
                .contains("OTOROSHI_CHALLENGE_SECRET is not set")
        );
        assert!(
            err(&[("CC_REQUEST_FLOW", "block,varnish")], app.path()).contains("cannot be combined")
        );
        assert!(err(&[("CC_REQUEST_FLOW", "varnish,,")], app.path()).contains("empty name"));
        assert!(err(&[("CC_REQUEST_FLOW", "varnish,varnish")], app.path()).contains("named twice"));
        assert!(err(&[("CC_VARNISH_STORAGE_SIZE", "lots")], app.path())
            .contains("CC_VARNISH_STORAGE_SIZE: `lots`"));
        assert!(err(&[("CC_VARNISH_STORAGE_SIZE", "999999T")], app.path())
            .contains("CC_VARNISH_STORAGE_SIZE: `999999T` is more than"));
    }

    #[test]
    fn a_varnish_file_outside_the_app_is_refused_before_it_is_read() {
        let outer = tempfile::tempdir().unwrap();
        let app = outer.path().join("app");
        std::fs::create_dir_all(app.join("clevercloud")).unwrap();
        std::fs::write(outer.path().join("outside.vcl"), "secret line\n").unwrap();
        let app = app.canonicalize().unwrap();
        let err = names(&[("CC_VARNISH_FILE", "../outside.vcl")], &app)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("CC_VARNISH_FILE: `../outside.vcl` resolves to")
                && err.contains("outside the application"),
            "{err}"
        );
        assert!(!err.contains("secret line"));

        std::os::unix::fs::symlink(
            outer.path().join("outside.vcl"),
            app.join("clevercloud/varnish.vcl"),
        )
        .unwrap();
        let err = names(&[], &app).unwrap_err().to_string();
        assert!(
            err.starts_with("clevercloud/varnish.vcl: `clevercloud/varnish.vcl` resolves to"),
            "{err}"
        );
    }
}
