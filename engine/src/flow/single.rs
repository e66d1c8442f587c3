//! One step alone, as `stepback plugin run` gives it: a flow of one step
//! made from command-line arguments, so that it is validated, journaled
//! and rolled back exactly as a step of a written flow is (no second path
//! through the engine for trying a plugin out).

use super::source::{FlowSource, Format};
use crate::grant::Access;
use std::path::PathBuf;

/// A mount given as `NAME=HOST:GUEST[:ro|:rw]`, or `NAME=HOST` (guest
/// `/NAME`); read-write unless it says `:ro`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountArg {
    /// Its name, as the step's `mounts` lists it.
    pub name: String,
    /// The host directory, relative to where the command runs.
    pub host: String,
    /// Where the plugin sees it.
    pub guest: String,
    /// Whether the step may change it.
    pub access: Access,
}

impl std::str::FromStr for MountArg {
    type Err = String;

    fn from_str(arg: &str) -> Result<MountArg, String> {
        let form = "expected NAME=HOST:GUEST[:ro], such as app=./app:/app";
        let (name, rest) = arg
            .split_once('=')
            .filter(|(name, rest)| !name.is_empty() && !rest.is_empty())
            .ok_or_else(|| format!("{arg:?}: {form}"))?;
        let (rest, access) = match (rest.strip_suffix(":ro"), rest.strip_suffix(":rw")) {
            (Some(rest), _) => (rest, Access::ReadOnly),
            (_, Some(rest)) => (rest, Access::ReadWrite),
            _ => (rest, Access::ReadWrite),
        };
        let (host, guest) = match rest.rsplit_once(':') {
            Some((host, guest)) if guest.starts_with('/') && !host.is_empty() => (host, guest.to_owned()),
            Some(_) => return Err(format!("{arg:?}: the guest path must be absolute ({form})")),
            None => (rest, format!("/{name}")),
        };
        Ok(MountArg {
            name: name.to_owned(),
            host: host.to_owned(),
            guest,
            access,
        })
    }
}

/// What `plugin run` was given: the plugin, its config, its mounts and the
/// programs it may run.
#[derive(Debug, Clone)]
pub struct OneStep {
    /// `builtin:NAME` or a component's path, as a flow's `uses` takes it.
    pub plugin: String,
    /// The step's `with` table.
    pub with: serde_json::Map<String, serde_json::Value>,
    /// The mounts, each granted to the step.
    pub mounts: Vec<MountArg>,
    /// The step's exec grant.
    pub exec: Vec<String>,
}

/// What names the flow [`OneStep::source`] makes, in its diagnostics and
/// its record.
pub const ONE_STEP_FLOW: &str = "plugin-run";

impl OneStep {
    /// The flow of this one step, as if read from a JSON file in the
    /// current directory (relative paths start there); diagnostics quote
    /// its lines under the name `plugin-run`.
    pub fn source(&self) -> FlowSource {
        let access = |a: Access| match a {
            Access::ReadOnly => "read-only",
            _ => "read-write",
        };
        let mounts: Vec<_> = self
            .mounts
            .iter()
            .map(|m| serde_json::json!({"name": m.name, "host": m.host, "guest": m.guest, "access": access(m.access)}))
            .collect();
        let flow = serde_json::json!({
            "name": ONE_STEP_FLOW,
            "mounts": mounts,
            "steps": [{
                "name": self.plugin,
                "uses": self.plugin,
                "mounts": self.mounts.iter().map(|m| &m.name).collect::<Vec<_>>(),
                "exec": self.exec,
                "with": self.with,
            }],
        });
        FlowSource {
            path: PathBuf::from(ONE_STEP_FLOW),
            text: serde_json::to_string_pretty(&flow).expect("JSON values serialize"),
            format: Format::Json,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mount(arg: &str) -> Result<MountArg, String> {
        arg.parse()
    }

    #[test]
    fn a_mount_says_name_host_guest_and_access() {
        let m = mount("app=./rel/app:/srv/app:ro").unwrap();
        assert_eq!(
            (m.name.as_str(), m.host.as_str(), m.guest.as_str()),
            ("app", "./rel/app", "/srv/app")
        );
        assert_eq!(m.access, Access::ReadOnly);
        let m = mount("data=/var/data").unwrap();
        assert_eq!(
            (m.host.as_str(), m.guest.as_str(), m.access),
            ("/var/data", "/data", Access::ReadWrite)
        );
        assert_eq!(mount("c=a:b:/x:rw").unwrap().host, "a:b");
    }

    #[test]
    fn a_malformed_mount_says_the_form() {
        for bad in ["app", "=./x", "app=", "app=./x:relative"] {
            let e = mount(bad).unwrap_err();
            assert!(e.contains("NAME=HOST:GUEST"), "{bad}: {e}");
        }
    }

    #[test]
    fn the_flow_parses_with_the_step_given() {
        let step = OneStep {
            plugin: "builtin:write-file".into(),
            with: serde_json::from_str(r#"{"path": "/app/x", "content": "y"}"#).unwrap(),
            mounts: vec![mount("app=./app").unwrap()],
            exec: vec!["sh".into()],
        };
        let flow = step.source().parse().unwrap();
        assert_eq!(flow.name, ONE_STEP_FLOW);
        assert_eq!(flow.steps[0].uses, "builtin:write-file");
        assert_eq!(flow.steps[0].mounts, ["app"]);
        assert_eq!(flow.steps[0].exec, ["sh"]);
        assert_eq!(flow.steps[0].with["content"], "y");
        assert_eq!(flow.mounts[0].guest, "/app");
    }
}
