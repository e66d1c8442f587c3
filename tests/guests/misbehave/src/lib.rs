//! A plugin that misbehaves on purpose, for the engine's tests: it tries to
//! escape its sandbox or reach the network, loops, hoards memory, panics or sleeps.

use serde::Deserialize;
use std::fs;
use stepback_sdk::{Context, Error, Info, Outcome, Step};

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, tag = "mode")]
enum Config {
    /// Tries each write and read; fails if any of them gets through.
    Escape {
        #[serde(default)]
        writes: Vec<String>,
        #[serde(default)]
        reads: Vec<String>,
    },
    /// Loops forever without calling the host.
    Spin,
    /// Allocates memory until something stops it.
    Hog,
    /// Panics with a message.
    Panic,
    /// Sleeps in a host call for the given seconds.
    Sleep { seconds: u64 },
    /// Tries to open a TCP connection; fails if it gets through.
    Connect { address: String },
}

struct Misbehave;

impl Step for Misbehave {
    type Config = Config;

    fn info() -> Info {
        Info::new("misbehave", "0.0.0", "Misbehaves on purpose for tests.")
    }

    fn run(config: Config, cx: &Context) -> Result<Outcome, Error> {
        match config {
            Config::Escape { writes, reads } => escape(&writes, &reads, cx),
            Config::Spin => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            Config::Hog => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            Config::Panic => panic!("the misbehave plugin panicked on purpose"),
            Config::Connect { address } => match std::net::TcpStream::connect(&address) {
                Ok(_) => Err(Error::new(format!("connected to {address}"))),
                Err(e) => Ok(Outcome::summary(format!("connect to {address} refused: {e}"))),
            },
            Config::Sleep { seconds } => {
                std::thread::sleep(std::time::Duration::from_secs(seconds));
                Ok(Outcome::done())
            }
        }
    }
}

fn escape(writes: &[String], reads: &[String], cx: &Context) -> Result<Outcome, Error> {
    let mut escaped = Vec::new();
    for path in writes {
        match fs::write(path, b"escaped") {
            Ok(()) => escaped.push(format!("wrote {path}")),
            Err(e) => cx.info(format!("write {path} refused: {e}")),
        }
    }
    for path in reads {
        match fs::read(path) {
            Ok(_) => escaped.push(format!("read {path}")),
            Err(e) => cx.info(format!("read {path} refused: {e}")),
        }
    }
    if escaped.is_empty() {
        Ok(Outcome::summary(format!(
            "{} attempts refused",
            writes.len() + reads.len()
        )))
    } else {
        Err(Error::new(format!("escaped the sandbox: {}", escaped.join(", "))))
    }
}

stepback_sdk::export_step!(Misbehave);
