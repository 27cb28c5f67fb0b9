//! `plan-export kubernetes`: the plan as what a Kubernetes cluster runs. One Deployment whose pod
//! holds the whole chain, as the platform runs it in one instance: the app in `containers`,
//! every hop as a native sidecar (an `initContainers` entry with `restartPolicy: Always`,
//! Kubernetes 1.29+) started before it, in chain order; the hops' rendered files in a
//! ConfigMap; one Service on the public port. Secrets come from a Secret the user creates,
//! by `secretKeyRef`: no value ever lands in the manifests.
//!
//! Legacy mode is the same pod: Nginx is the last sidecar, serving the static files from the
//! image; the app server runs in `containers`, the Celery workers beside it, and
//! `CC_PYTHON_MANAGE_TASKS` in an init container that must succeed before the chain starts.
//!
//! The hops are flowctl's, rendered by its own renderers for the pod's layout
//! ([`pod_layout`]): nothing flowctl rendered for a machine is rewritten here.

use crate::scaling::{self, Flavor, Instances};
use crate::ExportError;
use flowctl::{Layout, Programs};
use plan::cron::Cron;
use plan::secret::{holds_a_secret, is_secret_variable};
use plan::{Env, EnvValue, Hop, HopKind, Mode, Plan, PortSettings, Run};
use process::command::shell_argv;
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet};

/// Where the image holds the app (the Containerfile copies it there).
pub const APP_DIR: &str = "/app";
/// Where the hops' rendered files are mounted, read-only, from the ConfigMap.
pub const CONFIG_DIR: &str = "/etc/uvdeploy";
/// A writable directory for what the hops keep at run time (varnishd's working directory).
pub const STATE_DIR: &str = "/var/lib/uvdeploy";
/// A writable directory for each process's temporary files (the root filesystem is
/// read-only).
pub const TMP_DIR: &str = "/tmp";
/// The image's user (and group), which every container runs as: not root, and a UID above
/// those a host's users have.
pub const APP_UID: u32 = 10001;

pub struct Options {
    pub image: String,
    /// A valid DNS label.
    pub name: String,
    /// The app's size (its containers' requests and limits).
    pub flavor: Flavor,
    /// How many pods, fixed or between bounds (then autoscaled on CPU).
    pub instances: Instances,
    /// The pod's ports: the platform's (8080, 9000) unless asked otherwise, whatever ports
    /// the plan was made on (a rehearsal shifted with `--public-port` on a busy machine).
    pub ports: PortSettings,
    /// The application's variables (from `--env-file`, `--env`): plain `env`, or from the
    /// Secret when they are secrets.
    pub env: Env,
}

/// The manifests, and the secret variables the user must put in `NAME-secrets`.
pub struct Manifests {
    pub documents: Vec<Value>,
    pub secrets: Vec<String>,
    /// Comment lines for some documents, by index.
    pub notes: BTreeMap<usize, Vec<String>>,
}

/// A name as Kubernetes takes it: lowercase letters, digits and `-`, at most 63 characters,
/// starting and ending with a letter or digit.
pub fn dns_label(name: &str) -> Option<String> {
    let mut label: String = name
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    label.truncate(63);
    let label = label.trim_matches('-').to_string();
    (!label.is_empty()).then_some(label)
}

/// The name objects get by default: the application's own directory (where `checkout`
/// copied it from, `APP_FOLDER` included), not the copy's (`copy`).
pub fn app_name(plan: &Plan) -> String {
    let original = match &plan.source {
        Some(source) => plan
            .app_dir
            .strip_prefix(&source.copy)
            .map(|inside| source.origin.join(inside))
            .unwrap_or_else(|_| plan.app_dir.clone()),
        None => plan.app_dir.clone(),
    };
    original
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "app".into())
}

/// The plan laid out on `ports`: each port of the chain it was made on (the public one, each
/// hop's, the app's) replaced by the one it has on `ports`, in the plan's numbers and in the
/// words and files that hold them (`--listen 46400`, a VCL's `.port = "46401"`, Nginx's
/// `listen`). Only whole numbers are replaced, never digits inside a word.
pub fn on_ports(plan: &Plan, ports: PortSettings) -> Result<Plan, ExportError> {
    let wanted = ports.ports_for(&plan.request_flow, plan.mode);
    let chain = wanted.chain(&plan.request_flow, plan.mode)?;
    let mut map = BTreeMap::new();
    map.insert(plan.ports.public, wanted.public);
    map.insert(plan.ports.app, wanted.app);
    for (hop, laid) in plan.hops.iter().flatten().zip(&chain) {
        map.insert(hop.listen, laid.listen);
        if let Some(forward) = hop.forward {
            map.insert(forward, laid.forward);
        }
    }
    if map.iter().all(|(from, to)| from == to) {
        return Ok(plan.clone());
    }
    let mut value = serde_json::to_value(plan).expect("a plan serializes");
    for field in ["app_dir", "state_dir", "run", "hops", "legacy"] {
        if let Some(part) = value.get_mut(field) {
            renumber(part, &map);
        }
    }
    let mut moved: Plan = serde_json::from_value(value).expect("the same plan, renumbered");
    moved.ports = wanted;
    for (hop, laid) in moved.hops.iter_mut().flatten().zip(&chain) {
        hop.listen = laid.listen;
        hop.forward = hop.forward.map(|_| laid.forward);
    }
    Ok(moved)
}

/// Every string in `value` with its whole numbers found in `map` replaced.
fn renumber(value: &mut Value, map: &BTreeMap<u16, u16>) {
    match value {
        Value::String(text) => *text = renumber_text(text, map),
        Value::Array(items) => items.iter_mut().for_each(|v| renumber(v, map)),
        Value::Object(fields) => fields.values_mut().for_each(|v| renumber(v, map)),
        _ => {}
    }
}

fn renumber_text(text: &str, map: &BTreeMap<u16, u16>) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < bytes.len() {
        if !bytes[i].is_ascii_digit() {
            let next = text[i..].chars().next().map_or(1, char::len_utf8);
            out.push_str(&text[i..i + next]);
            i += next;
            continue;
        }
        let end = bytes[i..]
            .iter()
            .position(|b| !b.is_ascii_digit())
            .map_or(bytes.len(), |n| i + n);
        let whole = (i == 0 || !bytes[i - 1].is_ascii_alphanumeric())
            && bytes.get(end).is_none_or(|b| !b.is_ascii_alphanumeric());
        let number = &text[i..end];
        match number.parse::<u16>().ok().and_then(|n| map.get(&n)) {
            Some(new) if whole && !number.starts_with('0') => out.push_str(&new.to_string()),
            _ => out.push_str(number),
        }
        i = end;
    }
    out
}

/// The pod's layout: the app where the image holds it, what the hops keep in the `state`
/// emptyDir, their rendered files in the ConfigMap mounted read-only, and not root (Nginx's
/// workers read the image's files as Nginx's default user).
pub fn pod_layout() -> Layout {
    Layout {
        app_dir: APP_DIR.into(),
        state_dir: STATE_DIR.into(),
        config_dir: Some(CONFIG_DIR.into()),
        as_root: false,
    }
}

/// The plan's chain as the pod runs it: rendered again by flowctl's renderers, for the pod's
/// layout, with Nginx and our own tools from the image's PATH. The VCLs are the plan's (a
/// VCL names no path), and so is varnishd's path.
pub fn pod_hops(plan: &Plan) -> Result<Vec<Hop>, ExportError> {
    let planned = plan.hops.as_ref().ok_or(ExportError::NoHops)?;
    let vcls: Vec<String> = planned
        .iter()
        .filter(|hop| hop.kind() == Some(HopKind::Varnish))
        .filter_map(|hop| hop.files.first())
        .map(|file| file.content.clone())
        .collect();
    let varnishd = planned
        .iter()
        .find(|hop| hop.kind().is_some_and(HopKind::runs_varnishd))
        .and_then(|hop| hop.argv.first())
        .map_or_else(|| "varnishd".to_string(), Clone::clone);
    let programs = Programs {
        varnishd,
        nginx: "nginx".into(),
        otoroshi_challenge: "otoroshi-challenge".into(),
    };
    Ok(flowctl::hops(plan, &pod_layout(), &programs, &vcls)?)
}

/// What every part of the manifests shares: the plan (on the pod's ports), the options, the
/// objects' labels.
struct Pod<'a> {
    plan: &'a Plan,
    options: &'a Options,
    labels: Value,
}

impl<'a> Pod<'a> {
    fn new(plan: &'a Plan, options: &'a Options) -> Pod<'a> {
        let labels = json!({
            "app.kubernetes.io/name": options.name,
            "app.kubernetes.io/managed-by": "uvdeploy",
        });
        Pod {
            plan,
            options,
            labels,
        }
    }

    fn name(&self) -> &str {
        &self.options.name
    }

    /// The container's `variable` from the Secret.
    fn secret_ref(&self, variable: &str) -> Value {
        json!({"name": variable, "valueFrom": {"secretKeyRef": {"name": format!("{}-secrets", self.name()), "key": variable}}})
    }

    /// A word of the plan's with the app's directory where the image holds it.
    fn in_image(&self, word: &str) -> String {
        word.replace(&self.plan.app_dir.display().to_string(), APP_DIR)
    }

    /// A container of the app's image, in the app's directory, with `env`: not hardened
    /// yet, so that the caller adds its own fields first.
    fn container(&self, name: &str, command: Value, env: &[Value]) -> Value {
        json!({
            "name": name,
            "image": self.options.image,
            "workingDir": APP_DIR,
            "command": command,
            "env": env,
        })
    }
}

/// The plan's deployment as Kubernetes manifests, on the pod's ports, and the secrets they
/// refer to.
pub fn manifests(plan: &Plan, options: &Options) -> Result<Manifests, ExportError> {
    let plan = &on_ports(plan, options.ports)?;
    let hops = pod_hops(plan)?;
    let run = plan.run.as_ref().ok_or(ExportError::NoRunCommand)?;
    let pod = Pod::new(plan, options);
    // Every secret the manifests refer to, and those of them the app itself reads.
    let mut secrets = BTreeSet::new();
    let mut app_secrets = BTreeSet::new();
    let command = app_command(&pod, run, &mut app_secrets);
    let mut env = app_env(plan.ports.app, &options.env, &mut app_secrets);
    let check = health_check(plan, &hops, &mut app_secrets);
    let (sidecars, config) = sidecars(&pod, &hops, &mut secrets);
    env.extend(app_secrets.iter().map(|secret| pod.secret_ref(secret)));
    secrets.extend(app_secrets);
    let mut containers = vec![app_container(&pod, command, &env, &check)];
    containers.extend(workers(&pod, &env));
    let init = [manage_tasks(&pod, &env), sidecars].concat();
    let spec = pod_spec(&pod, init, containers, !config.is_empty());
    let (documents, notes) = documents(&pod, &spec, config, &env);
    Ok(Manifests {
        documents,
        secrets: secrets.into_iter().collect(),
        notes,
    })
}

/// The documents, in order: the ConfigMap of the hops' files (when they have any), the
/// Deployment, its Service and NetworkPolicy, its autoscaler and disruption budget when it
/// scales, and a CronJob for each cron (noted, by its index).
fn documents(
    pod: &Pod,
    spec: &Map<String, Value>,
    config: Map<String, Value>,
    env: &[Value],
) -> (Vec<Value>, BTreeMap<usize, Vec<String>>) {
    let mut documents = Vec::new();
    if !config.is_empty() {
        documents.push(config_map(pod, config));
    }
    documents.push(deployment(pod, spec));
    documents.push(service(pod));
    documents.push(network_policy(pod));
    let instances = pod.options.instances;
    if instances.scales() {
        documents.push(scaling::autoscaler(pod.name(), &pod.labels, instances));
        documents.push(scaling::disruption_budget(pod.name(), &pod.labels));
    }
    let mut notes = BTreeMap::new();
    for cron in &pod.plan.crons {
        notes.insert(documents.len(), cron_notes(cron));
        documents.push(cron_job(pod, cron, spec, env));
    }
    (documents, notes)
}

/// The app's command as launcher would run it, in the image, its secrets referred to.
fn app_command(pod: &Pod, run: &Run, app_secrets: &mut BTreeSet<String>) -> Vec<String> {
    let words = match &run.argv {
        Some(argv) => argv.clone(),
        None => shell_argv(&run.command),
    };
    let words: Vec<String> = words.iter().map(|w| pod.in_image(w)).collect();
    command_references(&words, app_secrets)
}

/// The app's plain variables, PORT first; the secrets among them are collected instead.
fn app_env(port: u16, variables: &Env, app_secrets: &mut BTreeSet<String>) -> Vec<Value> {
    let mut env = vec![json!({"name": "PORT", "value": port.to_string()})];
    for (key, value) in variables.iter().filter(|(k, _)| *k != "PORT") {
        // A secret by its name or its value (a URL with a password), and any variable that
        // holds a secret's value (a token written in CC_PYTHON_UV_RUN_COMMAND, a hook,
        // CC_HEALTH_CHECK_PATH): from the Secret, never a value in the manifests.
        // An add-on's variables come from the Secret as a whole, as the platform links them.
        if is_secret_variable(key, value)
            || holds_a_secret(value, variables)
            || plan::secret::is_addon_variable(key)
        {
            app_secrets.insert(key.to_string());
        } else {
            env.push(json!({"name": key, "value": value}));
        }
    }
    env
}

/// The health check as the probes run it: on the app's own port, but in legacy mode on
/// Nginx's (uWSGI speaks its own protocol there). The secrets its paths name are the app's.
fn health_check(plan: &Plan, hops: &[Hop], app_secrets: &mut BTreeSet<String>) -> Vec<String> {
    let probed = match plan.mode {
        Mode::Uv => plan.ports.app,
        Mode::Legacy => hops
            .iter()
            .find(|h| h.kind() == Some(HopKind::Nginx))
            .map_or(plan.ports.public, |h| h.listen),
    };
    if !plan.health_check.is_default() {
        for path in &plan.health_check.paths {
            // Kept as `${{NAME}}`: healthcheck puts the value back from the container's env.
            secret_references(path, app_secrets);
        }
    }
    health_check_command(plan, probed)
}

/// A probe that runs `command` every `period` seconds.
fn probe(command: &[String], period: u32, failures: u32) -> Value {
    json!({
        "exec": {"command": command},
        "periodSeconds": period,
        "timeoutSeconds": 10,
        "failureThreshold": failures,
    })
}

/// The hops as native sidecars, in chain order, and the ConfigMap's files.
fn sidecars(
    pod: &Pod,
    hops: &[Hop],
    secrets: &mut BTreeSet<String>,
) -> (Vec<Value>, Map<String, Value>) {
    let mut config = Map::new();
    let mut sidecars = Vec::new();
    for hop in hops {
        let (sidecar, files) = sidecar(pod, hop, secrets);
        sidecars.push(sidecar);
        config.extend(
            files
                .into_iter()
                .map(|(key, text)| (key, Value::String(text))),
        );
    }
    (sidecars, config)
}

/// A hop as a native sidecar: its secrets from the Secret, its rendered files from the
/// ConfigMap (returned, by key), its state in the emptyDir.
fn sidecar(pod: &Pod, hop: &Hop, secrets: &mut BTreeSet<String>) -> (Value, Vec<(String, String)>) {
    let (argv, env) = hop_command(pod, hop, secrets);
    let mut sidecar = json!({
        "name": hop.name,
        "image": pod.options.image,
        "restartPolicy": "Always",
        "command": argv,
        "env": env,
        "ports": [{"containerPort": hop.listen}],
        "startupProbe": {"tcpSocket": {"port": hop.listen}, "periodSeconds": 1, "failureThreshold": 60},
        "livenessProbe": {"tcpSocket": {"port": hop.listen}, "periodSeconds": 10, "failureThreshold": 3},
        "volumeMounts": [{"name": "state", "mountPath": STATE_DIR}],
    });
    harden(&mut sidecar, hop_resources(&argv));
    let files = config_files(hop);
    if !files.is_empty() {
        sidecar["volumeMounts"]
            .as_array_mut()
            .expect("an array")
            .push(json!({"name": "config", "mountPath": CONFIG_DIR, "readOnly": true}));
    }
    (sidecar, files)
}

/// The hop's command and environment: its variables, and the secrets it names, from the
/// Secret (collected in `secrets`).
fn hop_command(pod: &Pod, hop: &Hop, secrets: &mut BTreeSet<String>) -> (Vec<String>, Vec<Value>) {
    let mut env = vec![json!({"name": "PORT", "value": hop.listen.to_string()})];
    for (key, value) in &hop.env {
        match value {
            EnvValue::Literal(v) => env.push(json!({"name": key, "value": v})),
            EnvValue::FromEnv { from_env } => {
                secrets.insert(from_env.clone());
                env.push(pod.secret_ref(from_env));
            }
        }
    }
    // The secrets the hop's command refers to come into its environment from the Secret.
    let mut referred = BTreeSet::new();
    let mut argv = command_references(&hop.argv, &mut referred);
    for variable in &referred {
        if !hop.env.contains_key(variable) {
            env.push(pod.secret_ref(variable));
        }
    }
    secrets.extend(referred);
    if hop.kind() == Some(HopKind::Nginx) {
        argv = nginx_command(hop, &argv);
    }
    (argv, env)
}

/// The hop's rendered files as the ConfigMap holds them: each by its name in the
/// configuration directory. (A file written from the environment at start, Nginx's
/// htpasswd, is not one of them.)
fn config_files(hop: &Hop) -> Vec<(String, String)> {
    hop.files
        .iter()
        .filter(|file| file.htpasswd_from_env.is_empty())
        .map(|file| {
            let key = file.path.strip_prefix(CONFIG_DIR).unwrap_or(&file.path);
            (key.display().to_string(), file.content.clone())
        })
        .collect()
}

/// The app's container: its command, its environment, probed by the health check.
fn app_container(pod: &Pod, command: Vec<String>, env: &[Value], check: &[String]) -> Value {
    let port = pod.plan.ports.app;
    let mut app = pod.container("app", json!(command), env);
    let fields = app.as_object_mut().expect("a container is an object");
    fields.insert("ports".into(), json!([{"containerPort": port}]));
    fields.insert("startupProbe".into(), probe(check, 2, 60));
    fields.insert("readinessProbe".into(), probe(check, 10, 3));
    // The platform restarts a dead instance, not a slow one: only whether the port still
    // accepts.
    fields.insert(
        "livenessProbe".into(),
        json!({"tcpSocket": {"port": port}, "periodSeconds": 10, "failureThreshold": 3}),
    );
    harden(&mut app, pod.options.flavor.resources());
    app
}

/// The workers (`CC_WORKER_COMMAND...`, Celery) beside the app, in its image and
/// environment; a Celery worker probed by a ping.
fn workers(pod: &Pod, env: &[Value]) -> Vec<Value> {
    let mut containers = Vec::new();
    for worker in &pod.plan.workers {
        let words = worker
            .argv
            .clone()
            .unwrap_or_else(|| shell_argv(&worker.command));
        let argv: Vec<String> = words.iter().map(|w| pod.in_image(w)).collect();
        let ping = worker_ping(&argv);
        let mut container = pod.container(&worker.name, json!(beat_schedule_in_tmp(argv)), env);
        if let Some(ping) = ping {
            let probe = json!({"exec": {"command": ping}, "periodSeconds": 30, "timeoutSeconds": 20, "failureThreshold": 3});
            container["livenessProbe"] = probe.clone();
            container["readinessProbe"] = probe;
        }
        harden(&mut container, pod.options.flavor.resources());
        containers.push(container);
    }
    containers
}

/// The manage.py tasks, run to completion before anything else starts, as on the platform
/// before the server; a failure keeps the pod from starting. One init container each, in
/// order, running the task's words as `launcher` does: no shell.
fn manage_tasks(pod: &Pod, env: &[Value]) -> Vec<Value> {
    let tasks = pod
        .plan
        .legacy
        .as_ref()
        .map(|l| l.manage_tasks.as_slice())
        .unwrap_or_default();
    tasks
        .iter()
        .enumerate()
        .map(|(i, task)| {
            let argv = plan::legacy::manage_task_argv(task);
            let mut init = pod.container(&format!("manage-task-{}", i + 1), json!(argv), env);
            harden(&mut init, pod.options.flavor.resources());
            init
        })
        .collect()
}

/// The pod: its init containers and sidecars, its containers, the emptyDirs and the
/// ConfigMap's volume.
fn pod_spec(
    pod: &Pod,
    init: Vec<Value>,
    containers: Vec<Value>,
    config: bool,
) -> Map<String, Value> {
    let mut volumes = vec![
        json!({"name": "state", "emptyDir": {}}),
        json!({"name": "tmp", "emptyDir": {}}),
    ];
    if config {
        volumes.push(
            json!({"name": "config", "configMap": {"name": format!("{}-config", pod.name())}}),
        );
    }
    let mut spec = Map::new();
    // Nothing here talks to the Kubernetes API.
    spec.insert("automountServiceAccountToken".into(), json!(false));
    spec.insert(
        "securityContext".into(),
        json!({
            "runAsNonRoot": true,
            "runAsUser": APP_UID,
            "runAsGroup": APP_UID,
            "fsGroup": APP_UID,
            "seccompProfile": {"type": "RuntimeDefault"},
        }),
    );
    if !init.is_empty() {
        spec.insert("initContainers".into(), Value::Array(init));
    }
    spec.insert("containers".into(), Value::Array(containers));
    spec.insert("volumes".into(), Value::Array(volumes));
    spec
}

/// The hops' rendered files.
fn config_map(pod: &Pod, config: Map<String, Value>) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": format!("{}-config", pod.name()), "labels": pod.labels},
        "data": config,
    })
}

fn deployment(pod: &Pod, spec: &Map<String, Value>) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": pod.name(), "labels": pod.labels},
        "spec": {
            "replicas": pod.options.instances.min,
            // A new image replaces the pods as a redeploy does: no ready pod is removed
            // before its replacement is ready (the health check).
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "selector": {"matchLabels": pod.labels},
            "template": {"metadata": {"labels": pod.labels}, "spec": spec},
        },
    })
}

fn service(pod: &Pod) -> Value {
    let public = pod.plan.ports.public;
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": pod.name(), "labels": pod.labels},
        "spec": {
            "selector": pod.labels,
            "ports": [{"name": "http", "port": public, "targetPort": public, "protocol": "TCP"}],
        },
    })
}

/// Only the public port is reached from outside the pod: the hops' and the app's ports are
/// the chain's own (the app behind Otoroshi's challenge is not to be reached around it).
fn network_policy(pod: &Pod) -> Value {
    json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": pod.name(), "labels": pod.labels},
        "spec": {
            "podSelector": {"matchLabels": pod.labels},
            "policyTypes": ["Ingress"],
            "ingress": [{"ports": [{"port": pod.plan.ports.public, "protocol": "TCP"}]}],
        },
    })
}

/// What a reader of a cron's CronJob should know.
fn cron_notes(cron: &Cron) -> Vec<String> {
    vec![
        format!(
            "{}: `{}` from clevercloud/cron.json.",
            cron.name, cron.entry
        ),
        "A CronJob runs once per schedule; the platform runs each cron on every instance.".into(),
        "Its environment is the app's; on the platform only a `#!/bin/bash -l` script sees it."
            .into(),
    ]
}

/// A cron as a CronJob on the same image, with the app's directory and environment.
fn cron_job(pod: &Pod, cron: &Cron, spec: &Map<String, Value>, env: &[Value]) -> Value {
    let name = pod.name();
    let command = json!(["/bin/sh", "-c", pod.in_image(&cron.command)]);
    let mut container = pod.container(&cron.name, command, env);
    harden(&mut container, pod.options.flavor.resources());
    let mut job_pod = spec.clone();
    job_pod.remove("initContainers");
    job_pod.insert("restartPolicy".into(), json!("Never"));
    job_pod.insert("containers".into(), json!([container]));
    job_pod.insert(
        "volumes".into(),
        json!([{"name": "tmp", "emptyDir": {}}, {"name": "state", "emptyDir": {}}]),
    );
    json!({
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": format!("{name}-{}", cron.name), "labels": pod.labels},
        "spec": {
            "schedule": cron.schedule,
            // The platform's servers are in UTC.
            "timeZone": "Etc/UTC",
            "concurrencyPolicy": "Allow",
            "jobTemplate": {"spec": {"backoffLimit": 0, "template": {"metadata": {"labels": {"app.kubernetes.io/name": format!("{name}-{}", cron.name), "app.kubernetes.io/managed-by": "uvdeploy"}}, "spec": job_pod}}},
        },
    })
}

/// The project's health check on `port`: its paths (a secret in one kept as `${{NAME}}`,
/// which `healthcheck` fills from the environment), a short deadline.
pub fn health_check_command(plan: &Plan, port: u16) -> Vec<String> {
    let mut command = vec!["healthcheck".to_string(), "--port".into(), port.to_string()];
    if !plan.health_check.is_default() {
        for path in &plan.health_check.paths {
            command.extend(["--path".to_string(), path.clone()]);
        }
    }
    command.extend(["--timeout".to_string(), "5s".into()]);
    command
}

/// A container as an operator accepts it: as the image's user, never more privileged (no
/// privilege escalation, no capability), on a read-only root filesystem with an emptyDir for
/// its temporary files, with `resources`; the image pulled at each start (a tag moves).
fn harden(container: &mut Value, resources: Value) {
    let fields = container.as_object_mut().expect("a container is an object");
    fields.insert("imagePullPolicy".into(), json!("Always"));
    fields.insert("resources".into(), resources);
    fields.insert(
        "securityContext".into(),
        json!({
            "runAsNonRoot": true,
            "allowPrivilegeEscalation": false,
            "readOnlyRootFilesystem": true,
            "capabilities": {"drop": ["ALL"]},
        }),
    );
    let tmp = json!({"name": "tmp", "mountPath": TMP_DIR});
    match fields.get_mut("volumeMounts").and_then(Value::as_array_mut) {
        Some(mounts) => mounts.push(tmp),
        None => {
            fields.insert("volumeMounts".into(), json!([tmp]));
        }
    }
}

/// A hop's small fixed size; Varnish's memory is its cache's (`-s malloc,SIZE`) and as much
/// again for itself, up to 256 MiB more.
fn hop_resources(argv: &[String]) -> Value {
    let cache = argv
        .iter()
        .find_map(|w| w.strip_prefix("malloc,"))
        .map(|size| mebibytes(size).unwrap_or(1024));
    let memory = match cache {
        Some(cache) => format!("{}Mi", cache + 256),
        None => "128Mi".into(),
    };
    json!({
        "requests": {"cpu": "50m", "memory": "64Mi"},
        "limits": {"cpu": "500m", "memory": memory},
    })
}

/// A Varnish size (`1G`, `512M`, `256m`, `1048576k`) in MiB; a bare number is bytes.
fn mebibytes(size: &str) -> Option<u64> {
    let size = size.trim();
    let digits = size
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(size.len());
    let (number, unit) = size.split_at(digits);
    let n: u64 = number.parse().ok()?;
    let mib = match unit.to_ascii_lowercase().as_str() {
        "" => n / (1024 * 1024),
        "k" => n / 1024,
        "m" => n,
        "g" => n * 1024,
        "t" => n * 1024 * 1024,
        _ => return None,
    };
    Some(mib.max(1))
}

/// A Celery worker's health check: the worker answers a ping through its broker (`celery
/// --app MODULE inspect ping` to this worker's node, `celery@HOSTNAME`).
fn worker_ping(argv: &[String]) -> Option<Vec<String>> {
    let at = argv.iter().position(|w| w == "worker")?;
    if !argv.first()?.ends_with("celery") {
        return None;
    }
    let script = format!(
        "exec {} inspect ping --destination \"celery@$HOSTNAME\"",
        shell_words::join(&argv[..at])
    );
    Some(vec!["/bin/sh".into(), "-c".into(), script])
}

/// Celery's beat keeps its schedule in a file, by default in the working directory, which is
/// the image's and read-only: in the pod, in the temporary directory.
fn beat_schedule_in_tmp(mut argv: Vec<String>) -> Vec<String> {
    let beat = argv
        .iter()
        .any(|w| w == "--beat" || w == "-B" || w == "beat");
    let given = argv
        .iter()
        .any(|w| w == "-s" || w.starts_with("--schedule") || w.starts_with("--scheduler"));
    if beat && !given {
        argv.push(format!("--schedule={TMP_DIR}/celerybeat-schedule"));
    }
    argv
}

/// Nginx's `{SHA}` of a password read on stdin, by the image's Python (legacy images have it):
/// hashed, not `{PLAIN}`, which Nginx cuts at a `:` (a password may hold one), as launcher
/// writes it on a machine.
const SHA1_BASE64: &str = "python3 -c 'import base64, hashlib, sys; sys.stdout.write(base64.b64encode(hashlib.sha1(sys.stdin.buffer.read()).digest()).decode())'";

/// The shell that writes Nginx's password file at `path` from `variables` (`login:password`
/// each, split as launcher splits them), in the pod.
fn htpasswd_script(path: &str, variables: &[String]) -> String {
    format!(
        "for v in {}; do {} printf '%s:{{SHA}}%s\\n' \"$login\" \"$(printf '%s' \"$password\" | {SHA1_BASE64})\"; done > {path}",
        variables.join(" "),
        plan::basic_auth::shell_split()
    )
}

/// Nginx's command in the pod: its directory in the emptyDir made first, and the htpasswd
/// file written from the Secret's variables (`login:password` each), split and checked by
/// the rule `launcher` follows ([`plan::basic_auth`]): a bad pair stops the container.
fn nginx_command(hop: &Hop, argv: &[String]) -> Vec<String> {
    let mut script = format!(
        "mkdir -p {}",
        flowctl::nginx::dir(&pod_layout(), hop.listen).display()
    );
    for file in hop.files.iter().filter(|f| !f.htpasswd_from_env.is_empty()) {
        script.push_str(" && ");
        script.push_str(&htpasswd_script(
            &file.path.display().to_string(),
            &file.htpasswd_from_env,
        ));
    }
    script.push_str(" && exec ");
    script.push_str(&shell_words::join(argv));
    vec!["/bin/sh".into(), "-c".into(), script]
}

/// A command with its `${{NAME}}` (a secret the plan names) made references to the
/// container's variable NAME (which comes from the Secret): in a shell's script, the shell's
/// own `"${NAME}"`, quoted where it stands, so that the value is one piece whatever it holds;
/// in a word, Kubernetes' `$(NAME)`. The names are collected.
fn command_references(argv: &[String], secrets: &mut BTreeSet<String>) -> Vec<String> {
    let shell = argv.len() == 3 && argv[0] == "/bin/sh" && argv[1] == "-c";
    argv.iter()
        .enumerate()
        .map(|(i, word)| match i {
            2 if shell => shell_references(word, secrets),
            _ => secret_references(word, secrets),
        })
        .collect()
}

fn shell_references(script: &str, secrets: &mut BTreeSet<String>) -> String {
    secrets.extend(plan::secret::references(script));
    plan::secret::as_shell_variables(script)
}

/// `${{NAME}}` (a secret the plan names) as Kubernetes expands a variable in a command,
/// `$(NAME)`; the names are collected.
fn secret_references(word: &str, secrets: &mut BTreeSet<String>) -> String {
    let rewritten = plan::secret::map_references(word, |name| {
        secrets.insert(name.to_string());
        Ok::<_, std::convert::Infallible>(format!("$({name})"))
    });
    match rewritten {
        Ok(word) => word,
        Err(never) => match never {},
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The pod writes what launcher writes on a machine: `{SHA}`, so that a password holding
    /// a `:` works (Nginx cuts a `{PLAIN}` one there).
    #[test]
    fn the_pods_password_file_is_hashed_and_takes_a_colon() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("htpasswd");
        let script = htpasswd_script(
            file.to_str().unwrap(),
            &["CC_HTTP_BASIC_AUTH".into(), "CC_HTTP_BASIC_AUTH_1".into()],
        );
        let status = std::process::Command::new("/bin/sh")
            .args(["-c", &script])
            .env("CC_HTTP_BASIC_AUTH", "admin:pa:ss")
            .env("CC_HTTP_BASIC_AUTH_1", "ops:pa:ss")
            .status()
            .unwrap();
        assert!(status.success());
        assert_eq!(
            std::fs::read_to_string(&file).unwrap(),
            "admin:{SHA}XyRLaTIb/WCdo8CuWc58gPVHl68=\nops:{SHA}XyRLaTIb/WCdo8CuWc58gPVHl68=\n"
        );
    }

    #[test]
    fn names_become_dns_labels() {
        assert_eq!(dns_label("Flask_Shop").as_deref(), Some("flask-shop"));
        assert_eq!(dns_label("my.app").as_deref(), Some("my-app"));
        assert_eq!(dns_label("--x--").as_deref(), Some("x"));
        assert_eq!(dns_label("___"), None);
        assert_eq!(dns_label(&"a".repeat(80)).map(|l| l.len()), Some(63));
    }

    #[test]
    fn only_whole_numbers_are_renumbered() {
        let map: BTreeMap<u16, u16> = [(46400, 8080), (9000, 46400)].into_iter().collect();
        assert_eq!(
            renumber_text("--listen 46400 127.0.0.1:9000 .port = \"9000\";", &map),
            "--listen 8080 127.0.0.1:46400 .port = \"46400\";"
        );
        for untouched in [
            "v46400",
            "464001",
            "/tmp/uvdeploy-a.x9000y",
            "09000",
            "é9000x",
        ] {
            assert_eq!(renumber_text(untouched, &map), untouched);
        }
    }

    #[test]
    fn varnish_sizes_in_mebibytes() {
        assert_eq!(mebibytes("1G"), Some(1024));
        assert_eq!(mebibytes("512m"), Some(512));
        assert_eq!(mebibytes("1048576k"), Some(1024));
        assert_eq!(mebibytes("2097152"), Some(2));
        assert_eq!(mebibytes("1Q"), None);
        assert_eq!(
            hop_resources(&["-s".into(), "malloc,1G".into()])["limits"]["memory"],
            "1280Mi"
        );
    }

    #[test]
    fn beat_keeps_its_schedule_in_tmp() {
        let argv = |words: &[&str]| words.iter().map(|w| w.to_string()).collect::<Vec<_>>();
        assert_eq!(
            beat_schedule_in_tmp(argv(&["celery", "--app", "t", "worker", "--beat"]))
                .last()
                .unwrap(),
            "--schedule=/tmp/celerybeat-schedule"
        );
        let worker = argv(&["celery", "--app", "t", "worker"]);
        assert_eq!(beat_schedule_in_tmp(worker.clone()), worker);
    }

    #[test]
    fn secrets_become_kubernetes_references() {
        let mut names = BTreeSet::new();
        assert_eq!(
            secret_references("--token=${{API_TOKEN}}", &mut names),
            "--token=$(API_TOKEN)"
        );
        assert_eq!(names.into_iter().collect::<Vec<_>>(), ["API_TOKEN"]);
    }
}
