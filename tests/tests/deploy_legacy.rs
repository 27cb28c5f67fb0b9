//! `scripts/deploy` end to end in legacy mode: pip, the app server (uWSGI, Gunicorn,
//! Uvicorn, Daphne) on the app port, Nginx in front, the manage tasks and Celery.

mod harness;

use harness::*;
use std::time::Duration;
use testkit::{http_get, http_request, root};

/// `Authorization` for `login:password` (base64 written out: no crate for one header).
const ADMIN: &str = "Basic YWRtaW46czNjcmV0LWFkbWlu"; // admin:s3cret-admin
const OPS: &str = "Basic b3BzOnMzY3JldC1vcHM="; // ops:s3cret-ops
const WRONG: &str = "Basic YWRtaW46d3Jvbmc="; // admin:wrong

#[test]
fn legacy_flask_on_uwsgi_behind_nginx_which_serves_the_static_files_itself() {
    let mut deployment = Setup::legacy("legacy-flask-uwsgi").start();
    deployment.deployed();
    let output = deployment.output();
    assert!(
        output.contains("uvbuild: requirements.txt found, using pip..."),
        "{output}"
    );
    assert!(
        output.contains(&format!(
            "flowctl: chain: :{} nginx → :{} app (uwsgi --plugin python3 --socket 127.0.0.1:{}",
            deployment.public, deployment.app, deployment.app
        )),
        "{output}"
    );
    let css = http_get(deployment.public, "/static/style.css", &[]).unwrap();
    assert_eq!(css.status, 200);
    assert_eq!(
        css.body,
        std::fs::read_to_string(root().join("examples/legacy-flask-uwsgi/static/style.css"))
            .unwrap()
    );
    assert_eq!(css.header("Content-Type"), Some("text/css"));
    assert!(css.header("ETag").is_some(), "Nginx's own file headers");
    // The app saw the health check only: the stylesheet never reached it.
    assert_eq!(http_get(deployment.public, "/hits", &[]).unwrap().body, "1");
    // ENABLE_GZIP_COMPRESSION
    let zipped = http_get(deployment.public, "/", &[("Accept-Encoding", "gzip")]).unwrap();
    assert_eq!(zipped.header("Content-Encoding"), Some("gzip"));
    let plain = http_get(deployment.public, "/", &[]).unwrap();
    assert!(plain.body.starts_with("Hello from uWSGI behind Nginx!"));
    assert_eq!(plain.header("Content-Encoding"), None);

    assert!(deployment.stop().success());
    deployment.nothing_left();
}

#[test]
fn legacy_nginx_variables_basic_auth_read_timeout_buffers_and_the_root_prefix() {
    let mut deployment = Setup::legacy("legacy-flask-uwsgi")
        .var("CC_HTTP_BASIC_AUTH", "admin:s3cret-admin")
        .var("CC_HTTP_BASIC_AUTH_1", "ops:s3cret-ops")
        .var("NGINX_READ_TIMEOUT", "5")
        .var("CC_NGINX_PROXY_BUFFERS", "8 16k")
        .var("CC_NGINX_PROXY_BUFFER_SIZE", "16k")
        .args(&["--env", "STATIC_URL_PREFIX=/"])
        .start();
    deployment.deployed();
    let get = |path: &str, auth: &[(&str, &str)]| http_get(deployment.public, path, auth).unwrap();
    assert_eq!(get("/", &[]).status, 401);
    assert_eq!(get("/", &[("Authorization", WRONG)]).status, 401);
    assert_eq!(get("/", &[("Authorization", ADMIN)]).status, 200);
    assert_eq!(get("/", &[("Authorization", OPS)]).status, 200);
    // The `/` prefix: files first, the app behind the `@app` fallback.
    let css = get("/style.css", &[("Authorization", ADMIN)]);
    assert_eq!(
        (css.status, css.header("Content-Type")),
        (200, Some("text/css"))
    );
    assert!(get("/hits", &[("Authorization", ADMIN)])
        .body
        .parse::<u32>()
        .is_ok());
    // NGINX_READ_TIMEOUT=5: an 8 s answer is cut at 5 s (5, not 1: a loaded machine may take
    // more than a second to answer `/`).
    assert_eq!(
        get("/slow?seconds=8", &[("Authorization", ADMIN)]).status,
        504
    );
    // The passwords are in Nginx's own file, for its owner alone, never in the plan.
    let htpasswd = deployment
        .tmp
        .path()
        .join(format!("state/nginx-{}/htpasswd", deployment.public));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&htpasswd).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let plan = std::fs::read_to_string(deployment.tmp.path().join("state/plan.json")).unwrap();
    assert!(!plan.contains("s3cret"), "{plan}");
    assert!(
        plan.contains("\"htpasswd_from_env\":[\"CC_HTTP_BASIC_AUTH\",\"CC_HTTP_BASIC_AUTH_1\"]")
    );
    assert!(!deployment.output().contains("s3cret"));
    assert!(deployment.stop().success());
    deployment.nothing_left();
}

#[test]
fn legacy_django_on_gunicorn_runs_the_manage_tasks_before_the_server() {
    let mut deployment = Setup::legacy("legacy-django-gunicorn").start();
    deployment.deployed();
    let page = http_get(deployment.public, "/", &[]).unwrap();
    // The permissions table exists: `migrate` ran.
    assert!(
        page.body.starts_with("Hello from Django on gunicorn: ") && page.status == 200,
        "{}",
        page.body
    );
    let output = deployment.output();
    let migrate = output
        .find("running manage.py task: migrate --no-input")
        .unwrap();
    let check = output.find("running manage.py task: check").unwrap();
    let booted = output.find("Listening at: http://127.0.0.1:").unwrap();
    assert!(migrate < check && check < booted, "{output}");
    assert!(output.contains("--worker-class sync --timeout 30 --log-level info"));
    assert!(deployment.stop().success());
    deployment.nothing_left();
}

#[test]
fn a_failing_manage_task_fails_the_deployment() {
    let mut deployment = Setup::legacy("legacy-django-gunicorn")
        .args(&[
            "--env",
            "CC_PYTHON_MANAGE_TASKS=migrate --no-input, no_such_task",
        ])
        .start();
    assert_eq!(deployment.exit(Duration::from_secs(90)).code(), Some(1));
    let output = deployment.output();
    assert!(
        output.contains("error: CC_PYTHON_MANAGE_TASKS: `python manage.py no_such_task` failed (exit status: 1)"),
        "{output}"
    );
    assert!(!output.contains("Listening at:"), "{output}");
    deployment.nothing_left();
}

#[test]
fn legacy_asgi_on_uvicorn() {
    let mut deployment = Setup::legacy("legacy-asgi-uvicorn").start();
    deployment.deployed();
    let page = http_get(deployment.public, "/hello", &[]).unwrap();
    assert!(page.body.starts_with("Hello from ASGI"), "{}", page.body);
    assert!(deployment
        .output()
        .contains("Uvicorn running on http://127.0.0.1:"));
    assert!(deployment.stop().success());
    deployment.nothing_left();
}

#[test]
fn legacy_asgi_on_daphne() {
    let mut deployment = Setup::legacy("legacy-asgi-uvicorn")
        .args(&["--env", "CC_PYTHON_BACKEND=daphne"])
        .start();
    deployment.deployed();
    let page = http_get(deployment.public, "/hello", &[]).unwrap();
    assert!(page.body.starts_with("Hello from ASGI"), "{}", page.body);
    assert!(
        deployment.output().contains(&format!(
            "app (daphne --bind 127.0.0.1 --port {} main:app)",
            deployment.app
        )),
        "{}",
        deployment.output()
    );
    assert!(deployment.stop().success());
    deployment.nothing_left();
}

#[test]
fn legacy_celery_worker_runs_beside_the_app_server_and_stops_with_it() {
    let mut deployment = Setup::legacy("legacy-celery")
        .var("CC_PYTHON_CELERY_USE_BEAT", "true")
        .start();
    deployment.deployed();
    let queued = http_request("POST", deployment.public, "/enqueue/first", &[]).unwrap();
    assert_eq!(queued.status, 202);
    assert!(
        testkit::wait_until(Duration::from_secs(30), || {
            http_get(deployment.public, "/done/first", &[]).is_ok_and(|r| r.status == 200)
        }),
        "the worker did not run the task:\n{}",
        deployment.output()
    );
    let output = deployment.output();
    assert!(output.contains("deploy: started celery (pid "), "{output}");
    assert!(output.contains("celery   | "), "{output}");
    // CC_PYTHON_CELERY_LOGFILE: the worker logs into the app's `logs` directory, with beat.
    let log = deployment.tmp.path().join("state/copy/logs/celery.log");
    assert!(
        testkit::wait_until(Duration::from_secs(30), || {
            std::fs::read_to_string(&log).is_ok_and(|l| l.contains("/MainProcess]"))
        }),
        "{}: {:?}\n{output}",
        log.display(),
        std::fs::read_to_string(&log)
    );
    let plan = std::fs::read_to_string(deployment.tmp.path().join("state/plan.json")).unwrap();
    assert!(
        plan.contains(
            "\"argv\":[\"celery\",\"--app\",\"tasks\",\"worker\",\"--beat\",\"--logfile="
        ),
        "{plan}"
    );
    assert!(deployment.stop().success());
    deployment.nothing_left();
}

#[test]
fn legacy_with_varnish_puts_nginx_right_before_the_app_server() {
    let mut deployment = Setup::legacy("legacy-flask-uwsgi")
        .ports(2)
        .start_with(with_vcl);
    deployment.deployed();
    let (public, app) = (deployment.public, deployment.app);
    assert!(
        deployment.output().contains(&format!(
            "chain: :{public} varnish → :{} nginx → :{app} app (uwsgi",
            public + 1
        )),
        "{}",
        deployment.output()
    );
    http_get(public, "/", &[]).unwrap();
    let second = http_get(public, "/", &[]).unwrap();
    assert_eq!(second.header("X-Cache"), Some("HIT"));
    assert!(second.body.starts_with("Hello from uWSGI behind Nginx!"));
    assert!(deployment.stop().success());
    deployment.nothing_left();
}

#[test]
fn an_app_server_that_is_not_there_gives_the_platforms_502_line() {
    // CC_RUN_COMMAND replaces the app server: this one never listens.
    let mut deployment = Setup::legacy("legacy-flask-uwsgi")
        .var("CC_RUN_COMMAND", "sleep 600")
        .args(&["--timeout", "3s"])
        .start();
    assert_eq!(deployment.exit(Duration::from_secs(90)).code(), Some(1));
    let output = deployment.output();
    assert!(
        output.contains(&format!(
            "GET http://127.0.0.1:{}/ returned 502!",
            deployment.public
        )),
        "{output}"
    );
    assert!(
        output.contains(&format!(
            "Some software are not listening as expected: {}",
            deployment.app
        )),
        "{output}"
    );
    deployment.nothing_left();
}
