//! A guest's error texts in the host's terms. A Rust plugin formats an I/O
//! error as its standard library does, "No such file or directory (os
//! error 44)", a Python one as "[Errno 44] No such file or directory": the
//! text is right, but 44 is WASI's number for `ENOENT` (the host's is 2,
//! and its 44 is `ECHRNG`), which sends an operator reading `errno` tables
//! astray. The number becomes the error's name.
//!
//! One file for both sides: the SDK's errors say the name from the start,
//! and the engine (which includes this file as its `sandbox::errno`)
//! rewrites what a plugin built without the SDK says.

/// WASI's error numbers (`wasi_snapshot_preview1`'s `errno`, which
/// wasi-libc and Rust's standard library use on every WASI target), by
/// number from 1.
const NAMES: [&str; 76] = [
    "E2BIG",
    "EACCES",
    "EADDRINUSE",
    "EADDRNOTAVAIL",
    "EAFNOSUPPORT",
    "EAGAIN",
    "EALREADY",
    "EBADF",
    "EBADMSG",
    "EBUSY",
    "ECANCELED",
    "ECHILD",
    "ECONNABORTED",
    "ECONNREFUSED",
    "ECONNRESET",
    "EDEADLK",
    "EDESTADDRREQ",
    "EDOM",
    "EDQUOT",
    "EEXIST",
    "EFAULT",
    "EFBIG",
    "EHOSTUNREACH",
    "EIDRM",
    "EILSEQ",
    "EINPROGRESS",
    "EINTR",
    "EINVAL",
    "EIO",
    "EISCONN",
    "EISDIR",
    "ELOOP",
    "EMFILE",
    "EMLINK",
    "EMSGSIZE",
    "EMULTIHOP",
    "ENAMETOOLONG",
    "ENETDOWN",
    "ENETRESET",
    "ENETUNREACH",
    "ENFILE",
    "ENOBUFS",
    "ENODEV",
    "ENOENT",
    "ENOEXEC",
    "ENOLCK",
    "ENOLINK",
    "ENOMEM",
    "ENOMSG",
    "ENOPROTOOPT",
    "ENOSPC",
    "ENOSYS",
    "ENOTCONN",
    "ENOTDIR",
    "ENOTEMPTY",
    "ENOTRECOVERABLE",
    "ENOTSOCK",
    "ENOTSUP",
    "ENOTTY",
    "ENXIO",
    "EOVERFLOW",
    "EOWNERDEAD",
    "EPERM",
    "EPIPE",
    "EPROTO",
    "EPROTONOSUPPORT",
    "EPROTOTYPE",
    "ERANGE",
    "EROFS",
    "ESPIPE",
    "ESRCH",
    "ESTALE",
    "ETIMEDOUT",
    "ETXTBSY",
    "EXDEV",
    "ENOTCAPABLE",
];

/// `text` with every "(os error N)" a guest wrote as "(NAME)", and every
/// "[Errno N]" as "[NAME]".
pub fn in_host_terms(text: &str) -> String {
    [("(os error ", ')'), ("[Errno ", ']')]
        .iter()
        .fold(text.to_owned(), |text, &(open, close)| named(&text, open, close))
}

/// `text` with each `OPEN` N `CLOSE` whose N is a WASI error number as
/// its first character, the name, and `CLOSE`.
fn named(text: &str, open: &str, close: char) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(open) {
        let after = &rest[at + open.len()..];
        let digits = after.bytes().take_while(u8::is_ascii_digit).count();
        let name = after[..digits]
            .parse::<usize>()
            .ok()
            .and_then(|n| NAMES.get(n.checked_sub(1)?))
            .filter(|_| after[digits..].starts_with(close));
        match name {
            Some(name) => {
                out.push_str(&rest[..at]);
                out.push_str(&open[..1]);
                out.push_str(name);
                out.push(close);
                rest = &after[digits + 1..];
            }
            None => {
                out.push_str(&rest[..at + open.len()]);
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::in_host_terms;

    #[test]
    fn wasi_numbers_become_names() {
        assert_eq!(
            in_host_terms("reading /dist/a.tar: No such file or directory (os error 44)"),
            "reading /dist/a.tar: No such file or directory (ENOENT)"
        );
        assert_eq!(
            in_host_terms("Permission denied (os error 2) then (os error 63)"),
            "Permission denied (EACCES) then (EPERM)"
        );
        assert_eq!(
            in_host_terms("Read-only file system (os error 69)"),
            "Read-only file system (EROFS)"
        );
        assert_eq!(
            in_host_terms("[Errno 44] No such file or directory: '/dist/a.tar'"),
            "[ENOENT] No such file or directory: '/dist/a.tar'"
        );
        // What is not one stays as it is.
        for kept in [
            "(os error 0)",
            "(os error 77)",
            "(os error x)",
            "(os error 44",
            "[Errno 44)",
            "[Errno ]",
            "plain",
        ] {
            assert_eq!(in_host_terms(kept), kept);
        }
    }
}
