//! The Nginx hop of legacy mode: the configuration the platform's variables describe (static
//! files, read timeout, gzip, basic authentication, proxy buffers), for an unprivileged Nginx
//! whose every path (pid, temp files) is in its own directory of the state directory, and
//! `nginx -t` to check it.

use crate::layout::Layout;
use plan::{Backend, Nginx};
use std::path::{Path, PathBuf};
use std::process::Command;

/// What the configuration is rendered from. Where it runs is the layout's: the app's
/// directory (the static files), Nginx's own directory in the state directory (pid, temp
/// files, htpasswd), and whether it runs as root: Nginx's workers would then become
/// `nobody`, who cannot read a private state directory, so they stay root, as the user who
/// runs the rehearsal.
#[derive(Clone, Copy)]
pub struct Site<'a> {
    pub nginx: &'a Nginx,
    pub layout: &'a Layout,
    /// uWSGI's protocol, or HTTP (the other backends, and `CC_RUN_COMMAND`).
    pub backend: Option<Backend>,
    pub listen: u16,
    pub forward: u16,
}

/// A string as Nginx reads it: in double quotes, its `"` and `\` escaped (`;`, `{`, `}`,
/// `'`, `#` and spaces are plain characters between double quotes).
fn quoted(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The variable holding a `$`: Nginx has no escape for `$` in a directive that takes
/// variables (`root`, `alias`, `auth_basic_user_file`), so a path holding one (an app named
/// `a$b`) reads it from this variable, which `geo` sets literally.
const DOLLAR: &str = "uvdeploy_dollar";

/// A path for a directive that takes variables: [`quoted`], its `$` read from [`DOLLAR`].
fn quoted_path(path: &Path) -> String {
    quoted(&path.display().to_string()).replace('$', &format!("${{{DOLLAR}}}"))
}

/// The configuration file.
pub fn render(site: &Site) -> String {
    let Site { nginx, layout, .. } = site;
    let dir = dir(layout, site.listen);
    let path = |name: &str| quoted(&dir.join(name).display().to_string());
    let mut conf = String::from(
        "# Nginx in front of the app server (legacy mode), rendered by flowctl from the\n\
         # platform's variables.\n",
    );
    if layout.as_root {
        conf.push_str("user root;\n");
    }
    conf.push_str(&format!(
        "daemon off;\nworker_processes 1;\npid {};\nerror_log stderr;\n\nevents {{\n    worker_connections 1024;\n}}\n\nhttp {{\n",
        path("nginx.pid")
    ));
    let mut http = vec![
        "access_log /dev/stdout;".to_string(),
        format!("geo ${DOLLAR} {{ default \"$\"; }}"),
        // Nothing outside the app is served: no symbolic link is followed, anywhere in a
        // file's path (the app's directory has none: detect resolved it).
        "disable_symlinks on;".into(),
        "default_type application/octet-stream;".into(),
        format!("types {{ {} }}", MIME_TYPES),
        "sendfile on;".into(),
        "server_tokens off;".into(),
    ];
    for (directive, name) in [
        ("client_body_temp_path", "client_body"),
        ("proxy_temp_path", "proxy"),
        ("fastcgi_temp_path", "fastcgi"),
        ("uwsgi_temp_path", "uwsgi"),
        ("scgi_temp_path", "scgi"),
    ] {
        http.push(format!("{directive} {};", path(name)));
    }
    if let Some(types) = &nginx.gzip_types {
        http.push("gzip on;".into());
        http.push("gzip_proxied any;".into());
        http.push("gzip_vary on;".into());
        http.push(format!("gzip_types {types};"));
    }
    // WebSockets (uvicorn, daphne) pass through.
    http.push("map $http_upgrade $connection_upgrade { default upgrade; '' close; }".into());
    for line in http {
        conf.push_str(&format!("    {line}\n"));
    }
    conf.push_str(&format!(
        "\n    server {{\n        listen {};\n",
        site.listen
    ));
    if !nginx.basic_auth_env.is_empty() {
        conf.push_str(&format!(
            "        auth_basic \"Restricted\";\n        auth_basic_user_file {};\n",
            quoted_path(&htpasswd(layout, site.listen))
        ));
    }
    let pass = pass(site);
    match &nginx.static_files {
        Some(files) if files.prefix.trim_end_matches('/').is_empty() => {
            // The platform's `/` prefix: static files first, the app as the fallback.
            let root = layout.app_dir.join(&files.path);
            conf.push_str(&format!(
                "\n        location / {{\n            root {};\n            try_files $uri @app;\n        }}\n\n        location @app {{\n{pass}        }}\n",
                quoted_path(&root)
            ));
        }
        Some(files) => {
            let prefix = files.prefix.trim_end_matches('/');
            let root = layout.app_dir.join(&files.path);
            conf.push_str(&format!(
                "\n        location {} {{\n            alias {};\n        }}\n\n        location / {{\n{pass}        }}\n",
                quoted(&format!("{prefix}/")),
                quoted_path(Path::new(&format!(
                    "{}/",
                    root.display().to_string().trim_end_matches('/')
                )))
            ));
        }
        None => conf.push_str(&format!("\n        location / {{\n{pass}        }}\n")),
    }
    conf.push_str("    }\n}\n");
    conf
}

/// How a request goes to the app server: uWSGI's protocol, or HTTP.
fn pass(site: &Site) -> String {
    let nginx = site.nginx;
    let (module, mut lines) = if site.backend.is_some_and(Backend::speaks_uwsgi) {
        let mut lines = vec![format!("uwsgi_pass 127.0.0.1:{};", site.forward)];
        lines.extend(
            UWSGI_PARAMS
                .iter()
                .map(|(name, value)| format!("uwsgi_param {name} {value};")),
        );
        ("uwsgi", lines)
    } else {
        (
            "proxy",
            vec![
                format!("proxy_pass http://127.0.0.1:{};", site.forward),
                "proxy_http_version 1.1;".into(),
                "proxy_set_header Host $http_host;".into(),
                "proxy_set_header X-Real-IP $remote_addr;".into(),
                "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;".into(),
                "proxy_set_header X-Forwarded-Proto $scheme;".into(),
                "proxy_set_header Upgrade $http_upgrade;".into(),
                "proxy_set_header Connection $connection_upgrade;".into(),
            ],
        )
    };
    lines.push(format!("{module}_read_timeout {}s;", nginx.read_timeout));
    if let Some(buffers) = &nginx.proxy_buffers {
        lines.push(format!("{module}_buffers {buffers};"));
    }
    if let Some(size) = &nginx.proxy_buffer_size {
        lines.push(format!("{module}_buffer_size {size};"));
    }
    if nginx.intercept_errors {
        lines.push(format!("{module}_intercept_errors on;"));
    }
    lines.iter().map(|l| format!("            {l}\n")).collect()
}

/// The usual types, inline: the configuration reads nothing from `/etc/nginx`.
const MIME_TYPES: &str = "text/html html htm; text/css css; text/plain txt; text/xml xml; \
application/javascript js mjs; application/json json; image/png png; image/jpeg jpg jpeg; \
image/gif gif; image/svg+xml svg; image/x-icon ico; image/webp webp; font/woff woff; \
font/woff2 woff2; application/pdf pdf; application/wasm wasm;";

/// Debian's `uwsgi_params`, inline for the same reason.
const UWSGI_PARAMS: [(&str, &str); 15] = [
    ("QUERY_STRING", "$query_string"),
    ("REQUEST_METHOD", "$request_method"),
    ("CONTENT_TYPE", "$content_type"),
    ("CONTENT_LENGTH", "$content_length"),
    ("REQUEST_URI", "$request_uri"),
    ("PATH_INFO", "$document_uri"),
    ("DOCUMENT_ROOT", "$document_root"),
    ("SERVER_PROTOCOL", "$server_protocol"),
    ("REQUEST_SCHEME", "$scheme"),
    ("HTTPS", "$https if_not_empty"),
    ("REMOTE_ADDR", "$remote_addr"),
    ("REMOTE_PORT", "$remote_port"),
    ("SERVER_PORT", "$server_port"),
    ("SERVER_NAME", "$server_name"),
    ("HTTP_HOST", "$host"),
];

/// The Nginx directory of the hop listening on `listen`, in the state directory.
pub fn dir(layout: &Layout, listen: u16) -> PathBuf {
    layout.state(&format!("nginx-{listen}"))
}

/// Where the configuration of the hop listening on `listen` is read from.
pub fn conf(layout: &Layout, listen: u16) -> PathBuf {
    layout.rendered(&format!("nginx-{listen}/nginx.conf"))
}

/// The password file of basic authentication, written when the hop starts.
pub fn htpasswd(layout: &Layout, listen: u16) -> PathBuf {
    dir(layout, listen).join("htpasswd")
}

/// The hop's command: everything in its own directory, errors on stderr from the start.
pub fn argv(nginx: &str, layout: &Layout, listen: u16) -> Vec<String> {
    vec![
        nginx.into(),
        "-p".into(),
        format!("{}/", dir(layout, listen).display()),
        "-e".into(),
        "stderr".into(),
        "-c".into(),
        conf(layout, listen).display().to_string(),
    ]
}

/// `nginx -t` on the configuration rendered for a scratch directory: Nginx's own words when
/// it refuses it.
pub fn check(nginx: &Path, site: &Site) -> Result<(), String> {
    let scratch = tempfile::tempdir().map_err(|e| e.to_string())?;
    let layout = Layout::local(&site.layout.app_dir, scratch.path(), site.layout.as_root);
    let site = Site {
        layout: &layout,
        ..*site
    };
    let own = dir(&layout, site.listen);
    std::fs::create_dir(&own).map_err(|e| e.to_string())?;
    std::fs::write(conf(&layout, site.listen), render(&site)).map_err(|e| e.to_string())?;
    let mut argv = argv(&nginx.display().to_string(), &layout, site.listen);
    argv.push("-t".into());
    let out = Command::new(&argv[0])
        .args(&argv[1..])
        .output()
        .map_err(|e| format!("cannot run `{}`: {e}", nginx.display()))?;
    if out.status.success() {
        return Ok(());
    }
    let text = String::from_utf8_lossy(&out.stderr);
    Err(text
        .lines()
        .filter(|l| !l.contains("test failed"))
        // `2026/11/26 02:07:59 [emerg] 21017#21017: there must be...`: the message only.
        .map(|l| {
            l.split_once("]")
                .and_then(|(_, rest)| rest.split_once(": "))
                .map_or(l, |(_, m)| m)
        })
        .map(|l| l.replace(&own.display().to_string(), "<nginx dir>"))
        .collect::<Vec<_>>()
        .join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use plan::StaticFiles;

    fn nginx() -> Nginx {
        Nginx {
            static_files: None,
            read_timeout: 300,
            gzip_types: None,
            basic_auth_env: Vec::new(),
            proxy_buffers: None,
            proxy_buffer_size: None,
            intercept_errors: false,
        }
    }

    fn local(app_dir: &str, state_dir: &str, as_root: bool) -> Layout {
        Layout::local(Path::new(app_dir), Path::new(state_dir), as_root)
    }

    fn site<'a>(nginx: &'a Nginx, layout: &'a Layout, backend: Option<Backend>) -> Site<'a> {
        Site {
            nginx,
            layout,
            backend,
            listen: 8080,
            forward: 9000,
        }
    }

    #[test]
    fn uwsgi_speaks_its_protocol_the_others_http() {
        let n = nginx();
        let l = local("/srv/app", "/state", false);
        let uwsgi = render(&site(&n, &l, Some(Backend::Uwsgi)));
        assert!(uwsgi.contains("uwsgi_pass 127.0.0.1:9000;"));
        assert!(uwsgi.contains("uwsgi_param PATH_INFO $document_uri;"));
        assert!(uwsgi.contains("uwsgi_read_timeout 300s;"));
        assert!(uwsgi.contains("listen 8080;"));
        assert!(uwsgi.contains("pid \"/state/nginx-8080/nginx.pid\";"));
        assert!(!uwsgi.contains("user root"));
        for backend in [Some(Backend::Gunicorn), Some(Backend::Uvicorn), None] {
            let http = render(&site(&n, &l, backend));
            assert!(http.contains("proxy_pass http://127.0.0.1:9000;"), "{http}");
            assert!(http.contains("proxy_set_header Upgrade $http_upgrade;"));
            assert!(!http.contains("uwsgi_pass"));
        }
    }

    #[test]
    fn the_platforms_variables_in_the_configuration() {
        let n = Nginx {
            static_files: Some(StaticFiles {
                path: "static/".into(),
                prefix: "/public/".into(),
            }),
            read_timeout: 42,
            gzip_types: Some("text/plain text/css".into()),
            basic_auth_env: vec!["CC_HTTP_BASIC_AUTH".into()],
            proxy_buffers: Some("8 16k".into()),
            proxy_buffer_size: Some("16k".into()),
            intercept_errors: true,
        };
        let as_root = local("/srv/app", "/state", true);
        let conf = render(&site(&n, &as_root, Some(Backend::Gunicorn)));
        for line in [
            "user root;",
            "location \"/public/\" {",
            "alias \"/srv/app/static/\";",
            "proxy_read_timeout 42s;",
            "gzip on;",
            "gzip_types text/plain text/css;",
            "auth_basic_user_file \"/state/nginx-8080/htpasswd\";",
            "proxy_buffers 8 16k;",
            "proxy_buffer_size 16k;",
            "proxy_intercept_errors on;",
        ] {
            assert!(conf.contains(line), "{line}\n{conf}");
        }
        // `/`: the files first, the app as the fallback.
        let root = Nginx {
            static_files: Some(StaticFiles {
                path: "static".into(),
                prefix: "/".into(),
            }),
            ..nginx()
        };
        let conf = render(&site(&root, &as_root, Some(Backend::Uwsgi)));
        assert!(conf.contains("root \"/srv/app/static\";\n            try_files $uri @app;"));
        assert!(conf.contains("location @app {\n            uwsgi_pass"));
    }

    /// The same site in a pod: the pod's directories, its configuration read from where
    /// the ConfigMap is mounted, and Nginx's default user.
    #[test]
    fn a_pods_layout_gives_the_pods_paths() {
        let n = Nginx {
            static_files: Some(StaticFiles {
                path: "static".into(),
                prefix: "/static".into(),
            }),
            basic_auth_env: vec!["CC_HTTP_BASIC_AUTH".into()],
            ..nginx()
        };
        let pod = Layout {
            config_dir: Some("/etc/uvdeploy".into()),
            ..local("/app", "/var/lib/uvdeploy", false)
        };
        let conf = render(&site(&n, &pod, None));
        for line in [
            "pid \"/var/lib/uvdeploy/nginx-8080/nginx.pid\";",
            "alias \"/app/static/\";",
            "auth_basic_user_file \"/var/lib/uvdeploy/nginx-8080/htpasswd\";",
        ] {
            assert!(conf.contains(line), "{line}\n{conf}");
        }
        assert!(!conf.contains("user root"), "{conf}");
        assert_eq!(
            argv("nginx", &pod, 8080).join(" "),
            "nginx -p /var/lib/uvdeploy/nginx-8080/ -e stderr -c /etc/uvdeploy/nginx-8080-nginx.conf"
        );
    }

    #[test]
    fn paths_are_quoted_for_nginx() {
        assert_eq!(quoted(r#"/a "b"\c"#), r#""/a \"b\"\\c""#);
        // A `$` in a path is read from a variable where Nginx would take it for one.
        assert_eq!(
            quoted_path(Path::new("/srv/a$b c;{d}'")),
            "\"/srv/a${uvdeploy_dollar}b c;{d}'\""
        );
        let n = Nginx {
            static_files: Some(StaticFiles {
                path: "static".into(),
                prefix: "/static".into(),
            }),
            basic_auth_env: vec!["CC_HTTP_BASIC_AUTH".into()],
            ..nginx()
        };
        let l = local("/srv/a$b", "/state/x$y", false);
        let conf = render(&site(&n, &l, None));
        for line in [
            "geo $uvdeploy_dollar { default \"$\"; }",
            "disable_symlinks on;",
            "alias \"/srv/a${uvdeploy_dollar}b/static/\";",
            "auth_basic_user_file \"/state/x${uvdeploy_dollar}y/nginx-8080/htpasswd\";",
            // Not a directive that takes variables: the `$` as it is.
            "pid \"/state/x$y/nginx-8080/nginx.pid\";",
        ] {
            assert!(conf.contains(line), "{line}\n{conf}");
        }
    }

    /// The real `nginx -t`, when Nginx is installed (scripts/setup installs it).
    #[test]
    fn nginx_accepts_every_variable_and_refuses_what_it_cannot_take() {
        let Some(program) = crate::find_daemon("nginx", &std::env::var("PATH").unwrap_or_default())
        else {
            eprintln!("nginx is not installed: skipped");
            return;
        };
        let app = tempfile::tempdir().unwrap();
        let n = Nginx {
            static_files: Some(StaticFiles {
                path: "static".into(),
                prefix: "/static".into(),
            }),
            read_timeout: 5,
            gzip_types: Some("text/plain application/json".into()),
            basic_auth_env: vec!["CC_HTTP_BASIC_AUTH".into()],
            proxy_buffers: Some("8 16k".into()),
            proxy_buffer_size: Some("16k".into()),
            intercept_errors: true,
        };
        for backend in [Some(Backend::Uwsgi), Some(Backend::Daphne)] {
            let l = Layout::local(
                app.path(),
                Path::new("/unused"),
                nix::unistd::geteuid().is_root(),
            );
            check(&program, &site(&n, &l, backend)).unwrap();
        }
        let bad = Nginx {
            proxy_buffers: Some("1 4k".into()),
            ..nginx()
        };
        let l = local("/srv/app", "/unused", false);
        let err = check(&program, &site(&bad, &l, None)).unwrap_err();
        assert!(
            err.contains("there must be at least 2 \"proxy_buffers\""),
            "{err}"
        );
    }
}
