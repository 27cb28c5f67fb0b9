//! Legacy mode's build, as the platform runs it: a virtual environment made with the Python
//! `CC_PYTHON_VERSION` names (one of this machine's, never a download), pip on the
//! requirements with pip's cache kept between builds, then `python setup.py GOAL` when
//! `PYTHON_SETUP_PY_GOAL` is set, between the build hooks. Then what the plan needs (the app
//! server, Celery) must be there.

use crate::{own_venv, result, run_step, BuildError};
use plan::{Env, Plan};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

pub fn build(plan: &mut Plan, env: &Env) -> Result<(), BuildError> {
    let legacy = plan.legacy.clone().ok_or(BuildError::NoLegacySettings)?;
    // Nothing to serve: fail now, not after the whole install.
    if plan.run.is_none() {
        return Err(BuildError::NoAppServer {
            workspace_member: legacy.workspace_member,
        });
    }
    let app_dir = plan.app_dir.clone();
    let python = interpreter(&legacy.python_version, env, &app_dir)?;
    let started = Instant::now();
    let venv = plan.venv();
    plan::hook::run_if_set("CC_PRE_BUILD_HOOK", env, &app_dir, "uvbuild")?;
    own_venv(&venv, &app_dir, env)?;
    make_venv(&python, &venv, env, &app_dir)?;
    let venv_python = venv.join("bin/python").display().to_string();
    let cache = Some(("PIP_CACHE_DIR", plan.build.cache_dir.as_path()));
    match &legacy.requirements {
        Some(file) => {
            // The platform's own words.
            plan::report::say("uvbuild", format_args!("{file} found, using pip..."), env);
            let mut argv = vec![venv_python.clone(), "-m".into()];
            argv.extend(plan.build.argv.iter().cloned());
            argv.extend(["--progress-bar".into(), "off".into()]);
            run_step(&argv, cache, env, &app_dir)?;
        }
        None => plan::report::say("uvbuild", "no requirements.txt: nothing to install", env),
    }
    if let Some(goal) = &legacy.setup_py_goal {
        let argv = [venv_python.clone(), "setup.py".into(), goal.clone()];
        run_step(&argv, cache, env, &app_dir)?;
    }
    plan::hook::run_if_set("CC_POST_BUILD_HOOK", env, &app_dir, "uvbuild")?;
    let requirements = legacy
        .requirements
        .clone()
        .unwrap_or_else(|| "requirements.txt (there is none)".into());
    for need in &legacy.needs {
        let in_venv = venv.join("bin").join(&need.program).is_file();
        let provided = need.or_provided.as_ref().is_some_and(|program| {
            process::command::find_program(program, env.get("PATH").unwrap_or(""), &app_dir).is_ok()
        });
        if !in_venv && !provided {
            return Err(BuildError::MissingPackage {
                program: need.program.clone(),
                package: need.package.clone(),
                because: need.because.clone(),
                requirements: requirements.clone(),
            });
        }
    }
    plan.build.result = Some(result(started, venv));
    Ok(())
}

/// `python3`, `python3.11`, `python2.7`... from PATH.
fn interpreter(version: &str, env: &Env, app_dir: &Path) -> Result<PathBuf, BuildError> {
    let program = format!("python{version}");
    let path = env.get("PATH").unwrap_or("");
    if let Ok(found) = process::command::find_program(&program, path, app_dir) {
        // Asked, not assumed: a pyenv shim for a version pyenv lacks still "exists", and the
        // interpreter behind a shim or a link is what a venv records.
        let real = Command::new(&found)
            .args([
                "-c",
                "import os, sys; print(os.path.realpath(sys.executable))",
            ])
            .current_dir(app_dir)
            .env_clear()
            .envs(env.iter())
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .ok()
            .filter(|out| out.status.success())
            .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_string())
            .filter(|real| !real.is_empty());
        if let Some(real) = real {
            return Ok(real.into());
        }
    }
    let mut found: Vec<String> = std::env::split_paths(path)
        .filter_map(|dir| std::fs::read_dir(dir).ok())
        .flatten()
        .flatten()
        .filter_map(|entry| entry.file_name().into_string().ok())
        .filter(|name| {
            name.strip_prefix("python").is_some_and(|v| {
                !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit() || b == b'.')
            })
        })
        .collect();
    found.sort();
    found.dedup();
    Err(BuildError::PythonNotInstalled {
        version: version.into(),
        program,
        found: if found.is_empty() {
            "none".into()
        } else {
            found.join(", ")
        },
    })
}

/// Makes the venv with `python`, unless the app's was made with it already (`uvbuild APP_DIR`
/// run again: then pip only checks what is installed). A venv of another Python is made anew.
fn make_venv(python: &Path, venv: &Path, env: &Env, app_dir: &Path) -> Result<(), BuildError> {
    let cfg = std::fs::read_to_string(venv.join("pyvenv.cfg")).unwrap_or_default();
    let made_with = cfg.lines().find_map(|line| {
        let (key, value) = line.split_once('=')?;
        (key.trim() == "executable").then(|| value.trim().to_string())
    });
    let wanted = python.display().to_string();
    if made_with.as_deref() == Some(wanted.as_str()) && venv.join("bin/python").exists() {
        return Ok(());
    }
    let argv = [
        wanted,
        "-m".into(),
        "venv".into(),
        "--clear".into(),
        venv.display().to_string(),
    ];
    run_step(&argv, None, env, app_dir)
}
