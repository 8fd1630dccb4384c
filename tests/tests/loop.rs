//! Kexec loops driven by parkboot: the park-aware multiboot2 test kernel is booted over
//! and over from a pristine copy, wakes every AP each time and re-enters parkboot; no
//! AP is ever sent INIT again. Broken kernel images get a clear error and parkboot
//! goes on with the next entry.
// Test code and its harness: a failed expectation is a panic.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

use parkboot_tests::{parkboot_image, test_kernel, Boot, Outcome};
use std::path::{Path, PathBuf};
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(300);
const MULTIBOOT2_MAGIC: u32 = 0xE852_50D6;
const MULTIBOOT2_SEARCH: usize = 32 * 1024;
const MULTIBOOT2_ALIGN: usize = 8;

fn loop_config(iterations: u32) -> String {
    format!(
        "self_check = off\non_finish = qemu-exit\n[entry test-kernel]\nkernel = fw_cfg:opt/parkboot/kernel\nformat = multiboot2\niterations = {iterations}\n"
    )
}

/// The summary's `parkboot_memory_bytes` as (min, max).
fn parkboot_memory(outcome: &Outcome) -> (u64, u64) {
    let spread = outcome.summary_field("parkboot_memory_bytes");
    let members: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&spread).expect("parkboot_memory_bytes is an object");
    let get = |key: &str| {
        members
            .get(key)
            .and_then(serde_json::Value::as_u64)
            .unwrap_or_else(|| panic!("parkboot_memory_bytes has no {key}: {spread}"))
    };
    (get("min"), get("max"))
}

fn run_loop(cpus: u32, iterations: u32) -> Outcome {
    let outcome = Boot::new(parkboot_image())
        .smp(cpus)
        .config_text(loop_config(iterations))
        .fw_cfg_file("opt/parkboot/kernel", test_kernel("testkernel"))
        .trace_init_ipis(true)
        .timeout(TIMEOUT)
        .run();
    outcome.assert_pass();
    assert_eq!(
        outcome.summary_field("iterations_requested"),
        iterations.to_string()
    );
    assert_eq!(
        outcome.summary_field("iterations_done"),
        iterations.to_string()
    );
    assert_eq!(outcome.summary_field("iterations_failed"), "0");
    assert_eq!(
        outcome.summary_field("cpus_woken_min"),
        (cpus - 1).to_string()
    );
    assert_eq!(
        outcome.count_lines("testkernel: iteration "),
        iterations as usize,
        "{}",
        outcome.report()
    );
    if cpus > 1 {
        let witness = outcome.init_ipis.as_ref().expect("INIT witness");
        assert_eq!(witness.inits_after_park, Some(0), "{witness:?}");
    }
    // Through PVH, SeaBIOS ran first: parkboot says so, and warns once that a kernel
    // asking that BIOS for its memory map would not see the park region.
    assert!(
        outcome
            .find_line("a legacy BIOS ran before parkboot (INT 15h at f000:")
            .is_some(),
        "{}",
        outcome.report()
    );
    assert_eq!(
        outcome.count_lines("a legacy BIOS is underneath"),
        1,
        "{}",
        outcome.report()
    );
    // parkboot's own memory is the same after the first iteration as after the last
    // (and every one between): nothing it keeps grows with the loop.
    let (min, max) = parkboot_memory(&outcome);
    assert!(min > 0, "{}", outcome.report());
    assert_eq!(
        min,
        max,
        "parkboot's memory changed over the loop\n{}",
        outcome.report()
    );
    assert!(
        outcome.find_line("the same in every iteration").is_some(),
        "{}",
        outcome.report()
    );
    outcome
}

#[test]
fn loop_10_iterations_smp1() {
    run_loop(1, 10);
}

#[test]
fn loop_10_iterations_smp2() {
    run_loop(2, 10);
}

#[test]
fn loop_10_iterations_smp4() {
    run_loop(4, 10);
}

#[test]
fn loop_100_iterations_smp4() {
    run_loop(4, 100);
}

/// 1000 iterations of the multiboot2 test kernel: parkboot's own memory use (its
/// image, page tables, park region, mailbox, ACPI tables and the kernel's pristine
/// copy) is the same in the first iteration as in the last.
#[test]
fn loop_1000_iterations_smp2_parkboot_memory_does_not_grow() {
    let outcome = run_loop(2, 1000);
    let first = outcome
        .find_line("  test-kernel                  1 ")
        .unwrap_or_else(|| panic!("no first row\n{}", outcome.report()))
        .to_string();
    let last = outcome
        .find_line("  test-kernel               1000 ")
        .unwrap_or_else(|| panic!("no last row\n{}", outcome.report()))
        .to_string();
    let kib = |row: &str| row.rsplit("  ").next().unwrap_or("").to_string();
    assert!(kib(&first).ends_with(" KiB"), "{first}");
    assert_eq!(kib(&first), kib(&last), "first: {first}\nlast: {last}");
}

#[test]
fn a_kernel_can_stop_the_loop_early() {
    let config = "self_check = off\non_finish = qemu-exit\n[entry test-kernel]\nkernel = fw_cfg:opt/parkboot/kernel\ncmdline = \"testkernel.request=stop\"\niterations = 5\n";
    let outcome = Boot::new(parkboot_image())
        .smp(2)
        .config_text(config)
        .fw_cfg_file("opt/parkboot/kernel", test_kernel("testkernel"))
        .timeout(TIMEOUT)
        .run();
    outcome.assert_pass();
    assert_eq!(outcome.summary_field("iterations_done"), "1");
}

// ---- bad input -------------------------------------------------------------------

fn testkernel_bytes() -> Vec<u8> {
    std::fs::read(test_kernel("testkernel")).expect("test kernel")
}

fn header_offset(image: &[u8]) -> usize {
    (0..MULTIBOOT2_SEARCH.min(image.len()))
        .step_by(MULTIBOOT2_ALIGN)
        .find(|&o| image.get(o..o + 4) == Some(&MULTIBOOT2_MAGIC.to_le_bytes()[..]))
        .expect("the test kernel has a multiboot2 header")
}

fn u32_at(image: &[u8], offset: usize) -> u32 {
    u32::from_le_bytes(image[offset..offset + 4].try_into().unwrap())
}

fn put_u32(image: &mut [u8], offset: usize, value: u32) {
    image[offset..offset + 4].copy_from_slice(&value.to_le_bytes());
}

/// Re-computes the header checksum after a change to its tags.
fn fix_checksum(image: &mut [u8]) {
    let h = header_offset(image);
    let sum = u32_at(image, h)
        .wrapping_add(u32_at(image, h + 4))
        .wrapping_add(u32_at(image, h + 8));
    put_u32(image, h + 12, 0u32.wrapping_sub(sum));
}

fn temp_file(name: &str, bytes: &[u8]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("parkboot-loop-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

fn gzip(bytes: &[u8], name: &str) -> Vec<u8> {
    let plain = temp_file(name, bytes);
    let out = std::process::Command::new("gzip")
        .arg("-c")
        .arg(&plain)
        .output()
        .expect("gzip");
    assert!(out.status.success());
    out.stdout
}

/// Boots a bad entry followed by a good one; the bad one must be refused with a
/// message containing `expected`, and the good one must still run.
fn refused(bad: &Path, expected: &str) {
    refused_with(bad, "", expected);
}

/// [`refused`] with more settings (`bad_settings`, whole lines) for the bad entry.
fn refused_with(bad: &Path, bad_settings: &str, expected: &str) -> Outcome {
    let config = format!("self_check = off\non_finish = qemu-exit\n\
        [entry bad]\nkernel = fw_cfg:opt/parkboot/bad\nformat = multiboot2\niterations = 3\n{bad_settings}\
        [entry good]\nkernel = fw_cfg:opt/parkboot/kernel\nformat = multiboot2\niterations = 1\n");
    let outcome = Boot::new(parkboot_image())
        .smp(2)
        .config_text(config)
        .fw_cfg_file("opt/parkboot/bad", bad)
        .fw_cfg_file("opt/parkboot/kernel", test_kernel("testkernel"))
        .timeout(TIMEOUT)
        .run();
    let error = outcome
        .find_line("ERROR: entry 'bad'")
        .unwrap_or_else(|| panic!("no error for the bad entry\n{}", outcome.report()));
    assert!(
        error.contains(expected),
        "the error should say '{expected}': {error}"
    );
    assert!(
        outcome.find_line("going on with the next entry").is_some(),
        "{}",
        outcome.report()
    );
    assert!(
        outcome
            .find_line("entry 'good' iteration 1/1: back after")
            .is_some(),
        "the good entry must still boot\n{}",
        outcome.report()
    );
    assert!(
        !outcome.passed(),
        "a run with a refused entry reports failure"
    );
    assert_eq!(outcome.summary_field("iterations_failed"), "1");
    outcome
}

fn sha256_hex(bytes: &[u8]) -> String {
    parkboot::config::Sha256Pin::of(bytes).to_string()
}

#[test]
fn boots_a_kernel_that_matches_its_pin() {
    let kernel = testkernel_bytes();
    let pin = sha256_hex(&kernel);
    let config = format!(
        "self_check = off\non_finish = qemu-exit\n[entry pinned]\nkernel = fw_cfg:opt/parkboot/kernel\nkernel_sha256 = {pin}\ninitrd = fw_cfg:opt/parkboot/initrd\ninitrd_sha256 = {}\nformat = multiboot2\niterations = 3\n",
        sha256_hex(b"a pinned module")
    );
    let outcome = Boot::new(parkboot_image())
        .smp(2)
        .config_text(config)
        .fw_cfg_file("opt/parkboot/kernel", test_kernel("testkernel"))
        .fw_cfg_string("opt/parkboot/initrd", "a pinned module")
        .timeout(TIMEOUT)
        .run();
    outcome.assert_pass();
    for (image, digest) in [("kernel", pin), ("initrd", sha256_hex(b"a pinned module"))] {
        let checked = format!(
            "entry 'pinned': {image} fw_cfg:opt/parkboot/{image}: SHA-256 {digest} as pinned"
        );
        assert!(
            outcome.find_line(&checked).is_some(),
            "no '{checked}'\n{}",
            outcome.report()
        );
    }
    // Hashed once, when loaded; later iterations reload the checked pristine copy.
    assert_eq!(outcome.count_lines("as pinned"), 2, "{}", outcome.report());
    assert_eq!(outcome.summary_field("iterations_done"), "3");
    assert_eq!(outcome.summary_field("iterations_failed"), "0");
}

#[test]
fn refuses_a_kernel_that_differs_from_its_pin() {
    // The good test kernel, pinned to the digest of a kernel one byte longer: only the
    // hash can tell them apart.
    let kernel = testkernel_bytes();
    let mut other = kernel.clone();
    other.push(0);
    let (found, pinned) = (sha256_hex(&kernel), sha256_hex(&other));
    let outcome = refused_with(
        &temp_file("pinned-differently", &kernel),
        &format!("kernel_sha256 = {pinned}\n"),
        &format!(
            "kernel fw_cfg:opt/parkboot/bad: SHA-256 is {found}, the configuration pins {pinned}"
        ),
    );
    assert!(
        outcome.find_line("testkernel: iteration ").is_some(),
        "{}",
        outcome.report()
    );
    assert_eq!(
        outcome.count_lines("testkernel: iteration "),
        1,
        "only the good entry may boot\n{}",
        outcome.report()
    );
}

#[test]
fn refuses_an_initrd_that_differs_from_its_pin() {
    let kernel = temp_file("kernel-for-initrd-pin", &testkernel_bytes());
    let config = format!(
        "self_check = off\non_finish = qemu-exit\n\
        [entry bad]\nkernel = fw_cfg:opt/parkboot/kernel\ninitrd = fw_cfg:opt/parkboot/initrd\ninitrd_sha256 = {}\nformat = multiboot2\niterations = 2\n\
        [entry good]\nkernel = fw_cfg:opt/parkboot/kernel\nformat = multiboot2\n",
        sha256_hex(b"the module that was pinned")
    );
    let outcome = Boot::new(parkboot_image())
        .smp(2)
        .config_text(config)
        .fw_cfg_file("opt/parkboot/kernel", kernel)
        .fw_cfg_string("opt/parkboot/initrd", "a module swapped in")
        .timeout(TIMEOUT)
        .run();
    let error = outcome
        .find_line("ERROR: entry 'bad'")
        .unwrap_or_else(|| panic!("no error for the bad entry\n{}", outcome.report()));
    let expected = format!(
        "initrd fw_cfg:opt/parkboot/initrd: SHA-256 is {}, the configuration pins {}",
        sha256_hex(b"a module swapped in"),
        sha256_hex(b"the module that was pinned")
    );
    assert!(
        error.contains(&expected),
        "expected '{expected}' in: {error}"
    );
    assert_eq!(
        outcome.count_lines("testkernel: iteration "),
        1,
        "{}",
        outcome.report()
    );
    assert!(
        outcome
            .find_line("entry 'good' iteration 1/1: back after")
            .is_some(),
        "{}",
        outcome.report()
    );
    assert_eq!(outcome.summary_field("iterations_failed"), "1");
}

#[test]
fn refuses_an_image_without_a_multiboot2_header() {
    // The kernel's code holds the magic number too: clear every aligned copy.
    let mut image = testkernel_bytes();
    let magic = MULTIBOOT2_MAGIC.to_le_bytes();
    for offset in (0..MULTIBOOT2_SEARCH.min(image.len())).step_by(MULTIBOOT2_ALIGN) {
        if image.get(offset..offset + 4) == Some(&magic[..]) {
            put_u32(&mut image, offset, 0);
        }
    }
    refused(&temp_file("no-header", &image), "no multiboot2 header");
}

#[test]
fn refuses_a_bad_header_checksum() {
    let mut image = testkernel_bytes();
    let h = header_offset(&image);
    let checksum = u32_at(&image, h + 12);
    put_u32(&mut image, h + 12, checksum ^ 1);
    refused(&temp_file("bad-checksum", &image), "checksum");
}

#[test]
fn refuses_an_unknown_required_tag() {
    // The information request tag comes first; ask for tag 8 (framebuffer info),
    // which parkboot cannot give, in place of the first requested type.
    let mut image = testkernel_bytes();
    let h = header_offset(&image);
    let first_tag = h + 16;
    assert_eq!(
        u32_at(&image, first_tag) & 0xffff,
        1,
        "information request tag first"
    );
    put_u32(&mut image, first_tag + 8, 8);
    fix_checksum(&mut image);
    refused(&temp_file("framebuffer", &image), "8");
}

#[test]
fn refuses_a_truncated_elf() {
    let image = testkernel_bytes();
    let cut = header_offset(&image) + 0x100;
    refused(&temp_file("truncated", &image[..cut]), "past the end");
}

#[test]
fn refuses_segments_over_parkboots_memory() {
    // Move the first PT_LOAD segment's physical address onto parkboot's own image.
    let mut image = testkernel_bytes();
    let phoff = u64::from_le_bytes(image[0x20..0x28].try_into().unwrap()) as usize;
    let phentsize = u16::from_le_bytes(image[0x36..0x38].try_into().unwrap()) as usize;
    let phnum = u16::from_le_bytes(image[0x38..0x3a].try_into().unwrap()) as usize;
    let load = (0..phnum)
        .map(|i| phoff + i * phentsize)
        .find(|&p| u32_at(&image, p) == 1)
        .expect("a PT_LOAD header");
    let parkboot = 0x10_0000u64.to_le_bytes();
    image[load + 0x18..load + 0x20].copy_from_slice(&parkboot); // p_paddr
    refused(&temp_file("over-parkboot", &image), "parkboot image");
}

#[test]
fn refuses_corrupt_gzip() {
    let mut packed = gzip(&testkernel_bytes(), "to-gzip");
    let middle = packed.len() / 2;
    for byte in &mut packed[middle..middle + 16] {
        *byte ^= 0x5a;
    }
    refused(&temp_file("corrupt.gz", &packed), "gzip");
}

#[test]
fn boots_a_gzip_compressed_kernel() {
    let packed = gzip(&testkernel_bytes(), "to-gzip-ok");
    let kernel = temp_file("kernel.gz", &packed);
    let outcome = Boot::new(parkboot_image())
        .smp(2)
        .config_text(loop_config(2))
        .fw_cfg_file("opt/parkboot/kernel", kernel)
        .timeout(TIMEOUT)
        .run();
    outcome.assert_pass();
    assert!(
        outcome.find_line("inflated").is_some(),
        "{}",
        outcome.report()
    );
    assert_eq!(outcome.summary_field("iterations_done"), "2");
}

#[test]
fn without_configured_entries_parkboot_boots_what_fw_cfg_offers() {
    let outcome = Boot::new(parkboot_image())
        .smp(2)
        .config_text("self_check = off\non_finish = qemu-exit\n")
        .fw_cfg_file("opt/parkboot/kernel", test_kernel("testkernel"))
        .fw_cfg_string("opt/parkboot/cmdline", "testkernel.request=stop")
        .timeout(TIMEOUT)
        .run();
    outcome.assert_pass();
    assert!(
        outcome
            .find_line("testkernel: command line: \"testkernel.request=stop\"")
            .is_some(),
        "{}",
        outcome.report()
    );
    assert_eq!(outcome.summary_field("iterations_done"), "1");
}

#[test]
fn boots_a_kernel_from_a_pvh_boot_module() {
    // QEMU hands -initrd to a PVH kernel as module 0, at the top of low RAM where
    // parkboot also allocates: the module must survive parkboot's own allocations.
    let config = "self_check = on\non_finish = qemu-exit\n[entry module]\nkernel = module:0\nformat = multiboot2\niterations = 3\n";
    let outcome = Boot::new(parkboot_image())
        .smp(2)
        .initrd(test_kernel("testkernel"))
        .config_text(config)
        .timeout(TIMEOUT)
        .run();
    outcome.assert_pass();
    assert!(
        outcome.find_line("boot module 0:").is_some(),
        "{}",
        outcome.report()
    );
    assert_eq!(outcome.summary_field("iterations_done"), "3");
}

/// In the HLT wait a kernel that sends no wake interrupts (as Linux, which knows
/// nothing of doorbells) still gets every CPU, through the mailbox and the doorbell,
/// from the watcher alone: the one parked CPU that polls and rings the others.
#[test]
fn the_watcher_alone_wakes_cpus_for_a_kernel_that_sends_no_interrupt() {
    const ITERATIONS: u32 = 3;
    const CPUS: u32 = 6;
    let config = format!(
        "self_check = on\non_finish = qemu-exit\npark_wait = hlt\n[entry test-kernel]\nkernel = fw_cfg:opt/parkboot/kernel\nformat = multiboot2\niterations = {ITERATIONS}\ncmdline = \"testkernel.ring=off\"\n"
    );
    let outcome = Boot::new(parkboot_image())
        .smp(CPUS)
        .config_text(config)
        .fw_cfg_file("opt/parkboot/kernel", test_kernel("testkernel"))
        .trace_init_ipis(true)
        .timeout(TIMEOUT)
        .run();
    outcome.assert_pass();
    assert_eq!(
        outcome.summary_field("iterations_done"),
        ITERATIONS.to_string()
    );
    assert_eq!(
        outcome.summary_field("cpus_woken_min"),
        (CPUS - 1).to_string()
    );
    assert_eq!(
        outcome.count_lines("testkernel: no wake interrupts from this kernel"),
        ITERATIONS as usize,
        "{}",
        outcome.report()
    );
    assert_eq!(
        outcome.count_lines("the other 4 parked CPUs sleep with their doorbell armed"),
        ITERATIONS as usize,
        "{}",
        outcome.report()
    );
    let witness = outcome.init_ipis.as_ref().expect("INIT witness");
    assert_eq!(witness.inits_after_park, Some(0), "{witness:?}");
}

/// A kernel rings the doorbell while one AP is held running in it; that AP comes back
/// through the ResetVector and must stay parked (no jump to the vector of a ring it
/// missed), and the next kernel finds `wake_all_vector` cleared by parkboot, so no CPU
/// can follow the previous kernel's vector into memory it no longer owns.
#[test]
fn a_doorbell_rung_while_a_cpu_ran_is_not_answered_later() {
    const ITERATIONS: u32 = 3;
    let config = format!(
        "self_check = on\non_finish = qemu-exit\n[entry test-kernel]\nkernel = fw_cfg:opt/parkboot/kernel\nformat = multiboot2\niterations = {ITERATIONS}\ncmdline = \"testkernel.stale-doorbell\"\n"
    );
    let outcome = Boot::new(parkboot_image())
        .smp(4)
        .config_text(config)
        .fw_cfg_file("opt/parkboot/kernel", test_kernel("testkernel"))
        .trace_init_ipis(true)
        .timeout(TIMEOUT)
        .run();
    outcome.assert_pass();
    assert_eq!(
        outcome.summary_field("iterations_done"),
        ITERATIONS.to_string()
    );
    assert_eq!(outcome.summary_field("iterations_failed"), "0");
    assert_eq!(
        outcome.count_lines("testkernel: stale doorbell: APIC ID"),
        ITERATIONS as usize,
        "{}",
        outcome.report()
    );
    let witness = outcome.init_ipis.as_ref().expect("INIT witness");
    assert_eq!(witness.inits_after_park, Some(0), "{witness:?}");
}
