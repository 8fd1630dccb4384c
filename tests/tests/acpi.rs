//! Broken platform ACPI tables: a table parkboot does not need gets a warning and the
//! loop boots on with it kept in place; a broken MADT is an error that parks nothing and
//! boots on as with `park = off`. cbshim (`cbshim.bad-checksum=SIG`) gives one of
//! QEMU's tables a wrong checksum behind a new XSDT and RSDP.
// Test code and its harness: a failed expectation is a panic.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

use parkboot_tests::{parkboot_image, test_kernel, workspace_root, Boot, ExitStatusKind, Outcome};
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(300);
const DEFAULT_ITERATIONS: usize = 10;

/// What cbshim says it did: the copy's address, the wrong and the correct checksum,
/// and the RSDP that leads to the copy.
struct Corrupted {
    copy: String,
    bad: String,
    correct: String,
    rsdp: String,
}

/// The word after `marker` in `line`, trailing punctuation removed.
fn word_after<'a>(line: &'a str, marker: &str) -> &'a str {
    let rest = &line[line
        .find(marker)
        .unwrap_or_else(|| panic!("no {marker:?} in {line:?}"))
        + marker.len()..];
    rest.split_whitespace()
        .next()
        .unwrap_or("")
        .trim_end_matches([',', ')'])
}

fn corrupted(outcome: &Outcome, signature: &str) -> Corrupted {
    let line = outcome
        .find_line(&format!("cbshim: {signature} copied to "))
        .unwrap_or_else(|| panic!("cbshim did not corrupt {signature}\n{}", outcome.report()));
    Corrupted {
        copy: word_after(line, "copied to ").to_string(),
        bad: word_after(line, "with checksum ").to_string(),
        correct: word_after(line, "(correct: ").to_string(),
        rsdp: word_after(line, "new XSDT and RSDP ").to_string(),
    }
}

/// The default configuration's multiboot2 loop, through the coreboot entry, with one
/// of the platform's tables carrying a wrong checksum.
fn default_loop_with_bad_checksum(signature: &str) -> Outcome {
    Boot::new(test_kernel("cbshim"))
        .initrd(parkboot_image())
        .append(format!("cbshim.bad-checksum={signature}"))
        .smp(4)
        .config_file(workspace_root().join("configs/default.cfg"))
        .fw_cfg_file("opt/parkboot/kernel", test_kernel("testkernel"))
        .trace_init_ipis(true)
        .timeout(TIMEOUT)
        .run()
}

#[test]
fn a_bad_hpet_checksum_is_a_warning_and_the_default_loop_passes() {
    let outcome = default_loop_with_bad_checksum("HPET");
    outcome.assert_pass();
    let hpet = corrupted(&outcome, "HPET");
    assert_ne!(hpet.bad, hpet.correct);
    let warning = format!(
        "WARNING: ACPI: HPET at {}: checksum {} does not sum to zero (expected {})",
        hpet.copy, hpet.bad, hpet.correct
    );
    assert_eq!(
        outcome.count_lines(&warning),
        1,
        "the warning must name the table once\n{}",
        outcome.report()
    );
    assert!(
        outcome.find_line("parkboot: parked 3 of 3 APs").is_some(),
        "{}",
        outcome.report()
    );
    assert!(outcome
        .find_line("Multiprocessor Wakeup entry, version 1")
        .is_some());
    assert_eq!(
        outcome.count_lines("testkernel: iteration "),
        DEFAULT_ITERATIONS,
        "{}",
        outcome.report()
    );
    assert_eq!(outcome.summary_field("iterations_failed"), "0");
    assert_eq!(outcome.summary_field("madt_usable"), "true");
    let witness = outcome.init_ipis.as_ref().expect("INIT IPI witness");
    assert_eq!(witness.inits_after_park, Some(0), "{witness:?}");
}

#[test]
fn a_bad_madt_checksum_parks_nothing_and_boots_on_without_parking() {
    let config = "self_check = on\non_finish = qemu-exit\n\
        [entry test-kernel]\nkernel = fw_cfg:opt/parkboot/kernel\nformat = multiboot2\niterations = 1\n";
    let outcome = Boot::new(test_kernel("cbshim"))
        .initrd(parkboot_image())
        .append("cbshim.bad-checksum=APIC")
        .smp(4)
        .config_text(config)
        .fw_cfg_file("opt/parkboot/kernel", test_kernel("testkernel"))
        .trace_init_ipis(true)
        .timeout(TIMEOUT)
        .run();
    let madt = corrupted(&outcome, "APIC");
    let error = outcome
        .find_line(&format!(
            "ERROR: ACPI: APIC at {}: checksum {} does not sum to zero (expected {})",
            madt.copy, madt.bad, madt.correct
        ))
        .unwrap_or_else(|| panic!("no error line naming the MADT\n{}", outcome.report()));
    assert!(
        error.contains(&format!(
            "parkboot cannot know the CPUs, so it parks none and boots on as with park = off \
             (kernels get the platform's RSDP {} untouched)",
            madt.rsdp
        )),
        "{error}"
    );
    assert!(outcome.stopped_reason().is_none(), "{}", outcome.report());
    // Nothing started, nothing parked, no tables rewritten.
    for absent in [
        "parkboot: starting APs",
        "parkboot: parked",
        "Multiprocessor Wakeup entry",
        "CPUs in the MADT",
    ] {
        assert!(
            outcome.find_line(absent).is_none(),
            "{absent:?} in a run without a MADT\n{}",
            outcome.report()
        );
    }
    let witness = outcome.init_ipis.as_ref().expect("INIT IPI witness");
    assert_eq!(witness.park_vector, None, "{witness:?}");
    assert_eq!(witness.park_sipis, 0, "{witness:?}");
    // The kernel is booted. The test kernel needs parkboot's park table, which a boot
    // without parking does not give: it says so and ends QEMU with its failure code.
    assert!(
        outcome
            .find_line("entry 'test-kernel': multiboot2 kernel")
            .is_some(),
        "{}",
        outcome.report()
    );
    assert!(
        outcome.find_line("no parkboot tag").is_some(),
        "{}",
        outcome.report()
    );
    assert!(outcome
        .find_line("no park table: cannot return to parkboot, ending QEMU")
        .is_some());
    assert_eq!(outcome.status, ExitStatusKind::Fail, "{}", outcome.report());
}

#[test]
fn a_bad_madt_checksum_without_entries_ends_cleanly() {
    let outcome = Boot::new(test_kernel("cbshim"))
        .initrd(parkboot_image())
        .append("cbshim.bad-checksum=APIC")
        .smp(2)
        .config_text("on_finish = qemu-exit\n")
        .timeout(TIMEOUT)
        .run();
    outcome.assert_pass();
    assert!(
        outcome
            .find_line("ERROR: ACPI: APIC at ")
            .is_some_and(|line| line.contains("parkboot cannot know the CPUs")),
        "{}",
        outcome.report()
    );
    assert_eq!(outcome.summary_field("madt_usable"), "false");
    assert_eq!(outcome.summary_field("park"), "false");
    assert_eq!(outcome.summary_field("aps_parked"), "0");
    assert_eq!(outcome.summary_field("cpus"), "0");
}

/// Every kernel zeroes the MailBoxAddress of the MADT it was given, as Linux does when
/// it cannot hand CPUs back; parkboot emits the tables afresh before each boot, so
/// every later kernel still finds the mailbox (the test kernel checks it against the
/// park table) and the tables in ACPI NVS memory.
#[test]
fn tables_a_kernel_wrote_into_are_emitted_afresh_for_the_next() {
    const ITERATIONS: usize = 3;
    let config = format!(
        "self_check = off\non_finish = qemu-exit\n[entry test-kernel]\nkernel = fw_cfg:opt/parkboot/kernel\ncmdline = \"testkernel.clobber-acpi\"\niterations = {ITERATIONS}\n"
    );
    let outcome = Boot::new(parkboot_image())
        .smp(2)
        .config_text(config)
        .fw_cfg_file("opt/parkboot/kernel", test_kernel("testkernel"))
        .timeout(TIMEOUT)
        .run();
    outcome.assert_pass();
    assert_eq!(
        outcome.count_lines("zeroed the MADT's MailBoxAddress"),
        ITERATIONS,
        "{}",
        outcome.report()
    );
    assert_eq!(
        outcome.count_lines("(ACPI NVS): Multiprocessor Wakeup version 1"),
        ITERATIONS,
        "{}",
        outcome.report()
    );
    assert_eq!(
        outcome.summary_field("iterations_done"),
        ITERATIONS.to_string()
    );
    assert_eq!(outcome.summary_field("iterations_failed"), "0");
}
