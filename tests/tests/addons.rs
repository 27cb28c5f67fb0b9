//! `deploy --addon`: real PostgreSQL, MariaDB and Redis servers for an app, as the platform's
//! add-ons: the hooks reach them through the platform's variables, the data outlives the
//! deployment, the passwords are never shown, and nothing is left running after the stop.

mod harness;

use harness::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// The example deployed with `--addon KIND`, its add-on data under `data`.
fn with_addon(kind: &str, data: &Path) -> Setup {
    Setup::new("hello")
        .args(&["--addon", kind])
        .var("XDG_DATA_HOME", data.display().to_string())
}

/// The add-on's directory of the one app deployed with `data` as XDG_DATA_HOME.
fn addon_home(data: &Path, kind: &str) -> PathBuf {
    let apps: Vec<PathBuf> = std::fs::read_dir(data.join("uvdeploy/addons"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(apps.len(), 1, "{apps:?}");
    apps[0].join(kind)
}

/// The password kept for the add-on, and the credentials file's mode.
fn password(home: &Path) -> (String, u32) {
    use std::os::unix::fs::PermissionsExt;
    let file = home.join("credentials");
    let text = std::fs::read_to_string(&file).unwrap();
    let password = text
        .lines()
        .find_map(|l| l.strip_prefix("PASSWORD="))
        .unwrap()
        .to_string();
    assert!(password.len() >= 16);
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    (password, mode)
}

/// The database servers among the deployment's processes: the add-ons' process groups, as
/// deploy.json names their leaders (Redis rewrites its environment, so its mark is lost), and
/// any marked process.
fn servers(deployment: &Deployment) -> Vec<(i32, String)> {
    let summary = std::fs::read(deployment.tmp.path().join("state/deploy.json"))
        .unwrap_or_else(|e| panic!("no deploy.json ({e}):\n{}", deployment.output()));
    let summary: serde_json::Value = serde_json::from_slice(&summary).unwrap();
    let mut pids = marked_processes(&deployment.mark);
    for name in ["postgresql", "mysql", "redis"] {
        if let Some(leader) = summary["processes"][name].as_i64() {
            pids.extend(testkit::processes_in_group(leader as i32));
        }
    }
    pids.sort();
    pids.dedup();
    pids.into_iter()
        .filter_map(|pid| {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
            let comm = comm.trim().to_string();
            ["postgres", "mariadbd", "redis-server"]
                .contains(&comm.as_str())
                .then_some((pid, comm))
        })
        .collect()
}

/// Processes whose command line holds `needle`.
fn command_lines_with(needle: &str) -> Vec<String> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| {
            let line = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let line = String::from_utf8_lossy(&line).replace('\0', " ");
            line.contains(needle).then_some(format!("{pid}: {line}"))
        })
        .collect()
}

/// Runs once deployed: the password is in no output, file or command line, and the server
/// runs; then the stop leaves nothing, the server included.
fn check_secret_then_stop(mut deployment: Deployment, password: &str, server: &str) {
    let output = deployment.output();
    assert!(
        !output.contains(password),
        "the password is shown:\n{output}"
    );
    for file in ["plan.json", "deploy.json"] {
        let text = std::fs::read_to_string(deployment.tmp.path().join("state").join(file)).unwrap();
        assert!(
            !text.contains(password),
            "the password is in {file}:\n{text}"
        );
    }
    assert_eq!(command_lines_with(password), Vec::<String>::new());
    let running = servers(&deployment);
    assert!(
        running.iter().any(|(_, comm)| comm == server),
        "no {server} among {running:?}"
    );
    assert_eq!(deployment.stop().code(), Some(0), "{}", deployment.output());
    deployment.nothing_left();
    assert_eq!(servers(&deployment), vec![]);
    // The state directory kept after the stop holds none of the add-ons' secrets.
    let state = deployment.tmp.path().join("state");
    assert!(!state.join("addons.env").exists());
    assert!(!state.join("addons/redis/redis.conf").exists());
    assert!(
        !deployment.output().contains("did not stop"),
        "{}",
        deployment.output()
    );
}

/// An app that, told to stop, writes a row first: the database must still be there.
const WRITES_WHEN_STOPPED: &str = r#"
import http.server, os, signal, subprocess

def on_term(*_):
    env = dict(os.environ, PGHOST=os.environ["POSTGRESQL_ADDON_HOST"], PGPORT=os.environ["POSTGRESQL_ADDON_PORT"],
               PGUSER=os.environ["POSTGRESQL_ADDON_USER"], PGPASSWORD=os.environ["POSTGRESQL_ADDON_PASSWORD"],
               PGDATABASE=os.environ["POSTGRESQL_ADDON_DB"])
    subprocess.run(["psql", "-X", "-q", "-c", "INSERT INTO visits VALUES (2)"], env=env, check=False)
    os._exit(0)

signal.signal(signal.SIGTERM, on_term)
server = http.server.ThreadingHTTPServer(("0.0.0.0", int(os.environ["PORT"])), http.server.SimpleHTTPRequestHandler)
server.serve_forever()
"#;

/// A production `clever env` with the PostgreSQL add-on's variables: with `--addon
/// postgresql`, each is replaced (and named), the pre-run hook migrates and writes a row, and
/// the row is still there in the next deployment; the server stops after the app (which
/// writes a row when told to stop).
#[test]
fn postgresql_is_a_real_local_database_whose_rows_outlive_the_deployment() {
    let data = testkit::shared_tempdir();
    let (tmp, app) = testkit::copy_example("hello");
    std::fs::write(app.join("stop.py"), WRITES_WHEN_STOPPED).unwrap();
    let production = tmp.path().join("production.env");
    std::fs::write(
        &production,
        "POSTGRESQL_ADDON_URI=postgresql://prod:prod-Secret-9@db.example.com:5432/prod\nPOSTGRESQL_ADDON_HOST=db.example.com\nPOSTGRESQL_ADDON_ROLE=prod\n",
    )
    .unwrap();
    for round in 1..=2 {
        let deployment = with_addon("postgresql", data.path())
            .var("CC_PYTHON_UV_RUN_COMMAND", "python3 stop.py")
            .args(&["--env-file", production.to_str().unwrap()])
            // The add-on runs before the build: a build hook migrates.
            .var(
                "CC_POST_BUILD_HOOK",
                r#"psql "$POSTGRESQL_ADDON_URI" -X -q -v ON_ERROR_STOP=1 -c "CREATE TABLE IF NOT EXISTS visits (n int)""#,
            )
            .var(
                "CC_PRE_RUN_HOOK",
                r#"psql "$POSTGRESQL_ADDON_URI" -X -q -v ON_ERROR_STOP=1 -c "INSERT INTO visits VALUES (1)""#,
            )
            .var(
                "CC_RUN_SUCCEEDED_HOOK",
                r#"echo "rows=$(psql "$POSTGRESQL_ADDON_URI" -X -Atc 'SELECT count(*) FROM visits WHERE n = 1') stopped=$(psql "$POSTGRESQL_ADDON_URI" -X -Atc 'SELECT count(*) FROM visits WHERE n = 2') host=$POSTGRESQL_ADDON_HOST direct=$POSTGRESQL_ADDON_DIRECT_HOST version=$POSTGRESQL_ADDON_VERSION role=[$POSTGRESQL_ADDON_ROLE]""#,
            )
            .launch(testkit::shared_tempdir(), app.clone());
        deployment.deployed();
        let output = deployment.output();
        assert!(
            output.contains(&format!(
                "rows={round} stopped={} host=127.0.0.1 direct=127.0.0.1 version=1",
                round - 1
            )),
            "round {round}:\n{output}"
        );
        assert!(output.contains("role=[]"), "{output}");
        for name in [
            "POSTGRESQL_ADDON_URI",
            "POSTGRESQL_ADDON_HOST",
            "POSTGRESQL_ADDON_ROLE",
        ] {
            assert!(
                output.contains(&format!("deploy: {name} was given")),
                "{name} not said:\n{output}"
            );
        }
        assert!(!output.contains("prod-Secret-9"), "{output}");
        let (password, mode) = password(&addon_home(data.path(), "postgresql"));
        assert_eq!(mode, 0o600);
        check_secret_then_stop(deployment, &password, "postgres");
    }
}

/// Redis keeps its keys across deployments; `uvdeploy addons` lists the app's add-on data,
/// refuses to remove it while the app runs, and removes it once stopped.
#[test]
fn redis_keeps_its_keys_and_its_data_is_listed_and_removed() {
    let data = testkit::shared_tempdir();
    let (_tmp, app) = testkit::copy_example("hello");
    let addons = |args: &[&str]| {
        let mut command = Command::new(testkit::bin("uvaddons"));
        testkit::cleared(&mut command)
            .env("XDG_DATA_HOME", data.path())
            .env("UVDEPLOY_CACHE_DIR", data.path().join("cache"))
            .args(args)
            .arg(&app)
            .output()
            .unwrap()
    };
    for round in 1..=2 {
        let mut setup = with_addon("redis", data.path()).var(
            "CC_PRE_RUN_HOOK",
            r#"echo "visits=$(REDISCLI_AUTH="$REDIS_PASSWORD" redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" INCR visits)"; case $REDIS_URL in redis://:$REDIS_PASSWORD@127.0.0.1:$REDIS_PORT) echo url-ok;; esac"#,
        );
        // The lock the removal checks is the deployment's.
        setup = setup.var(
            "UVDEPLOY_CACHE_DIR",
            data.path().join("cache").display().to_string(),
        );
        let deployment = setup.launch(testkit::shared_tempdir(), app.clone());
        deployment.deployed();
        let output = deployment.output();
        assert!(output.contains(&format!("visits={round}")), "{output}");
        assert!(output.contains("url-ok"), "{output}");
        let listed = addons(&[]);
        let stdout = String::from_utf8_lossy(&listed.stdout);
        assert!(stdout.starts_with("redis\t"), "{stdout}");
        let refused = addons(&["--remove", "redis"]);
        assert_eq!(refused.status.code(), Some(1));
        assert!(String::from_utf8_lossy(&refused.stderr).contains("is deployed now"));
        let (password, _) = password(&addon_home(data.path(), "redis"));
        assert!(!stdout.contains(&password));
        check_secret_then_stop(deployment, &password, "redis-server");
    }
    let removed = addons(&["--remove", "redis"]);
    assert!(removed.status.success(), "{removed:?}");
    assert!(!addon_home(data.path(), "redis").exists());
    assert_eq!(addons(&[]).stdout, b"");
}

/// MariaDB as the MySQL add-on: the hook connects with the MYSQL_ADDON_* variables (the
/// password through MYSQL_PWD), and the rows outlive the deployment.
#[test]
fn mysql_is_a_real_local_database_whose_rows_outlive_the_deployment() {
    let data = testkit::shared_tempdir();
    let (_tmp, app) = testkit::copy_example("hello");
    for round in 1..=2 {
        let deployment = with_addon("mysql", data.path())
            .var(
                "CC_PRE_RUN_HOOK",
                r#"MYSQL_PWD="$MYSQL_ADDON_PASSWORD" mariadb -h "$MYSQL_ADDON_HOST" -P "$MYSQL_ADDON_PORT" -u "$MYSQL_ADDON_USER" -N "$MYSQL_ADDON_DB" -e "CREATE TABLE IF NOT EXISTS visits (n int); INSERT INTO visits VALUES (1); SELECT CONCAT('rows=', COUNT(*)) FROM visits""#,
            )
            .launch(testkit::shared_tempdir(), app.clone());
        if !deployment.wait_for("==> deployed", Duration::from_secs(180)) {
            panic!("not deployed:\n{}", deployment.output());
        }
        let output = deployment.output();
        assert!(output.contains(&format!("rows={round}")), "{output}");
        let (password, _) = password(&addon_home(data.path(), "mysql"));
        check_secret_then_stop(deployment, &password, "mariadbd");
    }
}

/// An add-on that dies is said, and the app runs on (as on the platform, where a database
/// outage does not stop the app); the stop is clean.
#[test]
fn an_add_on_that_dies_is_said_and_the_app_runs_on() {
    let data = testkit::shared_tempdir();
    let mut deployment = with_addon("redis", data.path()).start();
    deployment.deployed();
    let (pid, _) = servers(&deployment)
        .into_iter()
        .find(|(_, comm)| comm == "redis-server")
        .unwrap_or_else(|| panic!("no redis-server:\n{}", deployment.output()));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    assert!(
        deployment.wait_for(
            "deploy: redis exited with status 137: the app runs on without it",
            Duration::from_secs(10)
        ),
        "{}",
        deployment.output()
    );
    let response = testkit::http_get(deployment.public, "/", &[]).unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(deployment.stop().code(), Some(0), "{}", deployment.output());
    deployment.nothing_left();
}

/// Without `--addon`, the add-ons' variables are used as given (an app rehearsed against a
/// database of its own choosing).
#[test]
fn without_addon_the_variables_are_used_as_given() {
    let mut deployment = Setup::new("hello")
        .var("POSTGRESQL_ADDON_HOST", "db.example.com")
        .var("CC_PRE_RUN_HOOK", r#"echo "host=$POSTGRESQL_ADDON_HOST""#)
        .start();
    deployment.deployed();
    let output = deployment.output();
    assert!(output.contains("host=db.example.com"), "{output}");
    assert!(!output.contains("==> add-ons"), "{output}");
    assert_eq!(deployment.stop().code(), Some(0));
    deployment.nothing_left();
}

/// A server that cannot start (its data directory is not a database) fails the deployment
/// before the build: the error names the add-on and its status, deploy.json names the step,
/// and nothing is left.
#[test]
fn an_add_on_that_cannot_start_fails_the_deployment_before_the_build() {
    let data = testkit::shared_tempdir();
    let (tmp, app) = testkit::copy_example("hello");
    let app_dir = std::fs::canonicalize(&app).unwrap();
    // Initialised, says the marker; but the data directory is empty.
    let key = app_dir.file_name().unwrap().to_str().unwrap().to_string();
    let mut deployment = with_addon("postgresql", data.path()).launch(tmp, app.clone());
    // The first start makes the directories: wait for it, stop, then break the data.
    deployment.deployed();
    assert_eq!(deployment.stop().code(), Some(0));
    let home = addon_home(data.path(), "postgresql");
    assert!(home
        .parent()
        .unwrap()
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .starts_with(&key));
    std::fs::remove_dir_all(home.join("data")).unwrap();
    std::fs::create_dir(home.join("data")).unwrap();
    let mut broken = with_addon("postgresql", data.path()).launch(testkit::shared_tempdir(), app);
    let status = broken.exit(Duration::from_secs(60));
    let output = broken.output();
    assert_eq!(status.code(), Some(1), "{output}");
    assert!(
        output.contains("error: the postgresql add-on exited with status"),
        "{output}"
    );
    assert!(!output.contains("==> build"), "{output}");
    let summary: serde_json::Value = serde_json::from_slice(
        &std::fs::read(broken.tmp.path().join("state/deploy.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(summary["failed"]["step"], "addons", "{summary}");
    broken.nothing_left();
}

/// The supervisor killed outright (SIGKILL): its watchdog stops the add-ons' servers too.
#[test]
fn a_killed_supervisor_leaves_no_add_on_server() {
    let data = testkit::shared_tempdir();
    let mut deployment = with_addon("postgresql", data.path())
        .args(&["--addon", "redis"])
        .start();
    deployment.deployed();
    let running = servers(&deployment);
    assert!(
        running.iter().any(|(_, c)| c == "postgres")
            && running.iter().any(|(_, c)| c == "redis-server"),
        "{running:?}"
    );
    deployment.guard.signal(nix::sys::signal::Signal::SIGKILL);
    deployment.exit(Duration::from_secs(10));
    assert!(
        testkit::wait_until(Duration::from_secs(15), || servers(&deployment).is_empty()),
        "left: {:?}",
        servers(&deployment)
    );
    deployment.nothing_left();
}
