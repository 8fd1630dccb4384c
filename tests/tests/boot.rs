//! parkboot boots from both entry points and reports the machine it found.
// Test code and its harness: a failed expectation is a panic.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

use parkboot_tests::{parkboot_image, test_kernel, Boot, ExitStatusKind};
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(120);

/// A configuration that only looks: no parking, no self-check.
const LOOK_ONLY: &str = "park = off\non_finish = qemu-exit\n";

#[test]
fn pvh_entry_reports_memory_cpus_and_console() {
    let outcome = Boot::new(parkboot_image())
        .smp(4)
        .config_text(LOOK_ONLY)
        .timeout(TIMEOUT)
        .run();
    outcome.assert_pass();
    assert!(outcome.find_line("started from its pvh entry").is_some());
    assert!(outcome.find_line("memory map (").is_some());
    assert!(outcome.find_line("console: 16550 at I/O 0x3f8").is_some());
    assert!(outcome.find_line("CPUs in the MADT: 4").is_some());
    for id in 0..4 {
        assert!(
            outcome
                .find_line(&format!("APIC ID {id:4}  ACPI UID"))
                .is_some(),
            "APIC ID {id} not listed\n{}",
            outcome.report()
        );
    }
    assert_eq!(outcome.summary_field("entry"), "\"pvh\"");
    assert_eq!(outcome.summary_field("cpus"), "4");
}

#[test]
fn coreboot_entry_reads_the_table_at_esp_plus_4() {
    let outcome = Boot::new(test_kernel("cbshim"))
        .initrd(parkboot_image())
        .smp(2)
        .config_text(LOOK_ONLY)
        .timeout(TIMEOUT)
        .run();
    outcome.assert_pass();
    assert!(outcome
        .find_line("cbshim: entering parkboot's coreboot entry")
        .is_some());
    assert!(outcome
        .find_line("started from its coreboot entry")
        .is_some());
    assert!(outcome.find_line("CPUs in the MADT: 2").is_some());
    assert_eq!(outcome.summary_field("entry"), "\"coreboot\"");
    assert_eq!(outcome.summary_field("cpus"), "2");
}

#[test]
fn coreboot_entry_falls_back_to_the_forwarding_table() {
    let outcome = Boot::new(test_kernel("cbshim"))
        .initrd(parkboot_image())
        .append("cbshim.pointer=forward")
        .config_text(LOOK_ONLY)
        .timeout(TIMEOUT)
        .run();
    outcome.assert_pass();
    assert_eq!(outcome.summary_field("entry"), "\"coreboot\"");
}

#[test]
fn broken_coreboot_table_is_a_clear_error_not_a_crash() {
    let outcome = Boot::new(test_kernel("cbshim"))
        .initrd(parkboot_image())
        .append("cbshim.corrupt=table-checksum")
        .config_text(LOOK_ONLY)
        .timeout(TIMEOUT)
        // The table is read before the configuration, so parkboot halts (the safe
        // default) rather than exiting QEMU: end the run when it says so.
        .run_with(|line, ctl| {
            if line.contains("parkboot: halted") {
                ctl.stop();
            }
        });
    assert!(!outcome.passed(), "a corrupt table must not pass");
    let reason = outcome
        .stopped_reason()
        .unwrap_or_else(|| panic!("parkboot did not say why it stopped\n{}", outcome.report()));
    assert!(
        reason.contains("checksum"),
        "the error should name the checksum: {reason}"
    );
}

/// The exception and panic paths print through the console lock the logger holds
/// while it writes a line: a fault in the middle of a line must still be reported, and
/// the run must end as configured (a FAIL exit), not hang on the lock.
#[test]
fn a_cpu_exception_while_a_line_is_logged_is_reported_and_parkboot_stops() {
    let outcome = Boot::new(parkboot_image())
        .config_text("fault_test = while-logging\non_finish = qemu-exit\n")
        .timeout(TIMEOUT)
        .run();
    assert_eq!(outcome.status, ExitStatusKind::Fail, "{}", outcome.report());
    assert!(
        outcome
            .find_line("parkboot: console lock taken over from the interrupted code")
            .is_some(),
        "{}",
        outcome.report()
    );
    assert!(
        outcome
            .find_line("CPU exception 14 page fault (#PF)")
            .is_some(),
        "{}",
        outcome.report()
    );
    assert!(
        outcome.find_line("CR2 0x0000400000000000").is_some(),
        "{}",
        outcome.report()
    );
    assert!(outcome
        .fail_reason()
        .unwrap_or("")
        .contains("CPU exception 14"));
}

#[test]
fn a_panic_while_a_line_is_logged_is_reported_and_parkboot_stops() {
    let outcome = Boot::new(parkboot_image())
        .config_text("fault_test = panic-while-logging\non_finish = qemu-exit\n")
        .timeout(TIMEOUT)
        .run();
    assert_eq!(outcome.status, ExitStatusKind::Fail, "{}", outcome.report());
    assert!(
        outcome
            .find_line("parkboot: console lock taken over from the interrupted code")
            .is_some(),
        "{}",
        outcome.report()
    );
    // The panic message may follow its location on a line of its own.
    assert!(
        outcome.find_line("parkboot: panic: ").is_some()
            && outcome
                .find_line("fault_test: a panic while a log line is written")
                .is_some(),
        "{}",
        outcome.report()
    );
    assert_eq!(outcome.fail_reason(), Some("panic"), "{}", outcome.report());
}

#[test]
fn a_cpu_exception_is_reported_and_parkboot_stops() {
    let outcome = Boot::new(parkboot_image())
        .config_text("fault_test = on\non_finish = qemu-exit\n")
        .timeout(TIMEOUT)
        .run();
    assert!(!outcome.passed());
    assert!(
        outcome
            .find_line("CPU exception 14 page fault (#PF)")
            .is_some(),
        "{}",
        outcome.report()
    );
    assert!(
        outcome.find_line("CR2 0x0000400000000000").is_some(),
        "{}",
        outcome.report()
    );
    assert!(outcome
        .stopped_reason()
        .unwrap_or("")
        .contains("CPU exception 14"));
}
