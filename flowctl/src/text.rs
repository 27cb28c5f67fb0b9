//! `--format text`: the chain for a person to read.

use plan::Plan;

/// `:8080 varnish → :8081 redirectionio → :9000 app (uv run python app.py)`
pub fn chain(plan: &Plan) -> String {
    let app = match &plan.run {
        Some(run) => format!(":{} app ({})", plan.ports.app, run.command),
        None => format!(":{} app", plan.ports.app),
    };
    let hops = plan.hops.as_deref().unwrap_or_default();
    if plan.request_flow.blocked && plan.mode == plan::Mode::Uv {
        let reached = match hops.first().and_then(|h| h.forward) {
            Some(_) => format!("only the health check paths reach {app}"),
            None => format!("{app} is not reachable through it"),
        };
        return format!(
            ":{} block (200 OK to every request; {reached})",
            plan.ports.public
        );
    }
    let mut parts: Vec<String> = hops
        .iter()
        .map(|h| format!(":{} {}", h.listen, h.name))
        .collect();
    parts.push(app);
    parts.join(" → ")
}
