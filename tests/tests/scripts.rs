//! The scripts' own logic: how `scripts/run` assembles the runner's arguments.
//! `PARKBOOT_RUN_PRINT_ARGS=1` makes it print them and stop before building.
// Test code and its harness: a failed expectation is a panic.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

use parkboot_tests::workspace_root;
use std::process::Command;

/// The arguments `scripts/run ARGS` would give `parkboot-run`.
fn run_args(args: &[&str]) -> Vec<String> {
    let output = Command::new(workspace_root().join("scripts/run"))
        .args(args)
        .env("PARKBOOT_RUN_PRINT_ARGS", "1")
        .output()
        .expect("scripts/run starts");
    assert!(
        output.status.success(),
        "scripts/run {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .expect("arguments are text")
        .lines()
        .map(str::to_string)
        .collect()
}

/// Splits at the first `--`: (runner options, QEMU arguments).
fn split(args: &[String]) -> (&[String], &[String]) {
    match args.iter().position(|a| a == "--") {
        Some(at) => (&args[..at], &args[at + 1..]),
        None => (args, &[]),
    }
}

fn value_of<'a>(options: &'a [String], name: &str) -> Option<&'a str> {
    options
        .iter()
        .position(|a| a == name)
        .and_then(|at| options.get(at + 1))
        .map(String::as_str)
}

#[test]
fn qemu_arguments_stay_after_the_separator_and_defaults_before_it() {
    let args = run_args(&["--smp", "2", "--", "-cpu", "max", "--config", "q"]);
    let (options, qemu) = split(&args);
    assert_eq!(qemu, ["-cpu", "max", "--config", "q"], "{args:?}");
    assert_eq!(value_of(options, "--smp"), Some("2"), "{args:?}");
    assert!(
        value_of(options, "--config").is_some_and(|c| c.ends_with("configs/default.cfg")),
        "{args:?}"
    );
    assert!(
        value_of(options, "--kernel").is_some_and(|k| k.ends_with("release/testkernel")),
        "{args:?}"
    );
    assert_eq!(options.iter().filter(|a| *a == "--smp").count(), 1);
}

#[test]
fn defaults_fill_in_what_is_missing_and_keep_what_is_given() {
    let args = run_args(&["--config=/my.cfg", "--json"]);
    let (options, qemu) = split(&args);
    assert!(qemu.is_empty(), "no `--` without QEMU arguments: {args:?}");
    assert_eq!(value_of(options, "--smp"), Some("4"), "{args:?}");
    assert!(options.contains(&"--config=/my.cfg".to_string()));
    assert_eq!(value_of(options, "--config"), None, "{args:?}");
    assert!(options.contains(&"--json".to_string()));

    let args = run_args(&["--linux", "--smp", "8", "--", "-cpu", "max"]);
    let (options, qemu) = split(&args);
    assert_eq!(qemu, ["-cpu", "max"], "{args:?}");
    assert!(!options.contains(&"--linux".to_string()), "{args:?}");
    assert_eq!(value_of(options, "--memory"), Some("1024"), "{args:?}");
    assert!(
        value_of(options, "--config").is_some_and(|c| c.ends_with("configs/linux.cfg")),
        "{args:?}"
    );
}
