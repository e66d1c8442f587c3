//! End-to-end tests: they run the built `stepback` binary with the real
//! built-in plugins (and the misbehaving test plugin) on temporary
//! directories, and check what it printed, its exit code and the files.

mod fsops;
mod support;

mod authoring;
mod cache;
mod cli;
mod command_limits;
mod command_links;
mod commands;
mod deploy_files;
mod disk_full;
mod example;
mod failure_model;
mod fuzz;
mod fuzz_commands;
mod hardening;
mod history;
mod inspect;
mod interrupt;
mod jail;
mod journal;
mod json_schema;
mod layout;
mod limits;
mod live_output;
mod other_processes;
mod plugin_checks;
mod plugin_run;
mod policies;
mod registry;
mod run_record;
mod sandbox_escape;
mod small_plugins;
mod soak;
mod validation;
