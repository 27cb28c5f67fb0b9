//! `export` on plans made by the real `detect | flowctl`: golden manifests for every shape of
//! chain, the invariants a schema cannot see, and the real Kubernetes schemas
//! (`kubernetes-validate`, PyPI, schemas bundled): valid for 1.29 and the newest, and, when
//! there are hops, invalid for 1.27, which has no native sidecars.

use export::kubernetes::{manifests, Options};
use plan::{Env, Plan};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use testkit::{bin, copy_example, HIT_MARKING_VCL};

/// (golden file, example app, a VCL added, variables)
type Case = (
    &'static str,
    &'static str,
    bool,
    &'static [(&'static str, &'static str)],
);

const CASES: [Case; 8] = [
    (
        "no_middleware",
        "hello",
        false,
        &[("CC_HEALTH_CHECK_PATH", "/health")],
    ),
    (
        "otoroshi_and_varnish",
        "hello",
        true,
        &[("OTOROSHI_CHALLENGE_SECRET", "s3cr3t-value")],
    ),
    (
        "all_three",
        "hello",
        true,
        &[
            ("OTOROSHI_CHALLENGE_SECRET", "s3cr3t-value"),
            ("CC_REDIRECTIONIO_PROJECT_KEY", "k3y-value"),
            ("CC_HEALTH_CHECK_PATH_0", "/health"),
            ("CC_HEALTH_CHECK_PATH_1", "/"),
        ],
    ),
    (
        "custom",
        "hello",
        false,
        &[
            ("CC_REQUEST_FLOW", "custom"),
            (
                "CC_REQUEST_FLOW_CUSTOM",
                "my-proxy --listen @@LISTEN_PORT@@ --to @@FORWARD_PORT@@",
            ),
        ],
    ),
    (
        "block",
        "hello",
        false,
        &[
            ("CC_REQUEST_FLOW", "block"),
            ("CC_HEALTH_CHECK_PATH", "/health"),
        ],
    ),
    // Legacy mode: Nginx the last sidecar, the app server in `containers`.
    (
        "legacy_uwsgi_static_gzip",
        "legacy-flask-uwsgi",
        false,
        &[
            ("CC_PYTHON_MODULE", "wsgi:app"),
            ("STATIC_FILES_PATH", "static/"),
            ("STATIC_URL_PREFIX", "/static"),
            ("ENABLE_GZIP_COMPRESSION", "true"),
        ],
    ),
    (
        "legacy_celery_basic_auth",
        "legacy-celery",
        false,
        &[
            ("CC_PYTHON_MODULE", "web:app"),
            ("CC_PYTHON_CELERY_MODULE", "tasks"),
            ("CC_PYTHON_CELERY_USE_BEAT", "true"),
            ("CC_HTTP_BASIC_AUTH", "admin:s3cr3t-value"),
        ],
    ),
    (
        "legacy_gunicorn_tasks_behind_varnish",
        "legacy-django-gunicorn",
        true,
        &[
            ("CC_PYTHON_BACKEND", "gunicorn"),
            ("CC_PYTHON_MODULE", "mysite.wsgi:application"),
            ("CC_PYTHON_MANAGE_TASKS", "migrate --no-input, check"),
        ],
    ),
];

/// The plan `detect | flowctl` makes for the case, with a fixed state directory.
fn plan_of(example: &str, vcl: bool, vars: &[(&str, &str)]) -> Plan {
    plan_with(
        example,
        |app| {
            if vcl {
                std::fs::create_dir_all(app.join("clevercloud")).unwrap();
                std::fs::write(app.join("clevercloud/varnish.vcl"), HIT_MARKING_VCL).unwrap();
            }
        },
        vars,
    )
}

/// The plan of a copy of `example` that `edit` changed first.
fn plan_with(example: &str, edit: impl FnOnce(&Path), vars: &[(&str, &str)]) -> Plan {
    let (_tmp, app) = copy_example(example);
    edit(&app);
    plan_at(&app, "/srv/uvdeploy-state", vars)
}

/// The plan `detect | flowctl` makes for the app at `app`, with the state directory
/// `state_dir`.
fn plan_at(app: &Path, state_dir: &str, vars: &[(&str, &str)]) -> Plan {
    let mut detect = Command::new(bin("detect"));
    testkit::cleared(&mut detect)
        .arg(app)
        .env("CC_PYTHON_UV_RUN_COMMAND", "uv run python app.py")
        .envs(vars.iter().copied());
    let planned = testkit::succeeded(detect.output().unwrap());
    let mut flowctl = Command::new(bin("flowctl"));
    testkit::cleared(&mut flowctl)
        .env(
            "PATH",
            format!("{}:/usr/sbin", std::env::var("PATH").unwrap()),
        )
        .args(["--state-dir", state_dir]);
    let out = testkit::succeeded(
        assert_cmd::Command::from_std(flowctl)
            .write_stdin(planned.stdout)
            .output()
            .unwrap(),
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn options() -> Options {
    let env: Env = [("GREETING", "hello"), ("DATABASE_PASSWORD", "pw-value")]
        .into_iter()
        .collect();
    Options {
        image: "registry.example/hello:1".into(),
        name: "hello".into(),
        flavor: export::scaling::Flavor::default(),
        instances: export::scaling::Instances { min: 2, max: 2 },
        ports: plan::PortSettings::default(),
        env,
    }
}

/// The golden files besides the CASES': `scaled`, the otoroshi_and_varnish chain on the M
/// flavor, from 2 to 6 pods.
const SCALED: &str = "scaled";

fn scaled_options() -> Options {
    Options {
        flavor: export::scaling::Flavor::named("M").unwrap(),
        instances: export::scaling::Instances { min: 2, max: 6 },
        ..options()
    }
}

#[test]
fn golden_manifests_for_every_shape_of_chain() {
    let scaled = (SCALED, "hello", true, CASES[1].3);
    for (name, example, vcl, vars) in CASES.into_iter().chain([scaled]) {
        let plan = plan_of(example, vcl, vars);
        let options = if name == SCALED {
            scaled_options()
        } else {
            options()
        };
        let yaml = export::yaml::documents(&manifests(&plan, &options).unwrap().documents);
        let golden =
            Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/golden/{name}.yaml"));
        if std::env::var_os("UVDEPLOY_UPDATE_GOLDEN").is_some() {
            std::fs::write(&golden, &yaml).unwrap();
        }
        assert_eq!(
            yaml,
            std::fs::read_to_string(&golden).unwrap_or_default(),
            "{name}: run `UVDEPLOY_UPDATE_GOLDEN=1 cargo test -p export` and review the diff"
        );
        for (_, value) in vars.iter().filter(|(k, _)| plan::secret::is_secret(k)) {
            assert!(
                !yaml.contains(value),
                "{name}: a secret's value in the manifests"
            );
        }
        assert!(!yaml.contains("pw-value"), "{name}");
    }
}

/// Whatever the machine's directories are called (a `$`, a `"`, which Nginx's configuration
/// escapes), the pod's files and commands name the pod's: flowctl renders them for the pod's
/// layout, and nothing rewrites what it rendered for the machine.
#[test]
fn the_pods_files_name_only_the_pods_directories() {
    let (_tmp, copy) = copy_example("legacy-flask-uwsgi");
    let app = copy.with_file_name("shop$1 \"x\"");
    std::fs::rename(&copy, &app).unwrap();
    let state = "/srv/state$1 \"y\"";
    let plan = plan_at(
        &app,
        state,
        &[
            ("CC_PYTHON_MODULE", "wsgi:app"),
            ("STATIC_FILES_PATH", "static/"),
            ("STATIC_URL_PREFIX", "/static"),
            ("CC_HTTP_BASIC_AUTH", "admin:pw"),
        ],
    );
    let machine = &plan.hops.as_ref().unwrap()[0];
    assert!(
        machine.files[0].content.contains("state$1"),
        "the machine's own paths"
    );
    let docs = manifests(&plan, &options()).unwrap().documents;
    let yaml = export::yaml::documents(&docs);
    for machines in [
        "shop$1",
        "shop${uvdeploy_dollar}1",
        "state$1",
        "state${uvdeploy_dollar}1",
    ] {
        assert!(!yaml.contains(machines), "{machines} in the pod:\n{yaml}");
    }
    let conf = docs[0]["data"]["nginx-8080-nginx.conf"].as_str().unwrap();
    for line in [
        "pid \"/var/lib/uvdeploy/nginx-8080/nginx.pid\";",
        "alias \"/app/static/\";",
        "auth_basic_user_file \"/var/lib/uvdeploy/nginx-8080/htpasswd\";",
    ] {
        assert!(conf.contains(line), "{line}\n{conf}");
    }
    let nginx = &docs[1]["spec"]["template"]["spec"]["initContainers"][0];
    assert_eq!(nginx["name"], "nginx");
    let script = nginx["command"][2].as_str().unwrap();
    assert!(
        script.starts_with("mkdir -p /var/lib/uvdeploy/nginx-8080 && "),
        "{script}"
    );
    assert!(
        script.contains("done > /var/lib/uvdeploy/nginx-8080/htpasswd && "),
        "{script}"
    );
    assert!(
        script.ends_with("exec nginx -p /var/lib/uvdeploy/nginx-8080/ -e stderr -c /etc/uvdeploy/nginx-8080-nginx.conf"),
        "{script}"
    );
}

/// What a schema does not check: the Service reaches the pod, names are unique, every port
/// a probe or the Service uses is declared, and the chain's ports are the plan's.
#[test]
fn invariants_the_schema_misses() {
    for (name, example, vcl, vars) in CASES {
        let plan = plan_of(example, vcl, vars);
        let docs = manifests(&plan, &options()).unwrap().documents;
        let kind = |k: &str| docs.iter().find(|d| d["kind"] == k).unwrap();
        let (deployment, service) = (kind("Deployment"), kind("Service"));
        let pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
            .as_object()
            .unwrap();
        for selector in [
            &service["spec"]["selector"],
            &deployment["spec"]["selector"]["matchLabels"],
        ] {
            for (k, v) in selector.as_object().unwrap() {
                assert_eq!(
                    pod_labels.get(k),
                    Some(v),
                    "{name}: selector {k} not on the pod"
                );
            }
        }
        let pod = &deployment["spec"]["template"]["spec"];
        let containers: Vec<&Value> = pod["initContainers"]
            .as_array()
            .into_iter()
            .flatten()
            .chain(pod["containers"].as_array().unwrap())
            .collect();
        let names: BTreeSet<&str> = containers
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names.len(),
            containers.len(),
            "{name}: container names are unique"
        );
        let declared: BTreeSet<u64> = containers
            .iter()
            .flat_map(|c| c["ports"].as_array().into_iter().flatten())
            .map(|p| p["containerPort"].as_u64().unwrap())
            .collect();
        for container in &containers {
            if let Some(port) = container["startupProbe"]["tcpSocket"]["port"].as_u64() {
                assert!(declared.contains(&port), "{name}: probe port {port}");
            }
        }
        let target = service["spec"]["ports"][0]["targetPort"].as_u64().unwrap();
        assert!(
            declared.contains(&target),
            "{name}: the Service's port {target} is declared"
        );
        assert_eq!(target, u64::from(plan.ports.public));
        // The chain: each hop a sidecar on its listen port, in order, then the app.
        let hops = plan.hops.as_ref().unwrap();
        // (Legacy mode's manage.py tasks are init containers that run to their end.)
        let sidecars: Vec<Value> = pod["initContainers"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|c| !c["name"].as_str().unwrap().starts_with("manage-task-"))
            .collect();
        assert_eq!(sidecars.len(), hops.len(), "{name}");
        for (sidecar, hop) in sidecars.iter().zip(hops) {
            assert_eq!(sidecar["name"], hop.name.as_str());
            assert_eq!(
                sidecar["restartPolicy"], "Always",
                "{name}: a native sidecar"
            );
            assert_eq!(sidecar["ports"][0]["containerPort"], hop.listen);
        }
        let app = &pod["containers"][0];
        assert_eq!(app["ports"][0]["containerPort"], plan.ports.app);
        assert!(app["env"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!({"name": "PORT", "value": plan.ports.app.to_string()})));
    }
}

#[test]
fn the_real_kubernetes_schemas_accept_them_from_1_29_and_refuse_sidecars_before() {
    let dir = tempfile::tempdir().unwrap();
    for name in CASES.map(|c| c.0).into_iter().chain([SCALED]) {
        let file = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/golden/{name}.yaml"));
        let validate = |version: &str| {
            Command::new("kubernetes-validate")
                .args(["--strict", "--quiet", "-k", version])
                .arg(&file)
                .current_dir(dir.path())
                .output()
                .expect("kubernetes-validate is installed (scripts/setup installs it)")
        };
        for version in ["1.29.0", "1.37.0"] {
            let out = validate(version);
            assert!(
                out.status.success(),
                "{name} on {version}: {}",
                String::from_utf8_lossy(&out.stdout)
            );
        }
        let old = validate("1.27.0");
        let has_hops = name != "no_middleware";
        assert_eq!(
            !old.status.success(),
            has_hops,
            "{name} on 1.27: {}",
            String::from_utf8_lossy(&old.stdout)
        );
        if has_hops {
            assert!(String::from_utf8_lossy(&old.stdout).contains("'restartPolicy' was unexpected"));
        }
    }
}

#[test]
fn bad_input_is_one_error_and_exit_2() {
    let run = |args: &[&str], stdin: &str| {
        let out = assert_cmd::Command::new(bin("plan-export"))
            .args(args)
            .write_stdin(stdin.to_string())
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, err) = run(&[], "");
    assert_eq!(code, Some(2));
    assert!(
        err.contains("kubernetes") && err.contains("containerfile"),
        "the targets are listed: {err}"
    );
    let (code, err) = run(&["helm"], "");
    assert_eq!(
        (code, err.as_str()),
        (Some(2), "error: unknown target `helm` (targets: kubernetes, containerfile)\n\nhint: `plan-export kubernetes --image IMAGE` or `plan-export containerfile`\n")
    );
    let (code, err) = run(&["kubernetes"], "");
    assert_eq!(code, Some(2));
    assert!(err.contains("--image <IMAGE>"), "{err}");

    let mut plan: Value = serde_json::from_str(testkit::EXAMPLE_PLAN).unwrap();
    plan.as_object_mut().unwrap().remove("hops");
    let (code, err) = run(&["kubernetes", "--image", "i"], &plan.to_string());
    assert_eq!(
        (code, err.as_str()),
        (Some(2), "error: the plan has no `hops`: it did not go through `flowctl`\n\nhint: pipe the plan through flowctl: `detect APP | uvbuild | flowctl | plan-export kubernetes --image IMAGE`\n")
    );
    // The pod's Varnish runs the plan's VCL: a plan whose Varnish hop lost it is refused.
    let mut plan: Value = serde_json::from_str(testkit::EXAMPLE_PLAN).unwrap();
    plan["hops"][1]["files"] = serde_json::json!([]);
    let (code, err) = run(&["kubernetes", "--image", "i"], &plan.to_string());
    assert_eq!(
        (code, err.as_str()),
        (Some(2), "error: the Varnish hop on port 8081 has no rendered VCL in the plan (make it again with `flowctl`)\n")
    );
    let (code, err) = run(
        &["kubernetes", "--image", "i", "--name", "___"],
        testkit::EXAMPLE_PLAN,
    );
    assert_eq!(
        (code, err.as_str()),
        (Some(2), "error: --name `___` cannot be made a DNS label (letters, digits and `-`, at most 63)\n")
    );
}

#[test]
fn the_containerfile_follows_uvs_layers_and_holds_what_the_chain_needs() {
    let plan = plan_of(
        "hello",
        true,
        &[("OTOROSHI_CHALLENGE_SECRET", "s3cr3t-value")],
    );
    let mut env = Env::default();
    env.set("CC_PRE_BUILD_HOOK", "echo before");
    let text = export::containerfile::render(&plan, "base:offline", &env);
    let at = |needle: &str| {
        text.find(needle)
            .unwrap_or_else(|| panic!("no `{needle}` in:\n{text}"))
    };
    assert!(text.contains("FROM base:offline\n"));
    // Dependencies first (the lockfile bind-mounted, the cache in a cache mount), then the app.
    assert!(
        at("--mount=type=bind,source=uv.lock,target=/app/uv.lock")
            < at("uv sync --locked --no-install-project --no-dev")
    );
    assert!(at("--mount=type=cache,target=/root/.cache/uv") < at("COPY . /app"));
    assert!(at("uv sync --locked --no-install-project --no-dev") < at("COPY . /app"));
    assert!(at("COPY . /app") < at("RUN [\"/bin/sh\",\"-c\",\"echo before\"]"));
    assert!(at("RUN [\"/bin/sh\",\"-c\",\"echo before\"]") < at("uv sync --locked --no-dev\n"));
    assert!(
        text.contains("command -v varnishd"),
        "a Varnish hop: varnishd in the image"
    );
    assert!(text.contains("COPY --from=uvdeploy-tools . /usr/local/bin/\n"));
    assert!(
        !text.contains(".uvdeploy"),
        "nothing of the tools' copy in the app's layers"
    );
    assert!(at("WORKDIR /app\n") < at("uv sync --locked --no-install-project"));
    assert!(text.contains("CMD [\"uv\",\"run\",\"python\",\"app.py\"]"));
    assert!(!text.contains("s3cr3t-value"));

    let dev = plan_of("hello", false, &[("ENVIRONMENT", "development")]);
    let text = export::containerfile::render(&dev, "b", &Env::default());
    assert!(
        !text.contains("--no-dev"),
        "development keeps dev dependencies"
    );
    assert!(!text.contains("varnishd"), "no Varnish hop, no varnishd");
}

/// Basic-auth pairs are secrets: from the Secret in the pod, never in the manifests.
#[test]
fn basic_auth_pairs_come_from_the_secret() {
    let plan = plan_of(
        "legacy-flask-uwsgi",
        false,
        &[
            ("CC_PYTHON_MODULE", "wsgi:app"),
            ("CC_HTTP_BASIC_AUTH", "admin:s3cr3t-value"),
        ],
    );
    let mut options = options();
    options.env.set("CC_HTTP_BASIC_AUTH", "admin:s3cr3t-value");
    let exported = manifests(&plan, &options).unwrap();
    let yaml = export::yaml::documents(&exported.documents);
    assert!(!yaml.contains("s3cr3t-value"), "{yaml}");
    assert!(exported.secrets.contains(&"CC_HTTP_BASIC_AUTH".to_string()));
}

#[test]
fn the_legacy_containerfile_installs_the_requirements_first_and_holds_nginx_and_uwsgi() {
    let plan = plan_of(
        "legacy-django-gunicorn",
        false,
        &[
            ("CC_PYTHON_MODULE", "mysite.wsgi:application"),
            ("PYTHON_SETUP_PY_GOAL", "build"),
        ],
    );
    let text = export::containerfile::render(&plan, "base:offline", &Env::default());
    let at = |needle: &str| {
        text.find(needle)
            .unwrap_or_else(|| panic!("no `{needle}` in:\n{text}"))
    };
    assert!(text.contains("command -v nginx >/dev/null || (apt-get update"));
    assert!(
        text.contains("apt-get install -y --no-install-recommends uwsgi-core uwsgi-plugin-python3")
    );
    assert!(
        at("RUN python3 -m venv /app/.venv")
            < at("--mount=type=bind,source=requirements.txt,target=/app/requirements.txt")
    );
    assert!(at("--mount=type=cache,target=/root/.cache/pip") < at("COPY . /app"));
    assert!(
        at(r#"["/app/.venv/bin/python","-m","pip","install","-r","/app/requirements.txt"]"#)
            < at("COPY . /app")
    );
    assert!(at("COPY . /app") < at("RUN [\"/app/.venv/bin/python\",\"setup.py\",\"build\"]"));
    assert!(text.contains("ENV PATH=\"/app/.venv/bin:$PATH\" VIRTUAL_ENV=/app/.venv PORT=9000\n"));
    assert!(text.contains("CMD [\"uwsgi\",\"--plugin\",\"python3\",\"--socket\",\"127.0.0.1:9000\",\"--module\",\"mysite.wsgi:application\",\"--pythonpath\",\"/app/.venv/lib/python*/site-packages\""), "{text}");

    let gunicorn = plan_of(
        "legacy-django-gunicorn",
        false,
        &[
            ("CC_PYTHON_BACKEND", "gunicorn"),
            ("CC_PYTHON_MODULE", "mysite.wsgi:application"),
            ("CC_PYTHON_VERSION", "3.11"),
        ],
    );
    let text = export::containerfile::render(&gunicorn, "b", &Env::default());
    assert!(
        !text.contains("uwsgi-core"),
        "gunicorn comes from the requirements"
    );
    assert!(text.contains("RUN python3.11 -m venv /app/.venv"));
}

/// The documents as a real YAML 1.1 parser reads them (PyYAML), as JSON.
fn parsed_by_pyyaml(yaml: &str) -> Vec<Value> {
    let out = assert_cmd::Command::new("python3")
        .args([
            "-c",
            "import json, sys, yaml; print(json.dumps(list(yaml.safe_load_all(sys.stdin.read()))))",
        ])
        .write_stdin(yaml.to_string())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "PyYAML refused:\n{yaml}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Strings a YAML 1.1 or 1.2 parser would read as something else unless quoted, and
/// characters a scalar cannot hold as they are.
const TRICKY: [&str; 37] = [
    "0x1F",
    "0b101",
    "0o17",
    "017",
    "1_000",
    "1e3",
    "1.5",
    "+1",
    "-1",
    ".5",
    ".inf",
    ".NaN",
    "2024-01-01",
    "2024-01-01T10:00:00Z",
    "190:20:30",
    "yes",
    "Yes",
    "NO",
    "on",
    "Off",
    "y",
    "N",
    "true",
    "False",
    "~",
    "null",
    "Null",
    "",
    "<<",
    "=",
    "- x",
    "a: b",
    "# c",
    "@x",
    "tab\there",
    "nel\u{85}here",
    "form\u{c}feed",
];

#[test]
fn every_string_reads_back_as_the_same_string() {
    let mut values = serde_json::Map::new();
    for (i, text) in TRICKY.iter().enumerate() {
        values.insert(format!("k{i}"), Value::String(text.to_string()));
        values.insert(text.to_string(), Value::String(format!("key {i}")));
    }
    let doc = serde_json::json!({
        "values": values,
        "list": TRICKY.as_slice(),
        // Multi-line texts: a VCL with a form feed in a comment, NEL, a line separator.
        "vcl": "vcl 4.1;\n# page\u{c}break\nbackend default {}\n",
        "nel": "one\u{85}two\nthree\n",
        "ls": "one\u{2028}two\nthree",
        "crlf": "one\r\ntwo\n",
    });
    let yaml = export::yaml::documents(std::slice::from_ref(&doc));
    assert_eq!(parsed_by_pyyaml(&yaml), [doc]);
}

/// The same through the tool: variables and `--name` values that look like numbers, dates or
/// booleans stay strings, and the real schema agrees (`env.1.value: 5 is not of type
/// 'string'` before).
#[test]
fn exported_values_and_names_stay_strings() {
    let mut command = assert_cmd::Command::new(bin("plan-export"));
    command.args([
        "kubernetes",
        "--image",
        "registry.example/app:1",
        "--name",
        "0x1F",
    ]);
    for (i, text) in TRICKY.iter().enumerate() {
        command.args(["--env", &format!("V{i}={text}")]);
    }
    let out = command.write_stdin(testkit::EXAMPLE_PLAN).output().unwrap();
    let yaml = String::from_utf8(testkit::succeeded(out).stdout).unwrap();
    let docs = parsed_by_pyyaml(&yaml);
    let deployment = docs.iter().find(|d| d["kind"] == "Deployment").unwrap();
    assert_eq!(deployment["metadata"]["name"], "0x1f");
    let env = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .unwrap();
    for (i, text) in TRICKY.iter().enumerate() {
        let name = format!("V{i}");
        let value = env.iter().find(|e| e["name"] == name.as_str());
        assert_eq!(
            value.map(|v| &v["value"]),
            Some(&Value::String(text.to_string())),
            "{name}"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("app.yaml"), &yaml).unwrap();
    let validated = Command::new("kubernetes-validate")
        .args(["--strict", "--quiet", "-k", "1.29.0", "app.yaml"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        validated.status.success(),
        "{}",
        String::from_utf8_lossy(&validated.stdout)
    );
}

/// A manage task is its words, in the pod as in `launcher`: `check; touch ran` runs
/// `manage.py` with the arguments `check;`, `touch`, `ran`, and no shell touches `ran` (before,
/// the init container ran the tasks through `/bin/sh -c`, so `touch` ran in the pod only).
#[test]
fn manage_tasks_run_as_words_in_the_pod_as_in_launcher() {
    let plan = plan_of(
        "legacy-django-gunicorn",
        false,
        &[
            ("CC_PYTHON_BACKEND", "gunicorn"),
            ("CC_PYTHON_MODULE", "mysite.wsgi:application"),
            (
                "CC_PYTHON_MANAGE_TASKS",
                "check; touch ran, migrate --no-input",
            ),
        ],
    );
    let docs = manifests(&plan, &options()).unwrap().documents;
    let deployment = docs.iter().find(|d| d["kind"] == "Deployment").unwrap();
    let init: Vec<&Value> = deployment["spec"]["template"]["spec"]["initContainers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["name"].as_str().unwrap().starts_with("manage-task-"))
        .collect();
    let commands: Vec<Vec<String>> = init
        .iter()
        .map(|c| serde_json::from_value(c["command"].clone()).unwrap())
        .collect();
    assert_eq!(
        commands,
        [
            plan::legacy::manage_task_argv("check; touch ran"),
            plan::legacy::manage_task_argv("migrate --no-input"),
        ]
    );
    assert_eq!(init[0]["name"], "manage-task-1", "in the order given");
    // Run each command as the container would, with a manage.py that records its arguments.
    let dir = tempfile::tempdir().unwrap();
    let bin_dir = dir.path().join("bin");
    std::fs::create_dir(&bin_dir).unwrap();
    std::os::unix::fs::symlink(which_python3(), bin_dir.join("python")).unwrap();
    std::fs::write(
        dir.path().join("manage.py"),
        "import sys\nopen('args', 'a').write(repr(sys.argv[1:]) + '\\n')\n",
    )
    .unwrap();
    for command in &commands {
        let status = Command::new(&command[0])
            .args(&command[1..])
            .current_dir(dir.path())
            .env("PATH", format!("{}:/usr/bin:/bin", bin_dir.display()))
            .status()
            .unwrap();
        assert!(status.success());
    }
    assert_eq!(
        std::fs::read_to_string(dir.path().join("args")).unwrap(),
        "['check;', 'touch', 'ran']\n['migrate', '--no-input']\n"
    );
    assert!(!dir.path().join("ran").exists(), "no shell ran `touch`");
}

fn which_python3() -> std::path::PathBuf {
    let out = Command::new("sh")
        .args(["-c", "command -v python3"])
        .output()
        .unwrap();
    std::path::PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

/// The requirements file's name never adds a line to the Containerfile nor splits a mount
/// option: pip's command is JSON (exec form), and a name a bind mount cannot hold as it is
/// is installed after the app instead. (`detect` refuses control characters in
/// CC_PIP_REQUIREMENTS_FILE; a plan can still be written by hand.)
#[test]
fn the_requirements_file_name_is_quoted_in_the_containerfile() {
    let mut plan = plan_of(
        "legacy-django-gunicorn",
        false,
        &[("CC_PYTHON_MODULE", "mysite.wsgi:application")],
    );
    for name in [
        "req s.txt\nRUN touch /pwned",
        "a,source=/etc,b.txt",
        "r\"q'.txt",
    ] {
        plan.legacy.as_mut().unwrap().requirements = Some(name.to_string());
        let text = export::containerfile::render(&plan, "base", &Env::default());
        assert!(
            !text.lines().any(|l| l.starts_with("RUN touch")),
            "{name:?}: an instruction injected:\n{text}"
        );
        assert!(
            !text
                .lines()
                .any(|l| l.contains("--mount=type=bind,source=a")),
            "{name:?}: a mount option split:\n{text}"
        );
        let pip = text
            .lines()
            .find(|l| l.contains("\"pip\",\"install\""))
            .unwrap_or_else(|| panic!("no pip line:\n{text}"));
        let json = &pip[pip.find('[').unwrap()..];
        let argv: Vec<String> = serde_json::from_str(json).unwrap();
        assert_eq!(argv.last().unwrap(), &format!("/app/{name}"));
        assert!(text.find("COPY . /app").unwrap() < text.find(pip).unwrap());
    }
}

/// What `checkout | detect | flowctl | plan-export kubernetes` names and numbers: the objects
/// after the app (`hello`, not `copy`, the checkout's directory), and the pod on the
/// platform's ports (8080, 8081, 9000) although the plan was made on shifted local ones.
#[test]
fn objects_are_named_after_the_app_and_the_pod_is_on_the_platforms_ports() {
    let (_tmp, app) = copy_example("hello");
    std::fs::create_dir_all(app.join("clevercloud")).unwrap();
    std::fs::write(app.join("clevercloud/varnish.vcl"), HIT_MARKING_VCL).unwrap();
    let work = tempfile::tempdir().unwrap();
    let mut bash = Command::new("bash");
    testkit::cleared(&mut bash)
        .current_dir(work.path())
        .env(
            "PATH",
            format!(
                "{}:{}:/usr/sbin",
                bin("detect").parent().unwrap().display(),
                std::env::var("PATH").unwrap()
            ),
        )
        .env("APP", &app)
        .env(
            "CC_PYTHON_UV_RUN_COMMAND",
            "uv run python app.py --port 46500",
        )
        .env("OTOROSHI_CHALLENGE_SECRET", "s3cr3t-value")
        .args([
            "-o",
            "pipefail",
            "-c",
            "checkout --into copy \"$APP\" > source.json && \
             detect --source source.json copy --public-port 46400 --app-port 46500 \
             | flowctl --state-dir /srv/state > plan.json && \
             plan-export kubernetes --image i --plan plan.json",
        ]);
    let out = testkit::succeeded(bash.output().unwrap());
    let yaml = String::from_utf8(out.stdout).unwrap();
    let planned = std::fs::read_to_string(work.path().join("plan.json")).unwrap();
    assert!(planned.contains("46401"), "the plan is on the local ports");
    for local in ["46400", "46401", "46500"] {
        assert!(!yaml.contains(local), "{local} in the manifests:\n{yaml}");
    }
    let docs = parsed_by_pyyaml(&yaml);
    let app_name = app.file_name().unwrap().to_str().unwrap();
    for doc in &docs {
        assert!(
            doc["metadata"]["name"]
                .as_str()
                .unwrap()
                .starts_with(app_name),
            "{}",
            doc["metadata"]["name"]
        );
    }
    let deployment = docs.iter().find(|d| d["kind"] == "Deployment").unwrap();
    let pod = &deployment["spec"]["template"]["spec"];
    let port_of = |c: &Value| c["ports"][0]["containerPort"].as_u64().unwrap();
    let sidecars = pod["initContainers"].as_array().unwrap();
    assert_eq!(
        sidecars.iter().map(port_of).collect::<Vec<_>>(),
        [8080, 8081]
    );
    assert_eq!(
        sidecars[0]["command"],
        serde_json::json!([
            "otoroshi-challenge",
            "--listen",
            "8080",
            "--forward",
            "8081"
        ])
    );
    let app_container = &pod["containers"][0];
    assert_eq!(port_of(app_container), 9000);
    assert_eq!(
        app_container["command"],
        serde_json::json!(["uv", "run", "python", "app.py", "--port", "9000"])
    );
    let config = docs.iter().find(|d| d["kind"] == "ConfigMap").unwrap();
    let vcl = config["data"].as_object().unwrap().values().next().unwrap();
    assert!(vcl.as_str().unwrap().contains("\"9000\""), "{vcl}");
    let service = docs.iter().find(|d| d["kind"] == "Service").unwrap();
    assert_eq!(service["spec"]["ports"][0]["port"], 8080);
}

/// What an operator checks before `kubectl apply` (issue 25): every container as the image's
/// non-root user, no privilege escalation, no capability, a read-only root filesystem with an
/// emptyDir on /tmp, requests and limits; no service account token; the app restarted only
/// when its port no longer accepts; a rolling update that never lowers the ready pods.
#[test]
fn every_container_runs_as_an_operator_accepts() {
    for (name, example, vcl, vars) in CASES {
        let plan = plan_of(example, vcl, vars);
        let docs = manifests(&plan, &options()).unwrap().documents;
        let deployment = docs.iter().find(|d| d["kind"] == "Deployment").unwrap();
        let spec = &deployment["spec"];
        assert_eq!(spec["replicas"], 2, "{name}");
        assert_eq!(
            spec["strategy"]["rollingUpdate"]["maxUnavailable"], 0,
            "{name}"
        );
        let pod = &spec["template"]["spec"];
        assert_eq!(pod["automountServiceAccountToken"], false, "{name}");
        let pod_security = &pod["securityContext"];
        assert_eq!(pod_security["runAsNonRoot"], true, "{name}");
        assert_eq!(
            pod_security["runAsUser"],
            export::kubernetes::APP_UID,
            "{name}"
        );
        assert_eq!(pod_security["seccompProfile"]["type"], "RuntimeDefault");
        let containers = pod["initContainers"]
            .as_array()
            .into_iter()
            .flatten()
            .chain(pod["containers"].as_array().unwrap());
        for container in containers {
            let what = format!("{name}: {}", container["name"]);
            let security = &container["securityContext"];
            assert_eq!(security["allowPrivilegeEscalation"], false, "{what}");
            assert_eq!(security["readOnlyRootFilesystem"], true, "{what}");
            assert_eq!(
                security["capabilities"]["drop"],
                serde_json::json!(["ALL"]),
                "{what}"
            );
            for kind in ["requests", "limits"] {
                for resource in ["cpu", "memory"] {
                    assert!(
                        container["resources"][kind][resource].is_string(),
                        "{what}: {kind}.{resource}"
                    );
                }
            }
            let mounts = container["volumeMounts"].as_array().unwrap();
            assert!(
                mounts.iter().any(|m| m["mountPath"] == "/tmp"),
                "{what}: a writable /tmp"
            );
        }
        let app = &pod["containers"][0];
        assert_eq!(
            app["livenessProbe"]["tcpSocket"]["port"], plan.ports.app,
            "{name}: liveness asks only whether the app's port accepts"
        );
        assert_eq!(app["readinessProbe"]["exec"]["command"][0], "healthcheck");
        // The default flavor, XS: one vCPU and 1 GiB.
        assert_eq!(
            app["resources"]["limits"],
            serde_json::json!({"cpu": "1", "memory": "1Gi"})
        );
        assert!(
            !docs.iter().any(|d| d["kind"] == "HorizontalPodAutoscaler"),
            "{name}: a fixed number of pods is not autoscaled"
        );
        let policy = docs.iter().find(|d| d["kind"] == "NetworkPolicy").unwrap();
        assert_eq!(
            policy["spec"]["ingress"],
            serde_json::json!([{"ports": [{"port": plan.ports.public, "protocol": "TCP"}]}]),
            "{name}: only the public port is reached from outside the pod"
        );
    }
}

/// `--flavor`, `--instances`, `--min-instances`/`--max-instances` as `plan-export` takes them,
/// and refuses them.
#[test]
fn flavors_and_instances_size_and_scale_the_pods() {
    let run = |args: &[&str]| {
        let out = assert_cmd::Command::new(bin("plan-export"))
            .args(["kubernetes", "--image", "i"])
            .args(args)
            .write_stdin(testkit::EXAMPLE_PLAN)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let docs_of = |stdout: &str| parsed_by_pyyaml(stdout);
    let (code, out, err) = run(&[
        "--flavor",
        "m",
        "--min-instances",
        "2",
        "--max-instances",
        "4",
    ]);
    assert_eq!(code, Some(0), "{err}");
    let docs = docs_of(&out);
    let kind = |k: &str| {
        docs.iter()
            .find(|d| d["kind"] == k)
            .unwrap_or_else(|| panic!("no {k}"))
    };
    let app = &kind("Deployment")["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        app["resources"]["limits"],
        serde_json::json!({"cpu": "4", "memory": "4Gi"})
    );
    assert_eq!(
        app["resources"]["requests"],
        serde_json::json!({"cpu": "4", "memory": "4Gi"})
    );
    assert_eq!(kind("Deployment")["spec"]["replicas"], 2);
    let hpa = kind("HorizontalPodAutoscaler");
    assert_eq!(hpa["apiVersion"], "autoscaling/v2");
    assert_eq!(
        (
            hpa["spec"]["minReplicas"].as_u64(),
            hpa["spec"]["maxReplicas"].as_u64()
        ),
        (Some(2), Some(4))
    );
    assert_eq!(hpa["spec"]["metrics"][0]["resource"]["name"], "cpu");
    assert_eq!(kind("PodDisruptionBudget")["spec"]["minAvailable"], 1);

    let (code, out, err) = run(&["--instances", "3"]);
    assert_eq!(code, Some(0), "{err}");
    let docs = docs_of(&out);
    assert_eq!(
        docs.iter().find(|d| d["kind"] == "Deployment").unwrap()["spec"]["replicas"],
        3
    );
    assert!(!docs
        .iter()
        .any(|d| d["kind"] == "HorizontalPodAutoscaler" || d["kind"] == "PodDisruptionBudget"));

    let refused = [
        (&["--flavor", "huge"][..], "error: --flavor `huge` is not one of the platform's flavors (pico, nano, XS, S, M, L, XL, 2XL, 3XL)\n"),
        (&["--min-instances", "5", "--max-instances", "2"], "error: --min-instances 5 is more than --max-instances 2\n"),
        (&["--instances", "0"], "error: --instances 0: an application runs from 1 to 40 instances\n"),
        (&["--max-instances", "41"], "error: --max-instances 41: an application runs from 1 to 40 instances\n"),
    ];
    for (args, expected) in refused {
        let (code, out, err) = run(args);
        assert_eq!(
            (code, out.as_str(), err.as_str()),
            (Some(2), "", expected),
            "{args:?}"
        );
    }
    let (code, _, err) = run(&["--instances", "2", "--max-instances", "3"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("cannot be used with"), "{err}");
}

/// The Containerfiles as `plan-export containerfile` renders them (checkov checks these
/// files, `tests/tests/checkov.rs`): uv mode with Varnish and a build hook, legacy mode on
/// uWSGI and on gunicorn.
#[test]
fn golden_containerfiles() {
    let cases: [Case; 3] = [
        ("uv", "hello", true, &[("CC_HEALTH_CHECK_PATH", "/health")]),
        (
            "legacy_uwsgi",
            "legacy-flask-uwsgi",
            false,
            &[("CC_PYTHON_MODULE", "wsgi:app")],
        ),
        (
            "legacy_gunicorn",
            "legacy-django-gunicorn",
            true,
            &[
                ("CC_PYTHON_BACKEND", "gunicorn"),
                ("CC_PYTHON_MODULE", "mysite.wsgi:application"),
            ],
        ),
    ];
    for (name, example, vcl, vars) in cases {
        let plan = plan_of(example, vcl, vars);
        let mut env = Env::default();
        env.set("CC_PRE_BUILD_HOOK", "echo before");
        let text = export::containerfile::render(&plan, export::containerfile::DEFAULT_BASE, &env);
        let golden = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(format!("tests/golden/{name}.Containerfile"));
        if std::env::var_os("UVDEPLOY_UPDATE_GOLDEN").is_some() {
            std::fs::write(&golden, &text).unwrap();
        }
        assert_eq!(
            text,
            std::fs::read_to_string(&golden).unwrap_or_default(),
            "{name}: run `UVDEPLOY_UPDATE_GOLDEN=1 cargo test -p export` and review the diff"
        );
        // The image runs as its own user, checked by the project's health check (uWSGI,
        // which speaks no HTTP, by its port), and the app's files are not that user's.
        let user = format!("USER {0}:{0}\n", export::kubernetes::APP_UID);
        let at = |needle: &str| {
            text.find(needle)
                .unwrap_or_else(|| panic!("{name}: no `{needle}`:\n{text}"))
        };
        assert!(
            at("COPY . /app\n") < at(&user),
            "{name}: the app copied as root"
        );
        assert!(at(&user) < at("CMD ["), "{name}");
        assert!(
            !text.contains("chown"),
            "{name}: the app's files stay root's"
        );
        let healthcheck = &text[at("HEALTHCHECK ")..];
        let healthcheck = healthcheck.lines().next().unwrap();
        if name == "legacy_uwsgi" {
            assert!(
                healthcheck.contains("socket.create_connection(('127.0.0.1', 9000)"),
                "{healthcheck}"
            );
        } else {
            assert!(
                healthcheck.contains(r#"CMD ["healthcheck","--port","9000""#),
                "{healthcheck}"
            );
        }
        if name == "uv" {
            assert!(
                healthcheck.contains(r#""--path","/health""#),
                "{healthcheck}"
            );
        }
    }
}

/// Each cron of `clevercloud/cron.json` is a CronJob on the app's image, in UTC, its comment
/// saying how it differs from the platform (once per schedule, not once per instance); the
/// schemas accept it.
#[test]
fn crons_are_cronjobs_in_utc_said_to_run_once_per_schedule() {
    let plan = plan_with(
        "hello",
        |app| {
            std::fs::create_dir_all(app.join("clevercloud")).unwrap();
            std::fs::write(
                app.join("clevercloud/cron.json"),
                r#"["*/5 * * * * $ROOT/cron/tick.sh"]"#,
            )
            .unwrap();
        },
        &[],
    );
    let manifests = manifests(&plan, &options()).unwrap();
    let job = manifests
        .documents
        .iter()
        .find(|d| d["kind"] == "CronJob")
        .expect("a CronJob");
    assert_eq!(job["metadata"]["name"], "hello-cron-0");
    assert_eq!(job["spec"]["schedule"], "*/5 * * * *");
    assert_eq!(job["spec"]["timeZone"], "Etc/UTC");
    let container = &job["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        container["command"],
        serde_json::json!(["/bin/sh", "-c", "/app/cron/tick.sh"])
    );
    assert_eq!(container["securityContext"]["runAsNonRoot"], true);
    let yaml = export::yaml::noted(&manifests.documents, &manifests.notes);
    assert!(
        yaml.contains(
            "# A CronJob runs once per schedule; the platform runs each cron on every instance."
        ),
        "{yaml}"
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("crons.yaml");
    std::fs::write(&file, &yaml).unwrap();
    for version in ["1.29.0", "1.37.0"] {
        let out = Command::new("kubernetes-validate")
            .args(["--strict", "--quiet", "-k", version])
            .arg(&file)
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{version}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
}

/// An add-on's variables (from `clever env`) are all taken from the Secret, the host as the
/// password: never a value in the manifests.
#[test]
fn addon_variables_come_only_from_the_secret() {
    let plan = plan_of("hello", false, &[]);
    let mut options = options();
    for (key, value) in [
        ("POSTGRESQL_ADDON_HOST", "db.internal.example"),
        (
            "POSTGRESQL_ADDON_URI",
            "postgresql://u:pg-Pass@db.internal.example:5432/db",
        ),
        ("REDIS_URL", "redis://:r-Pass@cache.example:6379"),
    ] {
        options.env.set(key, value);
    }
    let manifests = manifests(&plan, &options).unwrap();
    let yaml = export::yaml::documents(&manifests.documents);
    for hidden in ["db.internal.example", "pg-Pass", "r-Pass", "cache.example"] {
        assert!(!yaml.contains(hidden), "{hidden} in the manifests");
    }
    for variable in ["POSTGRESQL_ADDON_HOST", "POSTGRESQL_ADDON_URI", "REDIS_URL"] {
        assert!(
            manifests.secrets.iter().any(|s| s == variable),
            "{variable}"
        );
        assert!(
            yaml.contains(&format!("key: {variable}")),
            "{variable}:\n{yaml}"
        );
    }
}
