//! Becoming the process: the files written, the pre-run hook and the manage tasks run, the
//! port checked free, then `execve` (or, for a shell that must stay, supervision in place).

use crate::files::write_file;
use crate::{supervise, Launch, LaunchError};
use plan::report::exit;
use process::command::{find_program, ProgramError};
use std::ffi::CString;
use std::path::{Path, PathBuf};

/// Asks the kernel to send SIGTERM to this process (and so to the program it becomes: the
/// setting survives exec) when the parent that started it dies, even by SIGKILL, so that a
/// supervisor killed outright leaves no orphan. `parent` is the PID read at start-up: if the
/// parent is already gone, there is nothing to wait for.
pub fn die_with_parent(parent: nix::unistd::Pid) -> Result<(), LaunchError> {
    nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGTERM).map_err(|e| {
        LaunchError::Exec {
            path: "prctl(PR_SET_PDEATHSIG)".into(),
            reason: e.desc().to_string(),
        }
    })?;
    if nix::unistd::getppid() != parent {
        return Err(LaunchError::ParentGone);
    }
    Ok(())
}

/// Writes the hop's files, runs the pre-run hook, and replaces this process with the
/// command. Returns only on failure, or when the shell had to stay (a list, a pipeline, a
/// background job): then with the exit status the launcher must end with.
pub fn exec(launch: &Launch) -> Result<u8, LaunchError> {
    for file in &launch.files {
        write_file(file)?;
    }
    std::env::set_current_dir(&launch.cwd).map_err(|e| LaunchError::Chdir {
        path: launch.cwd.clone(),
        reason: e.to_string(),
    })?;
    // Resolve before the hook runs, so a missing command fails fast.
    let program = resolve(
        &launch.argv[0],
        launch.env.get("PATH").unwrap_or(""),
        &launch.cwd,
    )?;
    if let Some((port, what)) = &launch.binds {
        check_port_free(*port, what)?;
    }
    if let Some(hook) = &launch.pre_run_hook {
        plan::hook::run(
            "CC_PRE_RUN_HOOK",
            hook,
            &launch.env,
            &launch.cwd,
            "launcher",
        )?;
    }
    for task in &launch.manage_tasks {
        manage_task(task, launch)?;
    }
    if launch.supervise_shell && process::command::shell_stays(&launch.argv) {
        // A list, a pipeline, a background job: the shell stays, so this process stays too,
        // in its place, to pass signals on and report how it all ended.
        return Ok(supervise::run(&program, launch));
    }
    let c =
        |s: &str| CString::new(s).unwrap_or_else(|_| CString::new(s.replace('\0', "")).unwrap());
    let path =
        CString::new(program.as_os_str().as_encoded_bytes()).map_err(|e| LaunchError::Exec {
            path: program.clone(),
            reason: e.to_string(),
        })?;
    let argv: Vec<CString> = launch.argv.iter().map(|a| c(a)).collect();
    let envp: Vec<CString> = launch
        .env
        .iter()
        .map(|(k, v)| c(&format!("{k}={v}")))
        .collect();
    let err = nix::unistd::execve(&path, &argv, &envp).unwrap_err();
    Err(LaunchError::Exec {
        path: program,
        reason: err.desc().to_string(),
    })
}

/// `python manage.py TASK` (the task's words split as a shell would), in the app and its venv;
/// a failure fails the deployment, as on the platform.
fn manage_task(task: &str, launch: &Launch) -> Result<(), LaunchError> {
    plan::report::say(
        "launcher",
        format_args!("running manage.py task: {task}"),
        &launch.env,
    );
    // `python manage.py` and the task's words, as the pod's init containers run them too.
    let argv = plan::legacy::manage_task_argv(task);
    let failed = |status: String, code: u8| LaunchError::ManageTask {
        task: task.to_string(),
        status,
        code,
    };
    let python = resolve("python", launch.env.get("PATH").unwrap_or(""), &launch.cwd)?;
    let status = std::process::Command::new(python)
        .args(&argv[1..])
        .current_dir(&launch.cwd)
        .env_clear()
        .envs(launch.env.iter())
        .stdin(std::process::Stdio::null())
        .stdout(std::io::stderr())
        .status()
        .map_err(|e| failed(e.to_string(), exit::FAILED))?;
    if status.success() {
        return Ok(());
    }
    let code = status
        .code()
        .and_then(|c| u8::try_from(c).ok())
        .unwrap_or(exit::FAILED)
        .max(1);
    Err(failed(status.to_string(), code))
}

/// The port must be free now, just before the process binds it: a busy port fails here,
/// naming what holds it, rather than as the app's own bind error.
fn check_port_free(port: u16, what: &str) -> Result<(), LaunchError> {
    if std::net::TcpListener::bind(("0.0.0.0", port)).is_ok() {
        return Ok(());
    }
    // A failed bind is not a listener: connections closed moments ago (TIME-WAIT) hold the
    // port too, for a minute, and the process may bind otherwise than this check (another
    // address, SO_REUSEPORT). Only a listening socket makes the port taken; without one the
    // process's own bind decides. (Without `/proc`, the failed bind is all there is.)
    let table = process::listeners();
    if table
        .as_ref()
        .is_some_and(|table| !table.iter().any(|l| l.port == port))
    {
        return Ok(());
    }
    let table = table.unwrap_or_default();
    let holder = process::holder_of(port, &table)
        .map(|(pid, command)| format!(", by PID {pid}: {command}"))
        .unwrap_or_default();
    Err(LaunchError::PortInUse {
        port,
        what: what.to_string(),
        holder,
    })
}

/// Makes this process the leader of a new process group and records its PID in `file`, so
/// that a supervisor of your own can stop it and everything it starts, whatever happens to
/// the supervisor itself (scripts/deploy does not use it: uvsupervise makes the groups).
pub fn lead_group(file: &Path) -> Result<(), LaunchError> {
    use std::io::Write;
    let err = |e: String| LaunchError::Group(e);
    nix::unistd::setpgid(nix::unistd::Pid::from_raw(0), nix::unistd::Pid::from_raw(0))
        .map_err(|e| err(e.desc().to_string()))?;
    let mut out = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(file)
        .map_err(|e| err(format!("{}: {e}", file.display())))?;
    // One write of the whole line: with O_APPEND it cannot interleave with another
    // launcher's (`writeln!` may write the number and the newline separately).
    out.write_all(format!("{}\n", std::process::id()).as_bytes())
        .map_err(|e| err(format!("{}: {e}", file.display())))
}

/// Finds the program as `execvp` would, but says what went wrong in words.
pub fn resolve(command: &str, path_var: &str, cwd: &Path) -> Result<PathBuf, LaunchError> {
    find_program(command, path_var, cwd).map_err(|e| match e {
        ProgramError::NotExecutable(path) => LaunchError::NotExecutable(path),
        ProgramError::NotFound => LaunchError::NotFound {
            command: command.to_string(),
            path: if command.contains('/') {
                format!("not searched, `{command}` is a path")
            } else {
                path_var.to_string()
            },
        },
    })
}
