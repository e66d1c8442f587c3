//! Exit codes as the CLI prints them: the library's one table
//! (`stepback::exit`) at the end of every command's `--help`.

pub use stepback::exit::*;

/// [`TABLE`] as `--help` prints it.
pub fn help() -> String {
    let lines: Vec<String> = TABLE
        .iter()
        .map(|(code, _, what)| format!("  {code:>3}  {what}"))
        .collect();
    format!("Exit codes:\n{}", lines.join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readme_lists_every_exit_code_and_no_other() {
        let readme = include_str!("../../../README.md");
        let table = readme
            .split("Exit codes (")
            .nth(1)
            .expect("README has an exit code table");
        let mut listed: Vec<(u8, String)> = table
            .lines()
            .skip_while(|l| !l.starts_with('|'))
            .take_while(|l| l.starts_with('|'))
            .filter_map(|l| {
                let mut cells = l.trim_start_matches('|').split('|').map(str::trim);
                let code = cells.next()?.parse().ok()?;
                Some((code, cells.next()?.trim_matches('`').to_owned()))
            })
            .collect();
        listed.sort();
        let mut all: Vec<(u8, String)> = TABLE
            .iter()
            .map(|(code, name, _)| (*code, (*name).to_owned()))
            .collect();
        all.sort();
        assert_eq!(listed, all);
    }

    #[test]
    fn every_commands_help_ends_with_the_table() {
        let cli = super::super::args::command();
        for command in cli.get_subcommands().chain([&cli]) {
            let after = command.get_after_long_help().map(ToString::to_string);
            assert_eq!(after.as_deref(), Some(&*help()), "{}", command.get_name());
        }
    }
}
