//! `builtin:deploy-files`: copies and extracts, checks the source's
//! SHA-256, reports progress, and refuses archives whose entries would
//! land outside the destination, before writing anything.

use crate::support::{Env, Node, assert_same, flow_head, snapshot};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use stepback::exit;

enum Entry<'a> {
    File(&'a str, &'a [u8]),
    Dir(&'a str),
    Symlink(&'a str, &'a str),
}

/// A tar archive written byte by byte, so that it can hold the hostile
/// names the `tar` crate's own builder refuses to write.
fn tar(entries: &[Entry]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for entry in entries {
        let mut header = tar::Header::new_ustar();
        let (name, kind, data, link): (&str, _, &[u8], &str) = match entry {
            Entry::File(n, d) => (n, tar::EntryType::Regular, d, ""),
            Entry::Dir(n) => (n, tar::EntryType::Directory, b"", ""),
            Entry::Symlink(n, t) => (n, tar::EntryType::Symlink, b"", t),
        };
        let ustar = header.as_ustar_mut().unwrap();
        ustar.name[..name.len()].copy_from_slice(name.as_bytes());
        ustar.linkname[..link.len()].copy_from_slice(link.as_bytes());
        header.set_entry_type(kind);
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(1_700_000_000);
        header.set_cksum();
        builder.append(&header, data).unwrap();
    }
    builder.into_inner().unwrap()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

fn zip(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, data) in entries {
        writer
            .start_file(*name, zip::write::SimpleFileOptions::default())
            .unwrap();
        writer.write_all(data).unwrap();
    }
    writer.finish().unwrap().into_inner()
}

const RELEASE: &[Entry] = &[
    Entry::Dir("bin"),
    Entry::File("bin/app", b"#!/bin/sh\n"),
    Entry::File("static/index.html", b"<h1>hi</h1>"),
    Entry::Symlink("latest", "static"),
];

fn expected_release() -> Vec<(PathBuf, Node)> {
    vec![
        ("bin".into(), Node::Dir),
        ("bin/app".into(), Node::File(b"#!/bin/sh\n".to_vec())),
        ("latest".into(), Node::Symlink("static".into())),
        ("static".into(), Node::Dir),
        ("static/index.html".into(), Node::File(b"<h1>hi</h1>".to_vec())),
    ]
}

/// A flow deploying with `with` from the read-only `dist` mount into `app`.
fn deploy_flow(with: &str) -> String {
    flow_head("deploy", &["app"], &["dist"])
        + &format!(
            r#"
[[steps]]
name = "deploy"
uses = "builtin:deploy-files"
mounts = ["app", "dist"]
with = {{ {with} }}
"#
        )
}

fn deploy(env: &Env, with: &str) -> crate::support::Run {
    env.mkdir("app");
    env.mkdir("dist");
    env.run_flow(&deploy_flow(with))
}

#[test]
fn extracts_tar_tar_gz_and_zip() {
    for (file, bytes) in [
        ("r.tar", tar(RELEASE)),
        ("r.tar.gz", gzip(&tar(RELEASE))),
        ("r.tgz", gzip(&tar(RELEASE))),
    ] {
        let env = Env::new();
        env.write(&format!("dist/{file}"), &bytes);
        deploy(&env, &format!("from = \"/dist/{file}\", to = \"/app/rel\""))
            .expect_code(exit::SUCCESS)
            .expect_stdout("2 files, 21 bytes to /app/rel");
        let got: Vec<_> = snapshot(&env.path("app/rel")).into_iter().collect();
        assert_eq!(got, expected_release(), "{file}");
    }
    let env = Env::new();
    env.write(
        "dist/r.zip",
        zip(&[("bin/app", b"#!/bin/sh\n"), ("static/index.html", b"<h1>hi</h1>")]),
    );
    deploy(&env, "from = \"/dist/r.zip\", to = \"/app/rel\"").expect_code(exit::SUCCESS);
    assert_eq!(
        std::fs::read(env.path("app/rel/static/index.html")).unwrap(),
        b"<h1>hi</h1>"
    );
}

#[test]
fn copies_a_tree_keeping_symlinks_and_a_single_file() {
    let env = Env::new();
    env.write("dist/tree/a/b/c.txt", "deep");
    env.write("dist/tree/top.txt", "top");
    symlink("a/b", env.path("dist/tree/shortcut")).unwrap();
    let old = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::new(1_500_000_000, 123_456_789);
    std::fs::File::options()
        .write(true)
        .open(env.path("dist/tree/a/b/c.txt"))
        .unwrap()
        .set_modified(old)
        .unwrap();
    deploy(&env, "from = \"/dist/tree\", to = \"/app/copy\"").expect_code(exit::SUCCESS);
    assert_eq!(snapshot(&env.path("dist/tree")), snapshot(&env.path("app/copy")));
    let mtime = |p: &str| std::fs::metadata(env.path(p)).unwrap().modified().unwrap();
    assert_eq!(mtime("app/copy/a/b/c.txt"), old, "file times are kept");

    deploy(&env, "from = \"/dist/tree/top.txt\", to = \"/app/one/top.txt\"").expect_code(exit::SUCCESS);
    assert_eq!(std::fs::read(env.path("app/one/top.txt")).unwrap(), b"top");
}

/// Large files are read in chunks above wasmtime-wasi's 64 KiB (the
/// layer serves those reads itself): every byte must arrive, in order.
#[test]
fn a_multi_mib_file_is_copied_byte_for_byte() {
    let env = Env::new();
    let data: Vec<u8> = (0..(5u32 << 20) + 3)
        .map(|i| (i % 251) as u8 ^ (i >> 16) as u8)
        .collect();
    env.write("dist/big.bin", &data);
    deploy(&env, "from = \"/dist/big.bin\", to = \"/app/big.bin\"").expect_code(exit::SUCCESS);
    let copied = std::fs::read(env.path("app/big.bin")).unwrap();
    assert_eq!(copied.len(), data.len());
    assert!(copied == data, "the copy differs from the source");
}

#[test]
fn a_symlink_where_a_file_goes_is_replaced_not_written_through() {
    let env = Env::new();
    env.write("dist/tree/config.txt", "new");
    env.write("app/keep.txt", "keep me");
    env.mkdir("app/copy");
    symlink("../keep.txt", env.path("app/copy/config.txt")).unwrap();
    deploy(&env, "from = \"/dist/tree\", to = \"/app/copy\"").expect_code(exit::SUCCESS);
    let placed = env.path("app/copy/config.txt");
    assert!(!std::fs::symlink_metadata(&placed).unwrap().is_symlink());
    assert_eq!(std::fs::read_to_string(placed).unwrap(), "new");
    assert_eq!(
        std::fs::read_to_string(env.path("app/keep.txt")).unwrap(),
        "keep me"
    );
}

#[test]
fn a_sha256_mismatch_fails_before_writing() {
    let env = Env::new();
    let bytes = tar(RELEASE);
    env.write("dist/r.tar", &bytes);
    let good = hex(&Sha256::digest(&bytes));
    let bad = "0".repeat(64);
    deploy(
        &env,
        &format!("from = \"/dist/r.tar\", to = \"/app/rel\", sha256 = \"{bad}\""),
    )
    .expect_code(exit::FLOW_FAILED)
    .expect_stdout(&format!(
        "sha256 mismatch for /dist/r.tar: expected {bad}, got {good}"
    ));
    assert!(!env.path("app/rel").exists());
    deploy(
        &env,
        &format!("from = \"/dist/r.tar\", to = \"/app/rel\", sha256 = \"{good}\""),
    )
    .expect_code(exit::SUCCESS);
    assert!(env.path("app/rel/bin/app").is_file());
}

#[test]
fn hostile_archives_are_refused_and_nothing_is_written() {
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "dotdot.tar",
            tar(&[Entry::File("ok", b"1"), Entry::File("../escaped", b"x")]),
            "archive entry ../escaped would land outside the destination",
        ),
        (
            "deep.tar",
            tar(&[Entry::File("a/../../escaped", b"x")]),
            "would land outside the destination",
        ),
        (
            "absolute.tar",
            tar(&[Entry::File("/tmp/escaped", b"x")]),
            "archive entry /tmp/escaped would land outside",
        ),
        (
            "link-out.tar",
            tar(&[Entry::Symlink("evil", "../../outside")]),
            "archive symlink evil -> ../../outside points outside the destination",
        ),
        (
            "link-abs.tar",
            tar(&[Entry::Symlink("evil", "/etc")]),
            "points outside the destination",
        ),
        (
            "through-link.tar",
            tar(&[Entry::Symlink("here", "."), Entry::File("here/x", b"x")]),
            "archive entry here/x is beneath the archive's symlink here",
        ),
        (
            "dotdot.tar.gz",
            gzip(&tar(&[Entry::File("../escaped", b"x")])),
            "would land outside the destination",
        ),
        (
            "dotdot.zip",
            zip(&[("ok", b"1"), ("../escaped", b"x")]),
            "archive entry ../escaped would land outside the destination",
        ),
    ];
    for (file, bytes, message) in cases {
        let env = Env::new();
        env.write(&format!("dist/{file}"), &bytes);
        env.write("outside/keep", "keep");
        env.mkdir("app");
        let before = snapshot(env.dir.path());
        deploy(&env, &format!("from = \"/dist/{file}\", to = \"/app/rel\""))
            .expect_code(exit::FLOW_FAILED)
            .expect_stdout(message);
        let mut after = snapshot(env.dir.path());
        after.retain(|p, _| !p.starts_with("state") && p != Path::new("flow.toml"));
        assert_same(&before, &after, file);
    }
}

#[test]
fn progress_is_reported_in_files_and_bytes() {
    let env = Env::new();
    env.write("dist/r.tar", tar(RELEASE));
    env.mkdir("app");
    let flow = env.flow(deploy_flow("from = \"/dist/r.tar\", to = \"/app/rel\""));
    let run = env.stepback(&["--output", "json", "run", flow.to_str().unwrap()]);
    run.expect_code(exit::SUCCESS);
    let progress: Vec<serde_json::Value> = run
        .stdout()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|e| e["event"] == "step-progress")
        .collect();
    let last = |unit: &str| {
        progress
            .iter()
            .rev()
            .find(|e| e["unit"] == unit)
            .cloned()
            .unwrap()
    };
    assert_eq!(
        (last("files")["done"].as_u64(), last("files")["total"].as_u64()),
        (Some(2), Some(2))
    );
    assert_eq!(
        (last("bytes")["done"].as_u64(), last("bytes")["total"].as_u64()),
        (Some(21), Some(21))
    );
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A plugin's I/O error names the error, not WASI's number for it (44 is
/// WASI's ENOENT, the host's ECHRNG).
#[test]
fn a_missing_source_is_named_in_the_hosts_terms() {
    let env = Env::new();
    env.mkdir("dist");
    let run = deploy(&env, r#"from = "/dist/nothing.tar", to = "/app/r""#);
    run.expect_code(exit::FLOW_FAILED)
        .expect_stdout("No such file or directory (ENOENT)");
    assert!(!run.stdout().contains("os error"), "{}", run.stdout());
}
