//! What a test needs from its machine (an outside tool on `PATH`, a privilege, io_uring) and the
//! one policy when it is missing: under `CI=true` the test fails, naming the test and what is
//! missing; elsewhere it is skipped with one `SKIP <test>: <why>` line on stderr.
//!
//! Never: a silent early return, a tool looked up anywhere but `PATH` (removing a tool from `PATH`
//! must be seen).

use std::ffi::OsStr;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// What a test does about something it needs and lacks.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Missing {
    /// Print this line on stderr and return (passing).
    Skip(String),
    /// Fail with this message.
    Fail(String),
}

/// The policy: `ci` is the value of the `CI` variable, `test` the test's name; `why` (a tool's
/// error output, say) is put on one line.
pub(crate) fn decide(ci: Option<&str>, test: &str, why: &str) -> Missing {
    let why = why.split_whitespace().collect::<Vec<_>>().join(" ");
    if ci == Some("true") {
        Missing::Fail(format!(
            "{test}: {why} (CI=true: what a test needs must be there, so this fails instead of \
             skipping)"
        ))
    } else {
        Missing::Skip(format!("SKIP {test}: {why}"))
    }
}

/// The running test's name (the test harness names each test's thread after it).
pub(crate) fn current_test() -> String {
    std::thread::current()
        .name()
        .unwrap_or("<unnamed test>")
        .to_owned()
}

/// Acts on [`decide`] for the running test: panics under `CI=true`, else prints the `SKIP` line.
/// The caller returns afterwards.
pub(crate) fn missing(why: &str) {
    let ci = std::env::var("CI").ok();
    match decide(ci.as_deref(), &current_test(), why) {
        // Straight to stderr: the test harness captures `eprintln!` of passing tests.
        Missing::Skip(line) => {
            let _ = writeln!(std::io::stderr().lock(), "{line}");
        }
        Missing::Fail(message) => panic!("{message}"),
    }
}

/// `condition`, after applying the policy when it is false (`why` says what is lacking).
pub(crate) fn require(condition: bool, why: &str) -> bool {
    if !condition {
        missing(why);
    }
    condition
}

/// The executable `name` found on `PATH`; `None` after applying the policy.
pub(crate) fn require_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = find_on_path(&path, name);
    if found.is_none() {
        missing(&format!("`{name}` is not on PATH (.ci/run installs it)"));
    }
    found
}

/// The first executable file `name` in the directories of `path` (a `PATH` value).
fn find_on_path(path: &OsStr, name: &str) -> Option<PathBuf> {
    std::env::split_paths(path)
        .filter(|dir| !dir.as_os_str().is_empty())
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[test]
fn require_fails_under_ci_true_only() {
    let why = "`sipsak` is not on PATH";
    assert_eq!(
        decide(None, "clients::x", why),
        Missing::Skip("SKIP clients::x: `sipsak` is not on PATH".to_owned())
    );
    for other in ["false", "1", "", "TRUE"] {
        assert!(matches!(decide(Some(other), "t", why), Missing::Skip(_)));
    }
    assert_eq!(
        decide(None, "t", "mount: failed.\n       dmesg(1) may say more.\n"),
        Missing::Skip("SKIP t: mount: failed. dmesg(1) may say more.".to_owned())
    );
    let Missing::Fail(message) = decide(Some("true"), "clients::x", why) else {
        panic!("CI=true must fail");
    };
    assert!(
        message.starts_with("clients::x: `sipsak` is not on PATH"),
        "{message}"
    );
}

#[test]
fn require_finds_only_executables_on_path() {
    let dir = tempfile::tempdir().unwrap();
    let empty = tempfile::tempdir().unwrap();
    let tool = dir.path().join("tool");
    std::fs::write(&tool, "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o644)).unwrap();
    let path = std::env::join_paths([empty.path(), dir.path()]).unwrap();
    assert_eq!(find_on_path(&path, "tool"), None, "not executable");
    std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).unwrap();
    assert_eq!(find_on_path(&path, "tool"), Some(tool));
    assert_eq!(find_on_path(&path, "other"), None);
    let only_empty = std::env::join_paths([empty.path()]).unwrap();
    assert_eq!(find_on_path(&only_empty, "tool"), None);
}

#[test]
fn require_names_the_running_test() {
    assert_eq!(
        current_test(),
        "support::require::require_names_the_running_test"
    );
}
