//! Replays the committed fuzz seeds on stable Rust, as an ordinary `cargo test`.
//!
//! The cargo-fuzz crate in `fuzz/` (nightly only) keeps a small, hand-picked corpus per
//! target in `fuzz/seeds/<target>/`: hand-written edge cases, a few coverage-diverse
//! inputs kept from long fuzzing runs, and every input that ever reproduced a bug. This
//! test feeds each of those files to the same checker the fuzz target calls
//! (`etp_driver::__fuzz::driver` and `etp_driver::__fuzz::framing`), so a regression
//! that a seed catches fails CI without nightly or libFuzzer.
//!
//! A missing or empty seed directory fails the test (a moved directory must not turn
//! the replay into a silent pass). Every file is run, even after a failure, under
//! `catch_unwind`; the final panic names each failing file with its panic message and
//! the start of its bytes in hex. Files whose name starts with `.` are skipped.
//!
//! Run it with `cargo test -p etp-driver --test fuzz_seeds`.

use std::any::Any;
use std::fmt::Write as _;
use std::fs;
use std::panic;
use std::path::{Path, PathBuf};

/// The seed files of one fuzz target, sorted by name; panics when there are none.
fn seed_files(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/seeds")
        .join(target);
    let entries = fs::read_dir(&dir)
        .unwrap_or_else(|err| panic!("seed directory {} cannot be read: {err}", dir.display()));
    let mut files: Vec<PathBuf> = entries
        .map(|entry| entry.expect("a readable directory entry").path())
        .filter(|path| path.is_file())
        .filter(|path| {
            !path
                .file_name()
                .is_some_and(|name| name.to_string_lossy().starts_with('.'))
        })
        .collect();
    files.sort();
    assert!(
        !files.is_empty(),
        "seed directory {} holds no seed files",
        dir.display()
    );
    files
}

/// The text of a panic payload.
fn panic_message(payload: &(dyn Any + Send)) -> &str {
    if let Some(text) = payload.downcast_ref::<&str>() {
        text
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text
    } else {
        "<non-string panic payload>"
    }
}

/// Runs `check` on every seed of `target` and reports all failing files at once.
fn replay(target: &str, check: fn(&[u8])) {
    let files = seed_files(target);
    let mut failures = String::new();
    let mut failed = 0;
    for path in &files {
        let data = fs::read(path)
            .unwrap_or_else(|err| panic!("seed {} cannot be read: {err}", path.display()));
        if let Err(payload) = panic::catch_unwind(|| check(&data)) {
            failed += 1;
            let shown = &data[..data.len().min(64)];
            let hex: String = shown.iter().map(|b| format!("{b:02x}")).collect();
            let more = if data.len() > shown.len() { "..." } else { "" };
            let _ = writeln!(
                failures,
                "  {}: {}\n    input ({} bytes): {hex}{more}",
                path.display(),
                panic_message(&*payload),
                data.len(),
            );
        }
    }
    assert!(
        failed == 0,
        "{failed} of {} `{target}` seeds failed:\n{failures}",
        files.len()
    );
}

#[test]
fn driver_seeds() {
    replay("driver", etp_driver::__fuzz::driver);
}

#[test]
fn framing_seeds() {
    replay("framing", etp_driver::__fuzz::framing);
}
