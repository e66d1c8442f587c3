//! Defaults from a config file, for what an operator sets once per machine
//! (where state lives, `--color`, how long `run` waits for a busy mount).
//! Each key is an option's long name: top-level keys are the options every
//! command takes, keys under `[run]` are `run`'s. A value becomes that
//! option's default, so a flag still beats an environment variable, which
//! beats the file, which beats the built-in default.
//!
//! The file is `/etc/stepback/config.toml`, or the one `STEPBACK_CONFIG`
//! names (empty: none). A missing file is no defaults; a file that is not
//! right stops the command with what is wrong and where, before anything
//! runs.

use std::path::PathBuf;

/// Where the config file is, unless `STEPBACK_CONFIG` says otherwise.
pub const DEFAULT_PATH: &str = "/etc/stepback/config.toml";

/// The config file to read, if any.
fn path() -> Option<PathBuf> {
    match std::env::var_os("STEPBACK_CONFIG") {
        Some(p) if p.is_empty() => None,
        Some(p) => Some(PathBuf::from(p)),
        None => Some(PathBuf::from(DEFAULT_PATH)),
    }
}

/// `command` with the config file's values as its defaults; `Err` says
/// what is wrong with the file, and where.
pub fn apply(command: clap::Command) -> Result<clap::Command, String> {
    let Some(path) = path() else { return Ok(command) };
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(command),
        Err(e) => return Err(format!("config file {}: {e}", path.display())),
    };
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        let line = e
            .span()
            .map(|s| format!(":{}", text[..s.start].matches('\n').count() + 1));
        format!(
            "config file {}{}: {}",
            path.display(),
            line.unwrap_or_default(),
            e.message()
        )
    })?;
    // Every problem at once, in the file's order.
    let mut problems = Vec::new();
    let mut command = command;
    let run_command = command.find_subcommand("run").expect("run is a command").clone();
    for (key, value) in &table {
        match value {
            toml::Value::Table(options) if key == "run" => {
                let mut run = run_command.clone();
                for (key, value) in options {
                    match default(run.clone(), "run.", key, value) {
                        Ok(with) => run = with,
                        Err(_) if has_option(&command, key) => problems.push((
                            line_of(&text, key),
                            format!("`{key}` is an option of every command: put it at the top, before [run]"),
                        )),
                        Err(why) => problems.push((line_of(&text, key), why)),
                    }
                }
                command = command.mut_subcommand("run", |_| run);
            }
            toml::Value::Table(_) => problems.push((
                line_of_table(&text, key),
                format!("unknown table [{key}]: only [run] holds options (`run`'s)"),
            )),
            _ => match default(command.clone(), "", key, value) {
                Ok(with) => command = with,
                Err(_) if has_option(&run_command, key) => problems.push((
                    line_of(&text, key),
                    format!("`{key}` is an option of `run`: put it under [run]"),
                )),
                Err(why) => problems.push((line_of(&text, key), why)),
            },
        }
    }
    if problems.is_empty() {
        return Ok(command);
    }
    problems.sort_by_key(|(line, _)| *line);
    let at = |(line, why): &(Option<usize>, String)| {
        let line = line.map(|n| format!(":{n}")).unwrap_or_default();
        format!("config file {}{line}: {why}", path.display())
    };
    Err(problems.iter().map(at).collect::<Vec<_>>().join("\nerror: "))
}

/// `command` with `value` as the default of its option `--KEY`, checked
/// as the option itself would check it.
fn default(
    command: clap::Command,
    within: &str,
    key: &str,
    value: &toml::Value,
) -> Result<clap::Command, String> {
    let options: Vec<&str> = command
        .get_arguments()
        .filter(|a| a.get_long().is_some() && !a.is_positional())
        .filter_map(clap::Arg::get_long)
        .filter(|long| !matches!(*long, "help" | "version"))
        .collect();
    let Some(arg) = command.get_arguments().find(|a| a.get_long() == Some(key)) else {
        let meant = stepback::diagnostic::closest(key, &options)
            .map(|m| format!("; did you mean `{within}{m}`?"))
            .unwrap_or_default();
        return Err(format!("unknown key `{within}{key}`{meant}"));
    };
    let flag = !arg.get_action().takes_values();
    let text = match value {
        toml::Value::Boolean(b) => b.to_string(),
        _ if flag => return Err(format!("`{within}{key}` is a flag: true or false")),
        toml::Value::String(s) => s.clone(),
        toml::Value::Integer(n) => n.to_string(),
        _ => {
            return Err(format!(
                "`{within}{key}` must be a string, a whole number or a boolean"
            ));
        }
    };
    if !flag {
        // Checked as the option itself checks it, alone in a command of its own.
        let alone = clap::Command::new("config")
            .no_binary_name(true)
            .arg(arg.clone().required(false).global(false));
        alone
            .try_get_matches_from([format!("--{key}={text}")])
            .map_err(|e| format!("`{within}{key}` = {value}: {}", first_line(&e.to_string())))?;
    }
    let id = arg.get_id().clone();
    Ok(command.mut_arg(id, |a| a.default_value(text)))
}

/// Whether `command` has an option `--KEY`.
fn has_option(command: &clap::Command, key: &str) -> bool {
    command.get_arguments().any(|a| a.get_long() == Some(key))
}

/// The line (from 1) of table `[key]`'s header.
fn line_of_table(text: &str, key: &str) -> Option<usize> {
    text.lines()
        .position(|l| {
            l.trim_start()
                .strip_prefix('[')
                .is_some_and(|rest| rest.trim_start().starts_with(key))
        })
        .map(|n| n + 1)
}

/// The line (from 1) where `key` is set.
fn line_of(text: &str, key: &str) -> Option<usize> {
    text.lines()
        .position(|l| {
            let l = l.trim_start();
            l.strip_prefix(key)
                .is_some_and(|rest| rest.trim_start().starts_with('='))
        })
        .map(|n| n + 1)
}

/// clap's message without its "error: " and usage lines.
fn first_line(message: &str) -> String {
    let line = message.lines().next().unwrap_or_default();
    line.strip_prefix("error: ").unwrap_or(line).to_owned()
}
