//! Every way detection can fail, each rendered as one line naming the variable or file, the
//! bad value, and what would be valid.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DetectError {
    #[error("APP_DIR `{0}` does not exist")]
    AppDirMissing(PathBuf),
    #[error("APP_DIR `{0}` is not a directory")]
    AppDirNotDir(PathBuf),
    #[error("APP_FOLDER: `{value}` is not a directory inside `{repo}` (it names the application's sub-folder of the repository, e.g. `backend`)")]
    AppFolder { value: String, repo: PathBuf },
    #[error("{variable}: {reason} in `{value}` (write the command as you would in a shell, e.g. `uv run python app.py`)")]
    RunCommand {
        variable: &'static str,
        value: String,
        reason: String,
    },
    #[error("{variable}: `{value}` does not start with `/` (a health check path is an absolute URL path, e.g. `/health`)")]
    HealthPath { variable: String, value: String },
    #[error("{variable}: `{suffix}` is not a number (use CC_HEALTH_CHECK_PATH, or CC_HEALTH_CHECK_PATH_0, CC_HEALTH_CHECK_PATH_1, ...)")]
    HealthPathIndex { variable: String, suffix: String },
    #[error("CC_REQUEST_FLOW: unknown middleware \"{0}\" (known: otoroshi-challenge, varnish, redirectionio, custom, block, disable)")]
    UnknownMiddleware(String),
    #[error("CC_REQUEST_FLOW: empty name in \"{0}\" (a comma-separated list, e.g. `redirectionio,varnish`)")]
    EmptyMiddlewareName(String),
    #[error("CC_REQUEST_FLOW: \"{name}\" is named twice in \"{value}\" (each middleware runs once in the chain)")]
    DuplicateMiddleware { name: String, value: String },
    #[error("CC_REQUEST_FLOW: \"{keyword}\" cannot be combined with other names in \"{value}\" (set `CC_REQUEST_FLOW={keyword}` alone)")]
    KeywordNotAlone { keyword: String, value: String },
    #[error("CC_REQUEST_FLOW names \"{name}\" but {variable} is not set (set {variable}, or remove \"{name}\" from CC_REQUEST_FLOW)")]
    MiddlewareNotConfigured {
        name: &'static str,
        variable: &'static str,
    },
    #[error("CC_REQUEST_FLOW names \"varnish\" but there is no Varnish configuration (add `clevercloud/varnish.vcl` to the application, or set CC_VARNISH_FILE)")]
    VarnishNotConfigured,
    #[error("CC_REQUEST_FLOW_CUSTOM: `{value}` lacks {missing} (the command must contain both @@LISTEN_PORT@@ and @@FORWARD_PORT@@)")]
    CustomPlaceholder {
        value: String,
        missing: &'static str,
    },
    #[error("CC_VARNISH_FILE: `{value}` does not exist (looked for `{looked}`; the path is taken from the application's root, e.g. `/config/varnish.vcl`)")]
    VarnishFileMissing { value: String, looked: PathBuf },
    #[error("{variable}: `{value}` resolves to `{resolved}`, outside the application `{app_dir}` (the Varnish configuration must be a file of the application)")]
    VarnishFileOutside {
        variable: &'static str,
        value: String,
        resolved: PathBuf,
        app_dir: PathBuf,
    },
    #[error("CC_VARNISH_STORAGE_SIZE: `{0}` is not a size (a number with an optional unit k, M, G or T, e.g. `512M`, `1G`)")]
    VarnishStorageSize(String),
    #[error("CC_VARNISH_STORAGE_SIZE: `{0}` is more than Varnish can hold in memory here (at most 1T, e.g. `512M`, `1G`)")]
    VarnishStorageTooLarge(String),
    #[error("cannot tell where the build cache is: neither UV_CACHE_DIR (PIP_CACHE_DIR in legacy mode), XDG_CACHE_HOME nor HOME is set (set UV_CACHE_DIR or PIP_CACHE_DIR)")]
    NoCacheDir,
    #[error("{variable}: `{value}` is not valid ({valid})")]
    Invalid {
        variable: String,
        value: String,
        valid: String,
    },
    #[error("clevercloud/cron.json: {}{reason}", entry.as_ref().map(|e| format!("entry `{e}`: ")).unwrap_or_default())]
    Cron {
        entry: Option<String>,
        reason: String,
    },
    #[error(transparent)]
    Layout(#[from] plan::LayoutError),
}

impl plan::report::Failure for DetectError {
    /// Every detection error is a configuration error.
    fn exit_code(&self) -> u8 {
        plan::report::exit::USAGE
    }
    fn hint(&self) -> Option<String> {
        match self {
            DetectError::Layout(e) => e.hint(),
            _ => None,
        }
    }
}
