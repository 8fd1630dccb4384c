//! Kernels that misbehave on purpose (`testkernel.misbehave=`): one that never hands
//! its APs back, one that writes garbage into the park table, one that rings the
//! doorbell and the mailbox with bad vectors, one that takes a CPU's doorbell and never
//! rings it, and ones that return a garbage report.
//! parkboot must notice, say what happened by APIC ID (and field), and either go on
//! with the CPUs it still has or stop safely, never hang or fault.
// Test code and its harness: a failed expectation is a panic.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

use parkboot_tests::{parkboot_image, test_kernel, Boot, ExitStatusKind, Outcome};
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(300);

/// A misbehaving entry (`misbehave`, one iteration), then a well-behaved one
/// (`after`, `after_iterations`), at -smp 4.
fn run(misbehave: &str, after_iterations: u32) -> Outcome {
    let config = format!(
        "self_check = off\non_finish = qemu-exit\n\
         [entry misbehave]\nkernel = fw_cfg:opt/parkboot/kernel\nformat = multiboot2\niterations = 1\ncmdline = \"testkernel.misbehave={misbehave}\"\n\
         [entry after]\nkernel = fw_cfg:opt/parkboot/kernel\nformat = multiboot2\niterations = {after_iterations}\n"
    );
    Boot::new(parkboot_image())
        .smp(4)
        .config_text(config)
        .fw_cfg_file("opt/parkboot/kernel", test_kernel("testkernel"))
        .trace_init_ipis(true)
        .timeout(TIMEOUT)
        .run()
}

fn assert_line(outcome: &Outcome, needle: &str) {
    assert!(
        outcome.find_line(needle).is_some(),
        "no line with '{needle}'\n{}",
        outcome.report()
    );
}

fn assert_no_init_after_park(outcome: &Outcome) {
    let witness = outcome.init_ipis.as_ref().expect("INIT witness");
    assert_eq!(witness.inits_after_park, Some(0), "{witness:?}");
}

/// The kernel holds all three APs in its own code and returns. parkboot names each by
/// APIC ID, keeps the kernel's memory reserved, so the next kernel (loaded at the same
/// address) is refused by name instead of being loaded over code the APs still run,
/// and the run stops with a failure at once (no hang, no INIT to win the CPUs back).
#[test]
fn a_kernel_that_keeps_its_aps_is_named_and_its_memory_kept() {
    let outcome = run("keep-aps", 1);
    assert_eq!(
        outcome.count_lines("testkernel: keep-aps: APIC ID"),
        3,
        "{}",
        outcome.report()
    );
    for apic_id in 1..=3 {
        assert_line(
            &outcome,
            &format!("APIC ID {apic_id} did not come back through the ResetVector"),
        );
    }
    assert_line(&outcome, "only 0 of 3 APs are parked again");
    assert_line(&outcome, "load areas stay reserved for good");
    // The same kernel image cannot be loaded over the held APs' code: refused by name.
    let refused = outcome
        .find_line("ERROR: entry 'after' (iteration 1/1)")
        .unwrap_or_else(|| panic!("the next kernel was not refused\n{}", outcome.report()));
    assert!(refused.contains("multiboot2 kernel segment"), "{refused}");
    assert_eq!(outcome.summary_field("aps_not_back"), "3");
    assert_eq!(outcome.summary_field("iterations_failed"), "2");
    assert_eq!(outcome.status, ExitStatusKind::Fail, "{}", outcome.report());
    assert_no_init_after_park(&outcome);
}

/// The kernel writes garbage into fields only parkboot owns, a slot's APIC ID and
/// state, the boot processor's state and parked_count. parkboot names each field (and
/// the checksum), repairs them from its own copy, and the next kernel finds a valid
/// table whose checksum matches, every AP parked and wakeable.
#[test]
fn a_kernel_that_corrupts_the_park_table_is_named_and_the_table_repaired() {
    let outcome = run("corrupt-table", 2);
    assert_line(&outcome, "testkernel: corrupt-table:");
    for needle in [
        "the kernel wrote into the park table: checksum",
        "header field cpu_count is 0xb, parkboot wrote 0x4",
        "header field mailbox_address is 0x0",
        "header field boot_apic_id is 0x55, parkboot wrote 0x0",
        "slot 1 (APIC ID 1): apic_id is 0xdead, parkboot wrote 0x1",
        "slot of APIC ID 0 (the boot processor) says state 3; repaired",
        "slot of APIC ID 1 says state 119, but the CPU answers in the park loop: marked parked",
        "parked_count is 8, but 3 CPUs are parked; corrected",
    ] {
        assert_line(&outcome, needle);
    }
    assert_line(&outcome, "entry 'after' iteration 2/2: back after");
    assert_eq!(outcome.summary_field("iterations_done"), "3");
    assert_eq!(outcome.summary_field("iterations_failed"), "1");
    assert_eq!(outcome.summary_field("aps_not_back"), "0");
    assert_eq!(
        outcome.count_lines("woke 3 of 3 APs through the mailbox"),
        3,
        "{}",
        outcome.report()
    );
    assert_no_init_after_park(&outcome);
}

/// Mailbox wakeups to 0, a non-canonical and a beyond-RAM vector, and a doorbell to a
/// non-canonical one: each CPU refuses, records it, stays parked; parkboot reports the
/// refusals by APIC ID and the next kernel wakes every AP.
#[test]
fn bad_wakeup_vectors_are_refused_and_the_cpus_stay_parked() {
    let outcome = run("bad-vector", 1);
    assert_eq!(
        outcome.count_lines("testkernel: bad vector: APIC ID 1 refused a mailbox Wakeup"),
        3,
        "{}",
        outcome.report()
    );
    assert_line(
        &outcome,
        "testkernel: bad vector: 3 APs refused a doorbell to 0x8000000000001000",
    );
    assert_line(
        &outcome,
        "APIC ID 1 refused 4 wakeup vectors (the last 0x8000000000001000",
    );
    for apic_id in 2..=3 {
        assert_line(
            &outcome,
            &format!("APIC ID {apic_id} refused 1 wakeup vectors (the last 0x8000000000001000"),
        );
    }
    outcome.assert_pass();
    assert_eq!(outcome.summary_field("iterations_done"), "2");
    assert_eq!(outcome.summary_field("iterations_failed"), "0");
    assert_eq!(outcome.summary_field("cpus_woken_min"), "3");
    assert_no_init_after_park(&outcome);
}

/// A kernel takes a sleeping AP's doorbell (so that AP is owed a wake interrupt) and
/// never sends it, as a ringer stopped between the two would. The AP must not wait for
/// that interrupt for ever: it still answers the mailbox, and the next kernel wakes it.
#[test]
fn a_doorbell_taken_and_never_rung_does_not_silence_the_cpu() {
    let outcome = run("orphan-doorbell", 2);
    assert_line(
        &outcome,
        "testkernel: orphan doorbell: APIC ID 1 answered the mailbox after its doorbell was taken and never rung",
    );
    outcome.assert_pass();
    assert_eq!(outcome.summary_field("iterations_done"), "3");
    assert_eq!(outcome.summary_field("iterations_failed"), "0");
    assert_eq!(outcome.summary_field("cpus_woken_min"), "3");
    assert_no_init_after_park(&outcome);
}

/// Four garbage reports, one entry each, then a good kernel: each is named, nothing
/// outside the report is read (the unmapped one is not read at all), and the loop goes
/// on to the end.
#[test]
fn garbage_reports_are_named_and_the_loop_goes_on() {
    let kinds = [
        "report-signature",
        "report-message",
        "report-counts",
        "report-unmapped",
    ];
    let mut config = String::from("self_check = off\non_finish = qemu-exit\n");
    for kind in kinds {
        config.push_str(&format!(
            "[entry {kind}]\nkernel = fw_cfg:opt/parkboot/kernel\nformat = multiboot2\niterations = 1\ncmdline = \"testkernel.misbehave={kind}\"\n"
        ));
    }
    config.push_str(
        "[entry after]\nkernel = fw_cfg:opt/parkboot/kernel\nformat = multiboot2\niterations = 1\n",
    );
    let outcome = Boot::new(parkboot_image())
        .smp(2)
        .config_text(config)
        .fw_cfg_file("opt/parkboot/kernel", test_kernel("testkernel"))
        .timeout(TIMEOUT)
        .run();
    for needle in [
        "entry 'report-signature' iteration 1: the kernel's report at",
        "signature [47, 41, 52, 42, 41, 47, 45, 21], expected \"PARKRPRT\": ignored",
        "entry 'report-message' iteration 1: the kernel reports failure 4294967295, and its message has no NUL in its 64 bytes",
        "entry 'report-counts' iteration 1: the kernel's report at",
        "more than expected or than the 2 CPUs in the park table: its measurements are ignored",
        "the kernel's report at 0x200000000000 (120 bytes) is not in RAM: ignored, nothing read there",
        "entry 'after' iteration 1/1: back after",
    ] {
        assert_line(&outcome, needle);
    }
    assert_eq!(outcome.summary_field("iterations_done"), "5");
    // Only the report that says the kernel failed fails its iteration.
    assert_eq!(outcome.summary_field("iterations_failed"), "1");
    assert_eq!(outcome.status, ExitStatusKind::Fail, "{}", outcome.report());
}
