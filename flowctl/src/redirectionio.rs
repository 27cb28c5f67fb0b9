//! The Redirection.io agent as a reverse proxy: its `agent.yml`. The project key stays in the
//! environment: the agent expands `${CC_REDIRECTIONIO_PROJECT_KEY}` itself.

use crate::layout::Layout;
use std::path::{Path, PathBuf};

/// Where the agent of the hop listening on `listen` reads its configuration.
pub fn config(layout: &Layout, listen: u16) -> PathBuf {
    layout.rendered(&format!("redirectionio-{listen}/agent.yml"))
}

/// The agent's own data, in the state directory.
pub fn datadir(layout: &Layout, listen: u16) -> PathBuf {
    layout.state(&format!("redirectionio-{listen}/data"))
}

/// The hop's command.
pub fn argv(layout: &Layout, listen: u16) -> Vec<String> {
    vec![
        "redirectionio-agent".into(),
        "--config-file".into(),
        config(layout, listen).display().to_string(),
    ]
}

pub fn agent_config(
    instance_name: &str,
    key_env: &str,
    listen: u16,
    forward: u16,
    datadir: &Path,
) -> String {
    format!(
        "# redirectionio-agent configuration, rendered by flowctl.\n\
         instance_name: {}\n\
         datadir: {}\n\
         proxies:\n\
         \x20 - listen: \"0.0.0.0:{listen}\"\n\
         \x20   forward: \"http://127.0.0.1:{forward}\"\n\
         \x20   project_key: \"${{{key_env}}}\"\n",
        yaml_string(instance_name),
        yaml_string(&datadir.display().to_string()),
    )
}

/// A YAML double-quoted string.
fn yaml_string(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_agent_config_names_the_key_never_holds_it() {
        let yml = agent_config(
            "shop \"prod\"",
            "CC_REDIRECTIONIO_PROJECT_KEY",
            8081,
            9000,
            Path::new("/run/rio"),
        );
        assert_eq!(
            yml,
            "# redirectionio-agent configuration, rendered by flowctl.\n\
             instance_name: \"shop \\\"prod\\\"\"\n\
             datadir: \"/run/rio\"\n\
             proxies:\n  - listen: \"0.0.0.0:8081\"\n    forward: \"http://127.0.0.1:9000\"\n    project_key: \"${CC_REDIRECTIONIO_PROJECT_KEY}\"\n"
        );
    }
}
