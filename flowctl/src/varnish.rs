//! Varnish hops: the user's VCL made whole (`vcl 4.1;` and a backend added, as the platform
//! does), the blocking service of `CC_REQUEST_FLOW=block`, and `varnishd -C` to validate.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The user's VCL with what the platform adds: the `vcl 4.1;` line and a backend on the
/// hop's forward port, unless the file already has its own (then it is kept, and said).
pub fn render_vcl(user_vcl: &str, source: &str, forward: u16) -> (String, Vec<String>) {
    let mut notes = Vec::new();
    let version_line = user_vcl
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("vcl ") && l.ends_with(';'));
    let has_backend = user_vcl.lines().any(|l| {
        let l = l.trim_start();
        l.starts_with("backend ") && !l.starts_with("backend_")
    });
    let mut out = String::new();
    match version_line {
        Some(line) => notes.push(format!("{source} has its own `{line}` line: kept")),
        None => out.push_str("vcl 4.1;\n"),
    }
    if has_backend {
        notes.push(format!(
            "{source} declares its own backend: kept, no backend to port {forward} added"
        ));
    }
    let mut body = String::new();
    body.push_str(&format!("# {source}\n"));
    body.push_str(user_vcl);
    if !user_vcl.ends_with('\n') {
        body.push('\n');
    }
    let backend = format!("backend default {{ .host = \"127.0.0.1\"; .port = \"{forward}\"; }}\n");
    match (version_line, has_backend) {
        (_, true) => out.push_str(&body),
        // The backend must come after the user's `vcl` line, which must stay first.
        (Some(line), false) => {
            let (head, tail) = user_vcl.split_at(user_vcl.find(line).unwrap_or(0) + line.len());
            out.push_str(&format!("{}\n{backend}# {source}{tail}", head.trim_end()));
            if !tail.ends_with('\n') {
                out.push('\n');
            }
        }
        (None, false) => {
            out.push_str(&backend);
            out.push_str(&body);
        }
    }
    (out, notes)
}

/// The blocking service: `200 OK` to every request. When health check paths are configured,
/// those are passed to the app, and anything but a 2xx becomes `503`, as on the platform, so
/// the health check still tells whether the app is up.
pub fn block_vcl(app_port: u16, health_paths: Option<&[String]>) -> String {
    let mut vcl = String::from(
        "vcl 4.1;\n# The blocking service of CC_REQUEST_FLOW=block, rendered by flowctl.\n",
    );
    vcl.push_str(&format!(
        "backend app {{ .host = \"127.0.0.1\"; .port = \"{app_port}\"; }}\n\n"
    ));
    vcl.push_str("sub vcl_recv {\n");
    if let Some(paths) = health_paths {
        let test = paths
            .iter()
            .map(|p| format!("req.url == {{\"{}\"}}", p.replace("\"}", "")))
            .collect::<Vec<_>>()
            .join(" || ");
        vcl.push_str(&format!(
            "    if ({test}) {{\n        return (pass);\n    }}\n"
        ));
    }
    vcl.push_str("    return (synth(200, \"OK\"));\n}\n\n");
    vcl.push_str(
        "sub vcl_backend_response {\n    if (beresp.status < 200 || beresp.status >= 300) {\n        set beresp.status = 503;\n    }\n}\n\n\
         sub vcl_backend_error {\n    set beresp.status = 503;\n    return (deliver);\n}\n\n\
         sub vcl_synth {\n    set resp.http.Content-Type = \"text/plain; charset=utf-8\";\n    synthetic(\"OK\");\n    return (deliver);\n}\n",
    );
    vcl
}

/// The argv of a foreground `varnishd` for a hop.
pub fn varnishd_argv(
    varnishd: &str,
    listen: u16,
    vcl: &Path,
    storage_size: &str,
    workdir: &Path,
) -> Vec<String> {
    vec![
        varnishd.into(),
        "-F".into(),
        "-a".into(),
        format!("0.0.0.0:{listen}"),
        "-f".into(),
        vcl.display().to_string(),
        "-s".into(),
        format!("malloc,{storage_size}"),
        "-n".into(),
        workdir.display().to_string(),
    ]
}

/// `varnishd`'s absolute path when it is installed (it lives in /usr/sbin, often off PATH).
pub fn find_varnishd(path_var: &str) -> Option<PathBuf> {
    crate::find_daemon("varnishd", path_var)
}

/// Compiles the VCL with `varnishd -C`; on failure, varnishd's message, with the file named
/// `source` (line numbers count the lines flowctl adds on top).
pub fn compile(varnishd: &Path, vcl: &str, source: &str) -> Result<(), String> {
    // A private directory: a predictable name under /tmp could be prepared by another user.
    let private = tempfile::Builder::new()
        .prefix("uvdeploy-vcl-check.")
        .tempdir()
        .map_err(|e| e.to_string())?;
    let dir = private.path();
    // varnishd compiles as its own user: it must read the file (the name stays unguessable).
    std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .map_err(|e| e.to_string())?;
    let file = dir.join("check.vcl");
    let result = std::fs::write(&file, vcl)
        .map_err(|e| e.to_string())
        .and_then(|()| {
            Command::new(varnishd)
                .arg("-C")
                .arg("-f")
                .arg(&file)
                .arg("-n")
                .arg(dir.join("n"))
                .output()
                .map_err(|e| e.to_string())
        });
    drop(private);
    let output = result?;
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    // The first lines carry the message and the position; the rest repeats the VCL.
    let rendered = format!("{source}, as rendered with the lines flowctl adds");
    Err(stderr
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with("Could not delete"))
        .take(6)
        .map(|l| l.replace(&format!("'{}'", file.display()), &rendered))
        .collect::<Vec<_>>()
        .join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_platform_style_vcl_gets_the_version_and_backend() {
        let (vcl, notes) = render_vcl("sub vcl_recv {\n}\n", "clevercloud/varnish.vcl", 9000);
        assert_eq!(
            vcl,
            "vcl 4.1;\nbackend default { .host = \"127.0.0.1\"; .port = \"9000\"; }\n# clevercloud/varnish.vcl\nsub vcl_recv {\n}\n"
        );
        assert!(notes.is_empty());
    }

    #[test]
    fn a_users_own_version_line_and_backend_are_kept() {
        let (vcl, notes) = render_vcl("vcl 4.0;\nsub vcl_recv {}\n", "v.vcl", 8081);
        assert!(
            vcl.starts_with(
                "vcl 4.0;\nbackend default { .host = \"127.0.0.1\"; .port = \"8081\"; }\n"
            ),
            "{vcl}"
        );
        assert_eq!(vcl.matches("vcl 4").count(), 1);
        assert_eq!(notes.len(), 1);

        let own = "vcl 4.1;\nbackend default { .host = \"10.0.0.1\"; }\n";
        let (vcl, notes) = render_vcl(own, "v.vcl", 8081);
        assert!(!vcl.contains("8081"));
        assert_eq!(notes.len(), 2);
    }

    #[test]
    fn block_passes_only_the_health_paths() {
        let vcl = block_vcl(9000, None);
        assert!(vcl.contains("return (synth(200, \"OK\"));") && !vcl.contains("pass"));
        let vcl = block_vcl(9000, Some(&["/health".into(), "/db".into()]));
        assert!(
            vcl.contains("if (req.url == {\"/health\"} || req.url == {\"/db\"}) {"),
            "{vcl}"
        );
    }
}
