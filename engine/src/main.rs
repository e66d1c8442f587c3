//! The `stepback` command: a thin layer over the `stepback` library.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
