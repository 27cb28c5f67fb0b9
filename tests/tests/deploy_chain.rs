//! `scripts/deploy` end to end, the request flow: the app alone on the public port, or behind
//! Varnish, the Otoroshi challenge, a custom proxy, block and Redirection.io, in the order of
//! CC_REQUEST_FLOW. The real pipeline (detect | uvbuild | flowctl, launcher, healthcheck) on
//! copies of the example apps, each test on its own ports.

mod harness;

use harness::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;
use testkit::{copy_example, custom_proxy_command, every_byte, http_get, root};

/// Every file of the app (but `.venv`, which uv owns) and its content.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    every_byte(dir, &[".venv"])
}

#[test]
fn no_middleware_the_app_answers_on_the_public_port_and_term_stops_everything() {
    let env_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        env_file.path(),
        "CC_PYTHON_UV_RUN_COMMAND=\"uv run python app.py\"\nCC_HEALTH_CHECK_PATH=/health\n",
    )
    .unwrap();
    let before;
    let mut deployment = {
        let setup = Setup {
            vars: vec![],
            ..Setup::new("hello")
        }
        .args(&["--env-file", env_file.path().to_str().unwrap()]);
        let (tmp_probe, probe) = copy_example("hello");
        before = snapshot(&probe);
        drop(tmp_probe);
        setup.start()
    };
    deployment.deployed();
    let output = deployment.output();
    assert!(
        output.contains("Response from GET /health is 200"),
        "{output}"
    );
    assert!(
        output.contains(&format!(
            "flowctl: chain: :{} app (uv run python app.py)",
            deployment.public
        )),
        "{output}"
    );
    assert_eq!(
        http_get(deployment.public, "/", &[]).unwrap().body,
        "Hello from uv!\n"
    );

    assert!(deployment.stop().success());
    deployment.nothing_left();
    assert!(
        http_get(deployment.public, "/", &[]).is_err(),
        "the port is closed"
    );
    let after: BTreeMap<PathBuf, Vec<u8>> = snapshot(&deployment.app_dir)
        .into_iter()
        .map(|(p, c)| {
            (
                p.strip_prefix(&deployment.app_dir).unwrap().to_path_buf(),
                c,
            )
        })
        .collect();
    let before: BTreeMap<PathBuf, Vec<u8>> = before
        .into_iter()
        .map(|(p, c)| (p.iter().skip_while(|c| *c != "hello").skip(1).collect(), c))
        .collect();
    assert_eq!(
        before, after,
        "the app directory is byte-identical, but for .venv"
    );
}

#[test]
fn varnish_caches_in_front_of_the_app() {
    let deployment = Setup::new("hello").start_with(with_vcl);
    deployment.deployed();
    assert!(deployment.output().contains(&format!(
        ":{} varnish → :{} app",
        deployment.public, deployment.app
    )));
    let first = http_get(deployment.public, "/cached", &[]).unwrap();
    assert!(first.body.starts_with("cached body"), "{first:?}");
    assert_eq!(first.header("X-Cache"), Some("MISS"));
    let second = http_get(deployment.public, "/cached", &[]).unwrap();
    assert_eq!(second.header("X-Cache"), Some("HIT"));
    assert_eq!(second.body, first.body);
}

#[test]
fn otoroshi_custom_and_varnish_in_the_order_of_cc_request_flow() {
    let deployment = Setup::new("hello")
        .var("OTOROSHI_CHALLENGE_SECRET", SECRET)
        .var("CC_REQUEST_FLOW", "otoroshi-challenge,custom,varnish")
        .var("CC_REQUEST_FLOW_CUSTOM", custom_proxy_command())
        .ports(3)
        .start_with(with_vcl);
    deployment.deployed();
    let p = deployment.public;
    assert!(deployment.output().contains(&format!(
        ":{p} otoroshi-challenge → :{} custom → :{} varnish → :{} app",
        p + 1,
        p + 2,
        deployment.app
    )));
    let token = token();
    let ok = http_get(p, "/", &[("Otoroshi-State", &token)]).unwrap();
    assert_eq!((ok.status, ok.body.as_str()), (200, "Hello from uv!\n"));
    assert_eq!(
        ok.header("X-Custom-Proxy"),
        Some((p + 1).to_string().as_str())
    );
    assert!(ok.header("Otoroshi-State-Resp").is_some());
    let refused = http_get(p, "/", &[]).unwrap();
    assert_eq!(refused.status, 401);
    assert!(refused.body.contains("Missing Otoroshi-State header"));
}

#[test]
fn block_answers_200_and_the_app_is_not_reached_through_it() {
    let deployment = Setup::new("hello").var("CC_REQUEST_FLOW", "block").start();
    deployment.deployed();
    for path in ["/", "/count", "/anything"] {
        let r = http_get(deployment.public, path, &[]).unwrap();
        assert_eq!((r.status, r.body.as_str()), (200, "OK"), "{path}");
    }
    assert_eq!(
        http_get(deployment.app, "/count", &[]).unwrap().body.trim(),
        "1",
        "only this request reached the app"
    );
}

#[test]
fn redirectionio_runs_from_its_rendered_configuration_with_the_key_from_the_environment() {
    // The agent is not packaged here: a stand-in reads the agent.yml flowctl rendered.
    let key = "rio-project-key-never-written";
    let mut setup = Setup::new("hello")
        .var("CC_REDIRECTIONIO_PROJECT_KEY", key)
        .var("CC_REDIRECTIONIO_INSTANCE_NAME", "storefront")
        .var("CC_REQUEST_FLOW", "redirectionio,varnish")
        .ports(2);
    setup.path_first.push(root().join("tests/fixtures"));
    let deployment = setup.start_with(with_vcl);
    deployment.deployed();
    let p = deployment.public;
    assert!(deployment.output().contains(&format!(
        ":{p} redirectionio → :{} varnish → :{} app",
        p + 1,
        deployment.app
    )));
    let response = http_get(p, "/cached", &[]).unwrap();
    assert_eq!(response.status, 200);
    assert!(response.body.starts_with("cached body"));
    assert_eq!(
        response.header("X-Forwarded-By"),
        Some("redirectionio-proxy/storefront")
    );
    assert_eq!(
        response.header("X-Cache"),
        Some("MISS"),
        "then through varnish"
    );
    let config = std::fs::read_to_string(
        deployment
            .tmp
            .path()
            .join(format!("state/redirectionio-{p}/agent.yml")),
    )
    .unwrap();
    assert!(!config.contains(key));
}

#[test]
fn a_missing_redirectionio_agent_fails_the_deployment_naming_it() {
    let mut deployment = Setup::new("hello")
        .var("CC_REDIRECTIONIO_PROJECT_KEY", "k-e-y-value")
        .start();
    let status = deployment.exit(Duration::from_secs(60));
    assert_eq!(status.code(), Some(1));
    let output = deployment.output();
    assert!(
        output.contains("command not found: `redirectionio-agent`"),
        "{output}"
    );
    assert!(
        output.contains("the Redirection.io agent is not installed"),
        "{output}"
    );
    assert!(
        output.contains("deploy: redirectionio exited with status 127"),
        "{output}"
    );
    deployment.nothing_left();
}
