//! parkboot's log in coreboot's CBMEM console, read back from guest memory.
//!
//! cbshim names a CBMEM console in its coreboot table, pre-filled with a line of its
//! own as coreboot's log would be. After (or during) a run the tests read that console
//! out of the guest's RAM, decode it here independently of parkboot's writer (size,
//! cursor with its 28-bit position and overflow flag, ring order) and compare it with
//! what parkboot printed on the serial port. Guest RAM is read from a file QEMU keeps it
//! in (`memory-backend-file`, readable after QEMU has exited) or, while Linux runs,
//! through the monitor's `pmemsave`.
// Test code and its harness: a failed expectation is a panic.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

use parkboot_tests::cbmem::{
    console_from_line, console_from_serial, decode, parkboot_serial_lines, HEADER_BYTES,
};
use parkboot_tests::{
    linux_initrd, linux_kernel, parkboot_image, test_kernel, Boot, ExitStatusKind,
};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(300);
const LINUX_TIMEOUT: Duration = Duration::from_secs(900);
const MEMORY_MIB: u32 = 512;
const LINUX_MEMORY_MIB: u32 = 1024;
/// How cbshim's own line starts; the address in it is the console header's.
const CBSHIM_LINE: &str = "cbshim: CBMEM console at 0x";
/// cbshim's console header is 16-byte aligned.
const CONSOLE_ALIGNMENT: usize = 16;

/// A private directory removed when the test ends.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let path = std::env::temp_dir().join(format!(
            "parkboot-cbmem-{name}-{}-{:x}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0)
        ));
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Keeps the guest's RAM in `file` (shared, so it is there after QEMU exits). All of
/// it is below 4 GiB at these sizes, so a physical address is an offset in the file.
fn ram_in_file(boot: Boot, file: &Path) -> Boot {
    let size = format!("{}M", boot.memory_mib);
    boot.args([
        "-object".to_string(),
        format!(
            "memory-backend-file,id=parkboot-ram,size={size},mem-path={},share=on",
            file.display()
        ),
        "-machine".to_string(),
        "memory-backend=parkboot-ram".to_string(),
    ])
}

fn read_at(file: &mut File, at: u64, len: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; len];
    file.seek(SeekFrom::Start(at)).unwrap();
    file.read_exact(&mut bytes).unwrap();
    bytes
}

/// Finds cbshim's console in guest RAM: a 16-byte aligned header whose body starts with
/// cbshim's line naming that very address. Returns the address and the decoded text.
fn find_console(ram: &Path) -> Option<(u64, String)> {
    const CHUNK: usize = 16 << 20;
    let prefix = CBSHIM_LINE.as_bytes();
    let mut file = File::open(ram).unwrap();
    let len = file.metadata().unwrap().len();
    let mut chunk = vec![0u8; CHUNK + HEADER_BYTES + prefix.len()];
    let mut base = 0u64;
    while base < len {
        let want = (len - base).min(chunk.len() as u64) as usize;
        file.seek(SeekFrom::Start(base)).unwrap();
        file.read_exact(&mut chunk[..want]).unwrap();
        let last = want.saturating_sub(HEADER_BYTES + prefix.len());
        for at in (0..=last.min(CHUNK - 1)).step_by(CONSOLE_ALIGNMENT) {
            let body = &chunk[at + HEADER_BYTES..];
            if !body.starts_with(prefix) {
                continue;
            }
            let addr = base + at as u64;
            let digits: String = body[prefix.len()..]
                .iter()
                .take_while(|b| b.is_ascii_hexdigit())
                .map(|&b| b as char)
                .collect();
            if u64::from_str_radix(&digits, 16).ok() != Some(addr) {
                continue;
            }
            let size = u32::from_le_bytes(chunk[at..at + 4].try_into().unwrap()) as usize;
            let console = read_at(&mut file, addr, HEADER_BYTES + size);
            return decode(&console).ok().map(|text| (addr, text));
        }
        base += CHUNK as u64;
    }
    None
}

/// cbshim's line first, then parkboot's first line.
fn assert_starts_with_cbshim_then_parkboot(text: &str) -> Vec<&str> {
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines.first().is_some_and(
            |l| l.starts_with(CBSHIM_LINE) && l.ends_with("standing in for coreboot's log")
        ),
        "the CBMEM console must start with cbshim's (coreboot's) line:\n{text}"
    );
    assert!(
        lines.get(1).is_some_and(
            |l| l.contains("] parkboot ") && l.contains("started from its coreboot entry")
        ),
        "parkboot's first line must follow coreboot's:\n{text}"
    );
    lines
}

fn multiboot2_loop_config(iterations: u32) -> String {
    format!(
        "self_check = on\non_finish = qemu-exit\n[entry test-kernel]\nkernel = fw_cfg:opt/parkboot/kernel\nformat = multiboot2\niterations = {iterations}\n"
    )
}

#[test]
fn multiboot2_loop_log_is_in_the_cbmem_console_after_coreboots_line() {
    let dir = TempDir::new("loop");
    let ram = dir.0.join("ram");
    let boot = Boot::new(test_kernel("cbshim"))
        .initrd(parkboot_image())
        .smp(2)
        .memory_mib(MEMORY_MIB)
        .config_text(multiboot2_loop_config(3))
        .fw_cfg_file("opt/parkboot/kernel", test_kernel("testkernel"))
        .timeout(TIMEOUT);
    let outcome = ram_in_file(boot, &ram).run();
    outcome.assert_pass();

    let (addr, text) = find_console(&ram)
        .unwrap_or_else(|| panic!("no CBMEM console in guest RAM\n{}", outcome.report()));
    let (logged_addr, logged_size) = console_from_serial(&outcome);
    assert_eq!(addr, logged_addr, "parkboot logged another address");
    assert_eq!(
        u32::from_le_bytes(
            read_at(&mut File::open(&ram).unwrap(), addr, 4)[..]
                .try_into()
                .unwrap()
        ) as usize,
        logged_size
    );
    let lines = assert_starts_with_cbshim_then_parkboot(&text);
    assert_eq!(
        lines
            .last()
            .copied()
            .map(|l| l.ends_with("parkboot: result: pass")),
        Some(true),
        "{text}"
    );
    assert!(
        text.contains("entry 'test-kernel' iteration 3/3: back after"),
        "{text}"
    );
    // Exactly the serial text, timestamps included, in the same order: the lines
    // before the console was found were replayed, none was lost or added.
    assert_eq!(lines[1..], parkboot_serial_lines(&outcome)[..]);
}

#[test]
fn without_a_serial_port_parkboot_reaches_the_end_and_logs_to_cbmem() {
    let dir = TempDir::new("no-serial");
    let ram = dir.0.join("ram");
    let boot = Boot::new(test_kernel("cbshim"))
        .initrd(parkboot_image())
        .serial(false)
        .append("cbshim.serial=none")
        .smp(2)
        .memory_mib(MEMORY_MIB)
        .config_text(multiboot2_loop_config(2))
        .fw_cfg_file("opt/parkboot/kernel", test_kernel("testkernel"))
        .timeout(TIMEOUT);
    let outcome = ram_in_file(boot, &ram).run();
    assert_eq!(outcome.status, ExitStatusKind::Pass, "{}", outcome.report());
    assert!(
        outcome.serial.is_empty(),
        "no serial port, yet: {}",
        outcome.serial
    );

    let (_, text) = find_console(&ram).expect("a CBMEM console in guest RAM");
    let lines = assert_starts_with_cbshim_then_parkboot(&text);
    assert!(
        text.contains(
            "console: no UART answers at I/O 0x3f8 (line status reads 0xff): serial output off"
        ),
        "{text}"
    );
    assert!(
        text.contains("entry 'test-kernel' iteration 2/2: back after"),
        "{text}"
    );
    assert!(
        lines.last().unwrap().ends_with("parkboot: result: pass"),
        "{text}"
    );
}

#[test]
fn debian_kernel_runs_and_parkboot_log_survives_in_the_cbmem_console() {
    let dir = TempDir::new("linux");
    let dump = dir.0.join("cbmem-console");
    let config = "park = on\nself_check = on\non_finish = qemu-exit\n[entry linux]\nkernel = fw_cfg:opt/parkboot/kernel\ninitrd = fw_cfg:opt/parkboot/initrd\nformat = linux\ncmdline = \"console=ttyS0 panic=-1 quiet loglevel=4 parkboot.qemu_exit=on\"\niterations = 1\n";
    let mut console: Option<(u64, usize)> = None;
    let mut dumped = None;
    let outcome = Boot::new(test_kernel("cbshim"))
        .initrd(parkboot_image())
        .smp(2)
        .memory_mib(LINUX_MEMORY_MIB)
        .config_text(config)
        .fw_cfg_file("opt/parkboot/kernel", linux_kernel())
        .fw_cfg_file("opt/parkboot/initrd", linux_initrd())
        .monitor(true)
        .timeout(LINUX_TIMEOUT)
        .run_with(|line, ctl| {
            if line.contains("] CBMEM console at 0x") {
                console = console_from_line(line);
            }
            // Linux is up and its init ran: read the console out of guest memory now,
            // while Linux owns the machine.
            if line.contains("parkboot-linux: iteration ") {
                if let Some((addr, size)) = console {
                    dumped = Some(ctl.monitor(&format!(
                        "pmemsave {addr:#x} {} \"{}\"",
                        HEADER_BYTES + size,
                        dump.display()
                    )));
                }
                ctl.stop();
            }
        });
    assert!(
        outcome.find_line("parkboot-linux: iteration 1/").is_some(),
        "Linux did not come up\n{}",
        outcome.report()
    );
    let answer = dumped.unwrap_or_else(|| panic!("no CBMEM console logged\n{}", outcome.report()));
    let answer = answer.map_err(|e| e.to_string());
    assert_eq!(answer.as_deref().map(str::trim), Ok(""), "pmemsave failed");
    let text = decode(&std::fs::read(&dump).unwrap()).unwrap();
    let lines = assert_starts_with_cbshim_then_parkboot(&text);
    // parkboot's last line before the kernel ran (its summary so far), exactly as on the
    // serial port.
    let serial = parkboot_serial_lines(&outcome);
    let handoff = serial
        .iter()
        .rposition(|l| l.contains("] parkboot: summary: "))
        .unwrap_or_else(|| panic!("no hand-off line\n{}", outcome.report()));
    assert_eq!(lines.last().copied(), Some(serial[handoff]), "{text}");
    assert_eq!(lines[1..], serial[..=handoff]);
}

#[test]
fn a_cpu_exception_is_reported_in_the_cbmem_console_too() {
    let dir = TempDir::new("fault");
    let ram = dir.0.join("ram");
    let boot = Boot::new(test_kernel("cbshim"))
        .initrd(parkboot_image())
        .memory_mib(MEMORY_MIB)
        .config_text("fault_test = on\non_finish = qemu-exit\n")
        .timeout(TIMEOUT);
    let outcome = ram_in_file(boot, &ram).run();
    assert_eq!(outcome.status, ExitStatusKind::Fail, "{}", outcome.report());
    let (_, text) = find_console(&ram).expect("a CBMEM console in guest RAM");
    assert_starts_with_cbshim_then_parkboot(&text);
    // The exception path writes through the same console without a timestamp, and
    // the stop that follows still gets the lock.
    assert!(
        text.contains("\nparkboot: CPU exception 14 page fault (#PF) on the boot processor\n"),
        "{text}"
    );
    assert!(
        text.lines()
            .last()
            .is_some_and(|l| l.contains("parkboot: result: FAIL: CPU exception 14")),
        "{text}"
    );
}

#[test]
fn a_cpu_exception_while_a_line_is_logged_is_reported_in_the_cbmem_console_too() {
    let dir = TempDir::new("fault-while-logging");
    let ram = dir.0.join("ram");
    let boot = Boot::new(test_kernel("cbshim"))
        .initrd(parkboot_image())
        .memory_mib(MEMORY_MIB)
        .config_text("fault_test = while-logging\non_finish = qemu-exit\n")
        .timeout(TIMEOUT);
    let outcome = ram_in_file(boot, &ram).run();
    assert_eq!(outcome.status, ExitStatusKind::Fail, "{}", outcome.report());
    let (_, text) = find_console(&ram).expect("a CBMEM console in guest RAM");
    assert_starts_with_cbshim_then_parkboot(&text);
    // The fault interrupted a line: the exception path takes the console over, says
    // so after the unfinished line, and the report and the stop follow.
    assert!(
        text.contains(
            "while this line is written: \nparkboot: console lock taken over from the interrupted code\n\nparkboot: CPU exception 14 page fault (#PF) on the boot processor\n"
        ),
        "{text}"
    );
    assert!(
        text.lines()
            .last()
            .is_some_and(|l| l.contains("parkboot: result: FAIL: CPU exception 14")),
        "{text}"
    );
}
