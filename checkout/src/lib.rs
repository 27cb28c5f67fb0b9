//! What is deployed. The platform deploys the pushed commit, never the developer's working
//! tree: a file that is not committed is not there, an edit not committed is not deployed.
//! `checkout` makes a clean copy of what would be deployed, outside the developer's tree,
//! where the build and the app run, so the developer's `.venv` and files are never written:
//!
//! - in a git work tree, the committed tree (`HEAD`, every committed file, and the submodules
//!   at their recorded commits), saying which uncommitted changes are left out;
//! - with `--working-tree`, the files as they are (tracked and untracked, but what
//!   `.gitignore` ignores and `.venv`);
//! - outside a git work tree, the directory as it is (but `.venv`).

use plan::report::{exit, Failure};
use plan::{Source, SourceKind};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

#[derive(Debug, thiserror::Error)]
pub enum CheckoutError {
    #[error("APP_DIR `{0}` does not exist or is not a directory")]
    AppDir(PathBuf),
    #[error("`{0}` already exists and is not empty: the copy goes into a new directory")]
    IntoNotEmpty(PathBuf),
    #[error("the repository of `{0}` has no commit yet: nothing would be deployed")]
    NoCommit(PathBuf),
    #[error("`{command}` failed: {reason}")]
    Git { command: String, reason: String },
    #[error("cannot copy `{path}`: {reason}")]
    Copy { path: PathBuf, reason: String },
}

impl Failure for CheckoutError {
    fn exit_code(&self) -> u8 {
        match self {
            CheckoutError::AppDir(_)
            | CheckoutError::IntoNotEmpty(_)
            | CheckoutError::NoCommit(_) => exit::USAGE,
            _ => exit::FAILED,
        }
    }
    fn hint(&self) -> Option<String> {
        match self {
            CheckoutError::NoCommit(_) => Some(
                "commit the application (`git add -A && git commit`), or deploy the files as they are with `--working-tree`".into(),
            ),
            _ => None,
        }
    }
}

/// Copies what would be deployed from `app_dir` into `into` (a new or empty directory).
pub fn checkout(app_dir: &Path, into: &Path, working_tree: bool) -> Result<Source, CheckoutError> {
    let origin = app_dir
        .canonicalize()
        .ok()
        .filter(|p| p.is_dir())
        .ok_or_else(|| CheckoutError::AppDir(app_dir.to_path_buf()))?;
    prepare_into(into)?;
    let copy = into.canonicalize().map_err(|e| copy_error(into, e))?;
    let mut source = Source {
        kind: SourceKind::Directory,
        origin: origin.clone(),
        copy: copy.clone(),
        commit: None,
        subject: None,
        changes: Vec::new(),
    };
    if git(&origin, &["rev-parse", "--is-inside-work-tree"]).is_err() {
        copy_tree(&origin, &copy)?;
        return Ok(source);
    }
    if let Ok(head) = git(&origin, &["show", "-s", "--format=%h%x00%s", "HEAD"]) {
        let (commit, subject) = head
            .trim_end()
            .split_once('\0')
            .unwrap_or((head.trim(), ""));
        source.commit = Some(commit.to_string());
        source.subject = Some(subject.to_string());
    }
    source.changes = git(
        &origin,
        &["status", "--porcelain", "--untracked-files=all", "--", "."],
    )?
    .lines()
    .map(|line| line.trim_start().to_string())
    // The developer's .venv is never deployed, committed or not: not a change to report.
    .filter(|line| {
        !line
            .split_once(' ')
            .map(|(_, path)| format!("/{}", path.trim_start()))
            .is_some_and(|path| path.contains("/.venv/"))
    })
    .collect();
    if working_tree {
        source.kind = SourceKind::WorkingTree;
        copy_working_tree(&origin, &copy)?;
    } else {
        if source.commit.is_none() {
            return Err(CheckoutError::NoCommit(origin));
        }
        source.kind = SourceKind::Commit;
        // The tree of APP_DIR in the commit (a sub-directory of the repository, or its
        // root), read from the top level: `HEAD:PREFIX` names it from there.
        let places = git(&origin, &["rev-parse", "--show-toplevel", "--show-prefix"])?;
        let mut places = places.lines();
        let root = PathBuf::from(places.next().unwrap_or_default());
        let tree = format!("HEAD:{}", places.next().unwrap_or_default());
        extract(&root, &tree, &copy)?;
        submodules(&root, &tree, &copy)?;
    }
    Ok(source)
}

/// What `checkout` says on stderr, once: what is deployed, and what is not.
pub fn describe(source: &Source) -> Vec<String> {
    let origin = source.origin.display();
    let commit = || {
        format!(
            "commit {} “{}”",
            source.commit.as_deref().unwrap_or("?"),
            source.subject.as_deref().unwrap_or("")
        )
    };
    let changes = |n: usize| {
        let shown: Vec<&str> = source.changes.iter().take(5).map(String::as_str).collect();
        let more = if n > 5 {
            format!(", and {} more", n - 5)
        } else {
            String::new()
        };
        format!("{}{more}", shown.join(", "))
    };
    let n = source.changes.len();
    match source.kind {
        SourceKind::Commit if n == 0 => vec![format!("deploying {} of {origin}", commit())],
        SourceKind::Commit => vec![
            format!("deploying {} of {origin}", commit()),
            format!(
                "{n} uncommitted change(s) are NOT deployed ({}): commit them, or deploy the files as they are with --working-tree",
                changes(n)
            ),
        ],
        SourceKind::WorkingTree => vec![format!(
            "deploying the working tree of {origin} as it is ({}{}); a push would deploy the commit only",
            source.commit.as_ref().map_or("no commit yet".to_string(), |_| commit()),
            if n == 0 { String::new() } else { format!(" and {n} uncommitted change(s): {}", changes(n)) }
        )],
        SourceKind::Directory => vec![format!(
            "{origin} is not in a git work tree: deploying the directory as it is (from a copy); the platform deploys what you push"
        )],
    }
}

fn prepare_into(into: &Path) -> Result<(), CheckoutError> {
    use std::os::unix::fs::PermissionsExt;
    if into.exists() {
        let empty = std::fs::read_dir(into)
            .map(|mut d| d.next().is_none())
            .unwrap_or(false);
        if !empty {
            return Err(CheckoutError::IntoNotEmpty(into.to_path_buf()));
        }
    } else {
        std::fs::create_dir_all(into).map_err(|e| copy_error(into, e))?;
    }
    // The app runs from here; varnishd (another user) reads nothing here, but a build hook
    // or the app may drop privileges: readable, as a checkout would be.
    std::fs::set_permissions(into, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| copy_error(into, e))
}

fn copy_error(path: &Path, e: std::io::Error) -> CheckoutError {
    CheckoutError::Copy {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

/// Runs git in `dir` and returns its stdout.
fn git(dir: &Path, args: &[&str]) -> Result<String, CheckoutError> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| CheckoutError::Git {
            command: format!("git {}", args.join(" ")),
            reason: e.to_string(),
        })?;
    if !out.status.success() {
        return Err(CheckoutError::Git {
            command: format!("git {}", args.join(" ")),
            reason: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The files of `tree` (a tree or a commit of the repository at `repo`) written into `into`
/// as a checkout writes them (modes, links, the repository's filters and line endings),
/// without the repository. Not `git archive`: it applies the `.gitattributes` rules meant for
/// archives (`export-ignore` drops files, `export-subst` rewrites them), and a push deploys
/// every committed file as it is. The tree is read into an index of our own, in a scratch
/// directory (the repository's index is never touched), and checked out from there.
fn extract(repo: &Path, tree: &str, into: &Path) -> Result<(), CheckoutError> {
    let scratch = tempfile::tempdir().map_err(|e| copy_error(&std::env::temp_dir(), e))?;
    let index = scratch.path().join("index");
    let mut prefix = into.as_os_str().to_os_string();
    prefix.push("/");
    let mut checkout_prefix = std::ffi::OsString::from("--prefix=");
    checkout_prefix.push(&prefix);
    let steps: [Vec<std::ffi::OsString>; 2] = [
        vec!["read-tree".into(), tree.into()],
        vec!["checkout-index".into(), "--all".into(), checkout_prefix],
    ];
    for args in steps {
        let shown = format!("git {}", args[0].to_string_lossy());
        let out = Command::new("git")
            .arg("-C")
            .arg(repo)
            .args(&args)
            .env("GIT_INDEX_FILE", &index)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| CheckoutError::Git {
                command: shown.clone(),
                reason: e.to_string(),
            })?;
        if !out.status.success() {
            return Err(CheckoutError::Git {
                command: shown,
                reason: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
    }
    Ok(())
}

/// The submodules in `tree` (of the repository at `root`), each at the commit its
/// superproject records, as a
/// checkout with `--recurse-submodules` would have them. One not checked out locally cannot
/// be copied: said, and left out.
fn submodules(root: &Path, tree: &str, copy: &Path) -> Result<(), CheckoutError> {
    if !root.join(".gitmodules").is_file() {
        return Ok(());
    }
    let prefix = tree.trim_start_matches("HEAD:");
    let listing = git(root, &["ls-tree", "-r", "-z", tree])?;
    for entry in listing.split('\0').filter(|e| e.starts_with("160000 ")) {
        let Some((meta, path)) = entry.split_once('\t') else {
            continue;
        };
        let commit = meta.split_whitespace().nth(2).unwrap_or_default();
        let module = root.join(prefix).join(path);
        if git(
            &module,
            &[
                "rev-parse",
                "--verify",
                "-q",
                &format!("{commit}^{{commit}}"),
            ],
        )
        .is_err()
        {
            eprintln!(
                "checkout: warning: submodule `{path}` is not checked out here: it is not deployed"
            );
            continue;
        }
        let target = copy.join(path);
        std::fs::create_dir_all(&target).map_err(|e| copy_error(&target, e))?;
        extract(&module, commit, &target)?;
    }
    Ok(())
}

/// The files as they are: tracked (as edited) and untracked, but what git ignores and the
/// developer's `.venv`.
fn copy_working_tree(origin: &Path, copy: &Path) -> Result<(), CheckoutError> {
    let files = git(
        origin,
        &[
            "ls-files",
            "-z",
            "--cached",
            "--others",
            "--exclude-standard",
            "--",
            ".",
        ],
    )?;
    for file in files.split('\0').filter(|f| !f.is_empty()) {
        let relative = Path::new(file);
        if relative.starts_with(".venv") {
            continue;
        }
        let from = origin.join(relative);
        // Deleted in the working tree, but still in the index: not deployed.
        let Ok(meta) = std::fs::symlink_metadata(&from) else {
            continue;
        };
        copy_entry(&from, &meta, &copy.join(relative))?;
    }
    Ok(())
}

/// The directory as it is, but `.venv` (the developer's, not the app's) and `.git`.
fn copy_tree(from: &Path, to: &Path) -> Result<(), CheckoutError> {
    for entry in std::fs::read_dir(from).map_err(|e| copy_error(from, e))? {
        let entry = entry.map_err(|e| copy_error(from, e))?;
        let name = entry.file_name();
        if name == ".venv" || name == ".git" {
            continue;
        }
        let path = entry.path();
        let meta = std::fs::symlink_metadata(&path).map_err(|e| copy_error(&path, e))?;
        let target = to.join(&name);
        if meta.is_dir() {
            std::fs::create_dir_all(&target).map_err(|e| copy_error(&target, e))?;
            copy_tree(&path, &target)?;
        } else {
            copy_entry(&path, &meta, &target)?;
        }
    }
    Ok(())
}

/// One file or link, with its mode (the executable bit of a hook script matters).
fn copy_entry(from: &Path, meta: &std::fs::Metadata, to: &Path) -> Result<(), CheckoutError> {
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent).map_err(|e| copy_error(parent, e))?;
    }
    if meta.file_type().is_symlink() {
        let target = std::fs::read_link(from).map_err(|e| copy_error(from, e))?;
        std::os::unix::fs::symlink(target, to).map_err(|e| copy_error(to, e))
    } else if meta.is_file() {
        std::fs::copy(from, to)
            .map(|_| ())
            .map_err(|e| copy_error(from, e))
    } else {
        Ok(())
    }
}
