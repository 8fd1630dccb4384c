//! parkboot's ELF is an ordinary coreboot payload: coreboot's own cbfstool takes it.
// Test code and its harness: a failed expectation is a panic.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

use parkboot_tests::parkboot_image;
use std::process::Command;

fn cbfstool(args: &[&str]) -> String {
    let out = Command::new("cbfstool")
        .args(args)
        .output()
        .expect("cbfstool (Debian coreboot-utils; scripts/test installs it)");
    assert!(
        out.status.success(),
        "cbfstool {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn cbfstool_adds_parkboot_as_a_compressed_payload() {
    let dir = std::env::temp_dir().join(format!("parkboot-cbfs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let rom = dir.join("cbfs.rom");
    let rom = rom.to_str().unwrap();
    let image = parkboot_image();
    cbfstool(&[rom, "create", "-m", "x86", "-s", "0x400000"]);
    cbfstool(&[
        rom,
        "add-payload",
        "-f",
        image.to_str().unwrap(),
        "-n",
        "fallback/payload",
        "-c",
        "lzma",
    ]);
    let listing = cbfstool(&[rom, "print"]);
    let line = listing
        .lines()
        .find(|l| l.starts_with("fallback/payload"))
        .unwrap_or_else(|| panic!("no payload in\n{listing}"));
    assert!(line.contains("simple elf"), "{line}");
    std::fs::remove_dir_all(&dir).ok();
}
