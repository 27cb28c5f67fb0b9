//! Where a chain's files are: on this machine (`flowctl`), or in a pod (`plan-export
//! kubernetes`). The renderers take it, so that both render the same hops, each with its own
//! paths, and nobody rewrites the other's text.

use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// The application's directory (Nginx serves its static files from there).
    pub app_dir: PathBuf,
    /// Where the hops keep what they write at run time: working directories, pid and
    /// temporary files, Nginx's password file.
    pub state_dir: PathBuf,
    /// Where the rendered files are read from: `None`, each at its place in the state
    /// directory; `Some(dir)`, all in `dir`, each named by that place with `-` for `/` (a
    /// ConfigMap mounted there: `nginx-8080/nginx.conf` is `DIR/nginx-8080-nginx.conf`).
    pub config_dir: Option<PathBuf>,
    /// Whether the hops run as root (Nginx's workers then stay root: see
    /// [`crate::nginx::Site`]).
    pub as_root: bool,
}

impl Layout {
    /// A machine's: the rendered files in the state directory, beside the rest.
    pub fn local(app_dir: &Path, state_dir: &Path, as_root: bool) -> Layout {
        Layout {
            app_dir: app_dir.to_path_buf(),
            state_dir: state_dir.to_path_buf(),
            config_dir: None,
            as_root,
        }
    }

    /// Where the hops keep `place` (relative to the state directory) at run time.
    pub fn state(&self, place: &str) -> PathBuf {
        self.state_dir.join(place)
    }

    /// Where the rendered file whose place in the state directory is `place` is read from.
    pub fn rendered(&self, place: &str) -> PathBuf {
        match &self.config_dir {
            None => self.state_dir.join(place),
            Some(dir) => dir.join(place.replace('/', "-")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendered_files_are_in_the_state_directory_or_flat_in_the_config_directory() {
        let local = Layout::local(Path::new("/srv/app"), Path::new("/state"), false);
        assert_eq!(
            local.rendered("nginx-8080/nginx.conf"),
            Path::new("/state/nginx-8080/nginx.conf")
        );
        let pod = Layout {
            config_dir: Some("/etc/uvdeploy".into()),
            ..local
        };
        assert_eq!(
            pod.rendered("nginx-8080/nginx.conf"),
            Path::new("/etc/uvdeploy/nginx-8080-nginx.conf")
        );
        assert_eq!(pod.state("nginx-8080"), Path::new("/state/nginx-8080"));
    }
}
