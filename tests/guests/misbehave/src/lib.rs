//! A plugin that misbehaves on purpose, for the engine's tests: it tries to
//! escape its sandbox or reach the network, loops, hoards memory, panics or sleeps.

use serde::Deserialize;
use std::fs::{self, OpenOptions};
use std::io::{self, Seek, SeekFrom, Write};
use std::path::Path;
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
    /// Logs `lines` lines of `bytes` bytes each (with a newline and an
    /// escape sequence in them) and reports progress in `units` distinct
    /// units, then fails.
    Flood { lines: u64, bytes: usize, units: u64 },
    /// Makes every kind of file change under `root` (laid out by the
    /// journal tests), then fails if `fail` is set.
    Churn {
        root: String,
        #[serde(default)]
        fail: bool,
    },
    /// Says `greeting`. Its default is in the schema only (serde requires
    /// the key), as a plugin in another language would declare it: the
    /// step gets one only if the host applies the schema's defaults.
    Echo {
        #[schemars(extend("default" = "hello from the schema"))]
        greeting: String,
    },
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
            Config::Churn { root, fail } => {
                churn(Path::new(&root)).map_err(|e| Error::new(format!("churn: {e}")))?;
                if fail {
                    return Err(Error::new("churned, now failing on purpose"));
                }
                Ok(Outcome::summary("churned"))
            }
            Config::Flood { lines, bytes, units } => {
                let line = format!("fake\nflow x succeeded\x1b[2K{}", "y".repeat(bytes));
                for _ in 0..lines {
                    cx.info(&line);
                }
                for unit in 0..units {
                    cx.progress(1, Some(2), &format!("unit-{unit}"));
                }
                Err(Error::new("flooded"))
            }
            Config::Echo { greeting } => Ok(Outcome::summary(greeting)),
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

/// Every kind of change the journal must reverse, in one step.
fn churn(root: &Path) -> io::Result<()> {
    fs::write(root.join("a.txt"), "overwritten")?;
    OpenOptions::new()
        .append(true)
        .open(root.join("b.txt"))?
        .write_all(b" appended")?;
    OpenOptions::new()
        .write(true)
        .open(root.join("c.txt"))?
        .set_len(2)?;
    fs::write(root.join("new.txt"), "new")?;
    fs::create_dir_all(root.join("newdir/sub"))?;
    fs::write(root.join("newdir/sub/f.txt"), "nested")?;
    // A symlink inside a new directory that leads back out of it: writing
    // through it changes an existing file, which must be captured.
    symlink("../../d.txt", &root.join("newdir/sub/to-d"))?;
    fs::write(root.join("newdir/sub/to-d"), "written through a new symlink")?;
    // An existing directory moved into a new one, and changed there.
    fs::rename(root.join("olddir/inner"), root.join("newdir/inner"))?;
    fs::write(
        root.join("newdir/inner/w.txt"),
        "changed inside a moved-in directory",
    )?;
    // A new hard link to an existing file, written through.
    fs::hard_link(root.join("e.txt"), root.join("newdir/e-link"))?;
    fs::write(root.join("newdir/e-link"), "written through a new hard link")?;
    fs::remove_file(root.join("dir1/x.txt"))?;
    fs::remove_dir_all(root.join("olddir"))?;
    fs::rename(root.join("dir1/nested"), root.join("moved"))?;
    fs::write(root.join("moved/y.txt"), "changed after the move")?;
    fs::rename(root.join("new.txt"), root.join("c.txt"))?;
    fs::remove_file(root.join("link"))?;
    symlink("b.txt", &root.join("newlink"))?;
    fs::write(root.join("hard1"), "written through one of two hard links")?;
    let mut big = OpenOptions::new().write(true).open(root.join("big.bin"))?;
    big.seek(SeekFrom::Start(1 << 20))?;
    big.write_all(&[0xAB; 4096])?;
    drop(big);
    let old = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000_000);
    OpenOptions::new()
        .write(true)
        .open(root.join("b.txt"))?
        .set_modified(old)?;
    fs::remove_dir(root.join("empty"))?;
    Ok(())
}

fn symlink(target: &str, path: &Path) -> io::Result<()> {
    let c = |s: &str| std::ffi::CString::new(s).map_err(io::Error::other);
    let (target, path) = (
        c(target)?,
        c(path.to_str().ok_or_else(|| io::Error::other("path"))?)?,
    );
    // SAFETY: both are NUL-terminated strings that outlive the call.
    if unsafe { libc::symlink(target.as_ptr(), path.as_ptr()) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
