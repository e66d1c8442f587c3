//! A hint for the commonest first failure of a step author: a path outside
//! every mount. The guest's C library finds no preopened directory for it
//! and fails before the host hears of the call, so the plugin's message
//! ("creating /etc: No such file or directory") is all there is to go on;
//! an absolute path in it that no mount of the step holds is named with
//! the mounts the step has. Not for a step that runs commands: their
//! messages name host programs and the paths of the command's jail.

/// The hint for a failure `message` of a step whose mounts are at guest
/// paths `mounts`, if the message names a path outside all of them.
pub fn hint(message: &str, mounts: &[&str]) -> Option<String> {
    let path = message
        .split(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '`' | ',' | ';' | '(' | ')'))
        .map(|word| word.trim_end_matches([':', '.']))
        .find(|word| word.starts_with('/') && !mounts.iter().any(|m| within(word, m)))?;
    let list = match mounts.is_empty() {
        true => "it has none".to_owned(),
        false => format!("its mounts: {}", mounts.join(", ")),
    };
    Some(format!(
        "{path} is outside every mount of this step ({list}): a step reaches only the mounts its `mounts` lists, at their `guest` paths"
    ))
}

/// Whether `path` is `mount` or lies inside it.
fn within(path: &str, mount: &str) -> bool {
    let mount = mount.trim_end_matches('/');
    path == mount || path.strip_prefix(mount).is_some_and(|rest| rest.starts_with('/'))
}

#[cfg(test)]
mod tests {
    use super::hint;

    #[test]
    fn names_a_path_outside_the_mounts() {
        let h = hint(
            "creating /etc: No such file or directory (ENOENT)",
            &["/m", "/dist"],
        )
        .unwrap();
        assert!(
            h.starts_with("/etc is outside every mount of this step (its mounts: /m, /dist)"),
            "{h}"
        );
        let h = hint("writing '/srv/app/x.conf': denied", &[]).unwrap();
        assert!(
            h.starts_with("/srv/app/x.conf is outside every mount of this step (it has none)"),
            "{h}"
        );
    }

    #[test]
    fn says_nothing_of_paths_inside_or_messages_without_one() {
        assert_eq!(
            hint("creating /m/new/file: No space left on device", &["/m"]),
            None
        );
        assert_eq!(hint("writing /m: Is a directory", &["/m/"]), None);
        assert_eq!(hint("anything /x", &["/"]), None);
        assert_eq!(hint("the health check failed: HTTP 503", &["/m"]), None);
        // A sibling whose name starts like the mount's is outside it.
        assert!(hint("reading /mm/a", &["/m"]).is_some());
    }
}
