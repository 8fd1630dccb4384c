//! parkboot on a real coreboot: QEMU q35 boots the coreboot ROM built from Debian's
//! coreboot source (`-bios`, no SeaBIOS, no `-kernel`); coreboot's own romstage and
//! ramstage run, its MP init starts and halts the APs, and it loads parkboot from CBFS
//! as its payload. The configuration and the kernels come from CBFS too: no
//! `opt/parkboot/*` fw_cfg file, except Debian's initramfs, which a 16 MiB flash
//! cannot hold beside the kernel (README, "scripts/run --rom").
//!
//! `scripts/test` builds the base ROM once (scripts/lib/coreboot.sh) and exports its
//! path as PARKBOOT_BASE_ROM; every test puts parkboot and its files into its own copy
//! with cbfstool. coreboot sends its own INIT and STARTUP IPIs before parkboot runs:
//! the witness counts only those after parkboot's park.
// Test code and its harness: a failed expectation is a panic.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

use parkboot_tests::rom::{base_rom, Compression, Rom, RomBuilder};
use parkboot_tests::{
    linux_initrd, linux_kernel, linux_single_boot_initrd, parkboot_image, test_kernel,
    workspace_root, Boot, Outcome,
};
use std::path::PathBuf;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(300);
const LINUX_TIMEOUT: Duration = Duration::from_secs(900);
const LINUX_MEMORY_MIB: u32 = 1024;
const LINUX_CPUS: u32 = 4;
const LINUX_LOOPS: u32 = 3;
const KERNEL: &str = "parkboot/kernel";
const LINUX_CMDLINE: &str = "console=ttyS0 panic=-1 quiet loglevel=4 parkboot.qemu_exit=on";

fn rom(config: &str, kernel: PathBuf, compression: Compression) -> Rom {
    RomBuilder::new(base_rom(), parkboot_image())
        .config_text(config)
        .file(KERNEL, kernel, compression)
        .build()
        .unwrap_or_else(|error| panic!("building the ROM: {error}"))
}

/// coreboot ran, started parkboot through its coreboot entry, and parkboot took its
/// configuration from CBFS; no INIT IPI after the park.
fn assert_real_coreboot_boot(outcome: &Outcome, cpus: u32) {
    assert!(
        outcome.find_line("ramstage starting").is_some(),
        "coreboot's ramstage did not run\n{}",
        outcome.report()
    );
    assert!(
        outcome
            .find_line("started from its coreboot entry")
            .is_some(),
        "{}",
        outcome.report()
    );
    if cpus > 1 {
        let witness = outcome.init_ipis.as_ref().expect("INIT witness");
        assert!(
            witness.ordered_by_serial_trace,
            "the park point must be placed by the serial trace, after coreboot's own MP init: {witness:?}"
        );
        assert!(witness.park_sipis >= 1, "{witness:?}");
        assert_eq!(witness.inits_after_park, Some(0), "{witness:?}");
    }
}

fn assert_summary_from_cbfs(outcome: &Outcome) {
    assert_eq!(outcome.summary_field("entry"), "\"coreboot\"");
    assert_eq!(
        outcome.summary_field("config_source"),
        "\"cbfs:parkboot/config\""
    );
}

fn multiboot2_loop(cpus: u32) {
    const ITERATIONS: u32 = 10;
    let config = format!(
        "self_check = on\non_finish = qemu-exit\n[entry test-kernel]\nkernel = cbfs:{KERNEL}\nformat = multiboot2\niterations = {ITERATIONS}\n"
    );
    let rom = rom(&config, test_kernel("testkernel"), Compression::Lzma);
    let outcome = Boot::rom(&rom.path)
        .smp(cpus)
        .trace_init_ipis(true)
        .timeout(TIMEOUT)
        .run();
    outcome.assert_pass();
    assert_real_coreboot_boot(&outcome, cpus);
    assert_summary_from_cbfs(&outcome);
    // coreboot runs no BIOS: no INT 15h to warn about.
    assert!(
        outcome.find_line("legacy BIOS").is_none(),
        "{}",
        outcome.report()
    );
    assert_eq!(outcome.summary_field("cpus"), cpus.to_string());
    assert_eq!(outcome.summary_field("aps_parked"), (cpus - 1).to_string());
    assert_eq!(
        outcome.summary_field("iterations_done"),
        ITERATIONS.to_string()
    );
    assert_eq!(outcome.summary_field("iterations_failed"), "0");
    assert_eq!(
        outcome.summary_field("cpus_woken_min"),
        (cpus - 1).to_string()
    );
    assert_eq!(
        outcome.count_lines("testkernel: iteration "),
        ITERATIONS as usize,
        "{}",
        outcome.report()
    );
}

#[test]
fn rom_multiboot2_loop_smp1() {
    multiboot2_loop(1);
}

#[test]
fn rom_multiboot2_loop_smp4() {
    multiboot2_loop(4);
}

#[test]
fn rom_multiboot2_loop_smp8() {
    multiboot2_loop(8);
}

/// Every `parkboot-linux: iteration` line, each with every CPU online and woken from
/// the mailbox.
fn linux_iterations_from_the_mailbox(outcome: &Outcome, expected: u32) {
    let lines: Vec<&str> = outcome
        .lines()
        .filter(|line| line.contains("parkboot-linux: iteration "))
        .collect();
    assert_eq!(lines.len() as u32, expected, "{}", outcome.report());
    for line in lines {
        assert!(
            line.contains(&format!("cpus online {LINUX_CPUS}/{LINUX_CPUS}")),
            "{line}"
        );
        assert!(line.contains("woken from the mailbox"), "{line}");
        assert!(line.contains("INIT-SIPI-SIPI starts 1"), "{line}");
    }
}

fn linux_boot(rom: &Rom) -> Outcome {
    Boot::rom(&rom.path)
        .smp(LINUX_CPUS)
        .memory_mib(LINUX_MEMORY_MIB)
        // The initramfs carries the kernel again for its kexec loop: too big for the
        // flash beside the kernel (README).
        .fw_cfg_file("opt/parkboot/initrd", linux_initrd())
        .trace_init_ipis(true)
        .timeout(LINUX_TIMEOUT)
        .run()
}

#[test]
fn rom_debian_kernel_kexec_loop_smp4() {
    let config = format!(
        "self_check = on\non_finish = qemu-exit\n[entry linux]\nkernel = cbfs:{KERNEL}\ninitrd = fw_cfg:opt/parkboot/initrd\nformat = linux\ncmdline = \"{LINUX_CMDLINE}\"\niterations = {LINUX_LOOPS}\n"
    );
    // bzImage compresses itself: stored as it is.
    let rom = rom(&config, linux_kernel(), Compression::None);
    let outcome = linux_boot(&rom);
    outcome.assert_pass();
    assert_real_coreboot_boot(&outcome, LINUX_CPUS);
    linux_iterations_from_the_mailbox(&outcome, LINUX_LOOPS);
}

#[test]
fn rom_two_entries_test_kernel_then_debian_kernel() {
    const TEST_ITERATIONS: u32 = 3;
    const LINUX_ITERATIONS: u32 = 2;
    let config = format!(
        "self_check = off\non_finish = qemu-exit\n\
         [entry test-kernel]\nkernel = cbfs:parkboot/testkernel\nformat = multiboot2\niterations = {TEST_ITERATIONS}\n\
         [entry linux]\nkernel = cbfs:{KERNEL}\ninitrd = fw_cfg:opt/parkboot/initrd\nformat = linux\ncmdline = \"{LINUX_CMDLINE}\"\niterations = {LINUX_ITERATIONS}\n"
    );
    let rom = RomBuilder::new(base_rom(), parkboot_image())
        .config_text(config)
        .file(
            "parkboot/testkernel",
            test_kernel("testkernel"),
            Compression::Lz4,
        )
        .file(KERNEL, linux_kernel(), Compression::None)
        .build()
        .unwrap_or_else(|error| panic!("building the ROM: {error}"));
    let outcome = linux_boot(&rom);
    outcome.assert_pass();
    assert_real_coreboot_boot(&outcome, LINUX_CPUS);
    assert_eq!(
        outcome.count_lines("testkernel: iteration "),
        TEST_ITERATIONS as usize,
        "{}",
        outcome.report()
    );
    assert!(
        outcome
            .find_line(&format!(
                "entry 'test-kernel' iteration {TEST_ITERATIONS}/{TEST_ITERATIONS}: back after"
            ))
            .is_some(),
        "{}",
        outcome.report()
    );
    linux_iterations_from_the_mailbox(&outcome, LINUX_ITERATIONS);
}

#[test]
fn the_base_rom_has_no_payload_and_room_for_parkboot_and_debians_kernel() {
    let base = base_rom();
    let listing = parkboot_tests::rom::cbfstool(&base, &["print"]).unwrap();
    assert!(
        !listing.contains("fallback/payload"),
        "the cached base ROM must not depend on parkboot:\n{listing}"
    );
    let rom = rom(
        "[entry linux]\nkernel = cbfs:parkboot/kernel\n",
        linux_kernel(),
        Compression::None,
    );
    let layout = rom.layout().unwrap();
    for name in ["fallback/payload", "parkboot/config", KERNEL] {
        assert!(
            layout.lines().any(|line| line.starts_with(name)),
            "{name} missing in\n{layout}"
        );
    }
}

/// A file of its own for a test, removed when dropped.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str, contents: &[u8]) -> TempFile {
        let path = std::env::temp_dir().join(format!("parkboot-rom-{}-{name}", std::process::id()));
        std::fs::write(&path, contents).unwrap();
        TempFile(path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Without entries parkboot boots the file CBFS names by the documented rule (here the
/// first file called `vmlinuz`), with the `cmdline` file beside it.
#[test]
fn rom_without_entries_boots_the_kernel_cbfs_holds() {
    const CMDLINE: &str = "from cbfs img/cmdline";
    let cmdline = TempFile::new("cmdline", format!("{CMDLINE}\n").as_bytes());
    let rom = RomBuilder::new(base_rom(), parkboot_image())
        // Globals only: no [entry].
        .config_text("self_check = off\non_finish = qemu-exit\n")
        .file("img/vmlinuz", test_kernel("testkernel"), Compression::Lz4)
        .file("img/cmdline", &cmdline.0, Compression::None)
        .build()
        .unwrap_or_else(|error| panic!("building the ROM: {error}"));
    let outcome = Boot::rom(&rom.path)
        .smp(2)
        .trace_init_ipis(true)
        .timeout(TIMEOUT)
        .run();
    outcome.assert_pass();
    assert_real_coreboot_boot(&outcome, 2);
    assert_summary_from_cbfs(&outcome);
    for line in [
        "no entries configured: booting cbfs:img/vmlinuz once",
        &format!("testkernel: command line: \"{CMDLINE}\""),
    ] {
        assert!(
            outcome.find_line(line).is_some(),
            "no line with {line:?}\n{}",
            outcome.report()
        );
    }
    assert_eq!(outcome.summary_field("iterations_done"), "1");
}

/// A CBFS file whose bytes no longer match its SHA-256 attribute, and a file that is
/// not there, are errors that name the file; parkboot goes on with the next entry and
/// never jumps into the corrupt image.
#[test]
fn rom_corrupt_or_missing_cbfs_files_are_named_and_the_next_entry_boots() {
    const GOOD_ITERATIONS: u32 = 2;
    let config = format!(
        "self_check = off\non_finish = qemu-exit\n\
         [entry corrupt]\nkernel = cbfs:parkboot/corrupt\nformat = multiboot2\n\
         [entry missing]\nkernel = cbfs:parkboot/missing\n\
         [entry good]\nkernel = cbfs:{KERNEL}\nformat = multiboot2\niterations = {GOOD_ITERATIONS}\n"
    );
    let kernel = std::fs::read(test_kernel("testkernel")).unwrap();
    let rom = RomBuilder::new(base_rom(), parkboot_image())
        .config_text(config)
        // Stored as it is, so its bytes can be found in the image and one flipped.
        .file_with_sha256(
            "parkboot/corrupt",
            test_kernel("testkernel"),
            Compression::None,
        )
        .file(KERNEL, test_kernel("testkernel"), Compression::Lzma)
        .build()
        .unwrap_or_else(|error| panic!("building the ROM: {error}"));
    let mut image = std::fs::read(&rom.path).unwrap();
    let probe = &kernel[kernel.len() / 2..kernel.len() / 2 + 64];
    let found: Vec<usize> = image
        .windows(probe.len())
        .enumerate()
        .filter(|(_, w)| *w == probe)
        .map(|(at, _)| at)
        .collect();
    assert_eq!(found.len(), 1, "the uncompressed kernel must appear once");
    image[found[0]] ^= 0x01;
    std::fs::write(&rom.path, &image).unwrap();

    let outcome = Boot::rom(&rom.path)
        .smp(2)
        .trace_init_ipis(true)
        .timeout(TIMEOUT)
        .run();
    assert!(
        !outcome.passed(),
        "failed entries must fail the run\n{}",
        outcome.report()
    );
    assert_real_coreboot_boot(&outcome, 2);
    let corrupt = outcome
        .find_line("entry 'corrupt' (iteration 1/1): CBFS file \"parkboot/corrupt\" at 0x")
        .unwrap_or_else(|| panic!("no error for the corrupt file\n{}", outcome.report()));
    assert!(
        corrupt.contains("SHA-256 of the stored data does not match the hash attribute"),
        "{corrupt}"
    );
    assert!(
        outcome
            .find_line("entry 'missing' (iteration 1/1): CBFS has no file 'parkboot/missing'")
            .is_some(),
        "{}",
        outcome.report()
    );
    // Only the good entry ran a kernel, every iteration of it.
    assert_eq!(
        outcome.count_lines("testkernel: iteration "),
        GOOD_ITERATIONS as usize,
        "{}",
        outcome.report()
    );
    assert_eq!(outcome.summary_field("iterations_failed"), "2");
    assert!(
        outcome.find_line("2 of 4 iterations failed").is_some(),
        "{}",
        outcome.report()
    );
}

/// A board's case: the configuration, Debian's kernel and an initramfs all come from
/// the flash, nothing from fw_cfg. While Linux runs, the CBMEM console read out of
/// guest memory holds coreboot's log and then parkboot's, line for line as on serial.
#[test]
fn rom_everything_from_flash_and_the_log_in_the_cbmem_console_under_linux() {
    // Without `quiet`, so that Linux says when it starts /init: parkboot is long done.
    const CMDLINE: &str = "console=ttyS0 panic=-1 parkboot.qemu_exit=on";
    const INIT_STARTS: &str = "Run /init as init process";
    let config = format!(
        "self_check = on\non_finish = qemu-exit\n[entry linux]\nkernel = cbfs:{KERNEL}\ninitrd = cbfs:parkboot/initrd\nformat = linux\ncmdline = \"{CMDLINE}\"\niterations = 1\n"
    );
    let rom = RomBuilder::new(base_rom(), parkboot_image())
        .config_text(config)
        .file(KERNEL, linux_kernel(), Compression::None)
        // gzip already: stored as it is.
        .file(
            "parkboot/initrd",
            linux_single_boot_initrd(),
            Compression::None,
        )
        .build()
        .unwrap_or_else(|error| panic!("building the ROM: {error}"));
    let dump = TempFile::new("cbmem-console", b"");
    let mut console = None;
    let mut dumped: Option<Result<String, String>> = None;
    let outcome = Boot::rom(&rom.path)
        .smp(LINUX_CPUS)
        .memory_mib(LINUX_MEMORY_MIB)
        .trace_init_ipis(true)
        .monitor(true)
        .timeout(LINUX_TIMEOUT)
        .run_with(|line, ctl| {
            if line.contains("] CBMEM console at 0x") {
                console = parkboot_tests::cbmem::console_from_line(line);
            }
            if line.contains(INIT_STARTS) && dumped.is_none() {
                let Some((addr, size)) = console else { return };
                // Paused, so the guest cannot run on (or exit) during the read.
                let saved = ctl.monitor("stop").and_then(|_| {
                    ctl.monitor(&format!(
                        "pmemsave {addr:#x} {} \"{}\"",
                        parkboot_tests::cbmem::HEADER_BYTES + size,
                        dump.0.display()
                    ))
                });
                dumped = Some(saved.map_err(|e| e.to_string()));
                let _ = ctl.monitor("cont");
            }
        });
    outcome.assert_pass();
    assert_real_coreboot_boot(&outcome, LINUX_CPUS);
    linux_iterations_from_the_mailbox(&outcome, 1);
    assert!(
        outcome.find_line("fw_cfg: opt/").is_none(),
        "nothing may come from fw_cfg\n{}",
        outcome.report()
    );
    let parkboot_summary = outcome
        .find_line("] parkboot: summary: ")
        .unwrap_or_else(|| panic!("no summary from parkboot\n{}", outcome.report()));
    assert!(
        parkboot_summary.contains("\"config_source\":\"cbfs:parkboot/config\""),
        "{parkboot_summary}"
    );

    let answer = dumped.unwrap_or_else(|| panic!("Linux never ran /init\n{}", outcome.report()));
    assert_eq!(answer.as_deref().map(str::trim), Ok(""), "pmemsave failed");
    let text = parkboot_tests::cbmem::decode(&std::fs::read(&dump.0).unwrap())
        .unwrap_or_else(|e| panic!("CBMEM console: {e}"));
    let lines: Vec<&str> = text.lines().collect();
    let first = lines
        .iter()
        .position(|l| l.contains("] parkboot ") && l.contains("started from its coreboot entry"))
        .unwrap_or_else(|| panic!("parkboot's first line is not in the CBMEM console:\n{text}"));
    assert!(
        lines[..first]
            .iter()
            .any(|l| l.contains("ramstage starting")),
        "coreboot's own log must come before parkboot's:\n{text}"
    );
    // parkboot's lines, from its first to its last before Linux (its summary so far),
    // exactly as on the serial port.
    let serial = parkboot_tests::cbmem::parkboot_serial_lines(&outcome);
    let last = serial
        .iter()
        .rposition(|l| l.contains("] parkboot: summary: "))
        .unwrap_or_else(|| panic!("no summary line\n{}", outcome.report()));
    assert_eq!(lines[first..], serial[..=last], "{text}");
}

/// `scripts/rom --into`, the way an image for a board is prepared (here into the q35
/// base ROM): a kernel that does not fit is refused with the number of bytes missing
/// and nothing is written; with one that fits, the image it writes boots.
#[test]
fn scripts_rom_into_refuses_what_does_not_fit_and_its_image_boots() {
    const ITERATIONS: u32 = 2;
    let script = workspace_root().join("scripts/rom");
    let base = base_rom();
    let config = TempFile::new(
        "into.cfg",
        format!(
            "on_finish = qemu-exit\n[entry test-kernel]\nkernel = cbfs:{KERNEL}\nformat = multiboot2\niterations = {ITERATIONS}\n"
        )
        .as_bytes(),
    );
    // 17 MiB that no compression shrinks: more than a 16 MiB flash holds.
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let noise: Vec<u8> = (0..17 << 20)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    let too_big = TempFile::new("too-big", &noise);
    let out = TempFile::new("into.rom", b"");
    std::fs::remove_file(&out.0).unwrap();
    let rom_into = |kernel: &std::path::Path| {
        std::process::Command::new(&script)
            .arg("--into")
            .arg(&base)
            .arg("--config")
            .arg(&config.0)
            .arg("--add")
            .arg(format!("{KERNEL}={}", kernel.display()))
            .arg("-o")
            .arg(&out.0)
            .output()
            .expect("scripts/rom starts")
    };

    let refused = rom_into(&too_big.0);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{stderr}");
    let missing_line = stderr
        .lines()
        .find(|l| l.contains("does not fit") && l.ends_with("bytes missing"))
        .unwrap_or_else(|| panic!("no byte count in:\n{stderr}"));
    let missing: u64 = missing_line
        .rsplit(": ")
        .next()
        .and_then(|tail| tail.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{missing_line}"));
    assert!(missing > 0, "{missing_line}");
    assert!(!out.0.exists(), "a refused image must not be written");

    let made = rom_into(&test_kernel("testkernel"));
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let layout = String::from_utf8_lossy(&made.stdout);
    assert!(layout.contains(KERNEL), "the layout is printed:\n{layout}");
    let outcome = Boot::rom(&out.0)
        .smp(2)
        .trace_init_ipis(true)
        .timeout(TIMEOUT)
        .run();
    outcome.assert_pass();
    assert_real_coreboot_boot(&outcome, 2);
    assert_summary_from_cbfs(&outcome);
    assert_eq!(
        outcome.summary_field("iterations_done"),
        ITERATIONS.to_string()
    );
}
