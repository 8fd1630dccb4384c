//! Property tests for every parser of untrusted bytes: arbitrary inputs and mutations of
//! valid samples (bit flips, interesting integers, cuts, growth, copied chunks, and
//! checksums fixed up afterwards half of the time so the mutation reaches past the
//! checksum). Each parser must return `Ok` or a named error: never panic, never read
//! outside its input (slices are bounds-checked, and the fake physical memory answers
//! only inside the buffer it was given).
//!
//! A small seeded generator (no external crate): every run covers the same cases, and
//! a failure names the seed and case to replay. `PARKBOOT_PROPTEST_CASES` scales the
//! case count (default keeps the whole file to a few seconds); `scripts/fuzz` runs the
//! same targets coverage-guided for longer.
// Test code and its harness: a failed expectation is a panic.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

use parkboot::config;
use parkboot::kernels::{gzip, linux, multiboot2};
use parkboot::memory::{MemoryKind, MemoryRegion};
use parkboot::platform::acpi::{self, SdtHeader};
use parkboot::platform::cbfs::Cbfs;
use parkboot::platform::{coreboot, fw_cfg, pvh};
use parkboot::platform::{BootSource, PhysicalMemory, Platform};
use std::collections::HashMap;

/// xorshift64*: deterministic and good enough to pick mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

/// Integers parsers trip over: zero, one, limits, powers of two and their neighbours.
fn interesting(rng: &mut Rng, len: usize) -> u64 {
    let values = [
        0,
        1,
        2,
        7,
        8,
        0x7f,
        0x80,
        0xff,
        0x100,
        0xfff,
        0x1000,
        0x7fff_ffff,
        0x8000_0000,
        0xffff_fff0,
        0xffff_ffff,
        u64::MAX,
        len as u64,
        (len as u64).wrapping_sub(1),
        len as u64 + 1,
    ];
    values[rng.below(values.len())]
}

/// One to four random mutations of `sample`.
fn mutate(rng: &mut Rng, sample: &[u8]) -> Vec<u8> {
    let mut data = sample.to_vec();
    for _ in 0..1 + rng.below(4) {
        let len = data.len();
        match rng.below(8) {
            0 if len > 0 => {
                let at = rng.below(len);
                data[at] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let at = rng.below(len);
                data[at] = interesting(rng, len) as u8;
            }
            2 if len >= 4 => {
                // A 32-bit field, usually aligned as header fields are.
                let at = rng.below(len - 3) & !if rng.below(4) == 0 { 0 } else { 3 };
                let value = interesting(rng, len) as u32;
                data[at..at + 4].copy_from_slice(&value.to_le_bytes());
            }
            3 if len >= 8 => {
                let at = rng.below(len - 7) & !7;
                let value = interesting(rng, len);
                data[at..at + 8].copy_from_slice(&value.to_le_bytes());
            }
            4 => data.truncate(rng.below(len + 1)),
            5 => {
                let extra = rng.below(64);
                let more = rng.bytes(extra);
                data.extend(more);
            }
            6 if len > 1 => {
                let from = rng.below(len);
                let to = rng.below(len);
                let n = rng.below(len - from.max(to)).min(64);
                data.copy_within(from..from + n, to);
            }
            _ if len > 0 => {
                let at = rng.below(len);
                data[at] = rng.next() as u8;
            }
            _ => data.push(rng.next() as u8),
        }
    }
    data
}

/// How many cases each target runs.
fn cases(default: usize) -> usize {
    std::env::var("PARKBOOT_PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(default)
}

/// Runs `check` on `count` inputs: arbitrary bytes for a quarter, mutated samples for
/// the rest (fixed up by `fix` half of the time). A panic names the case.
fn run(
    name: &str,
    seed: u64,
    count: usize,
    samples: &[Vec<u8>],
    max_arbitrary: usize,
    fix: impl Fn(&mut [u8]),
    check: impl Fn(&[u8]),
) {
    let mut rng = Rng(seed);
    for case in 0..count {
        let input = if case % 4 == 0 || samples.is_empty() {
            let len = rng.below(max_arbitrary + 1);
            rng.bytes(len)
        } else {
            let sample = &samples[rng.below(samples.len())];
            let mut data = mutate(&mut rng, sample);
            if rng.below(2) == 0 {
                fix(&mut data);
            }
            data
        };
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(&input)));
        if result.is_err() {
            let path = std::env::temp_dir().join(format!("parkboot-{name}-{seed:x}-{case}.bin"));
            std::fs::write(&path, &input).unwrap();
            panic!(
                "{name}: case {case} (seed {seed:#x}) panicked; input saved to {}",
                path.display()
            );
        }
    }
}

/// Physical memory for parsers that read through [`PhysicalMemory`]: `data` at `base`,
/// nothing anywhere else.
struct Memory {
    base: u64,
    data: Vec<u8>,
}

impl PhysicalMemory for Memory {
    fn bytes(&self, addr: u64, len: usize) -> Option<&[u8]> {
        let start = usize::try_from(addr.checked_sub(self.base)?).ok()?;
        self.data.get(start..start.checked_add(len)?)
    }
}

const BASE: u64 = 0x10_0000;

fn ram(start: u64, size: u64) -> MemoryRegion {
    MemoryRegion {
        start,
        size,
        kind: MemoryKind::Usable,
    }
}

// ---- coreboot table ----------------------------------------------------------------

fn coreboot_sample() -> Vec<u8> {
    let mut buf = vec![0u8; 512];
    let len = coreboot::builder::TableBuilder::new(&mut buf)
        .memory(&[ram(0, 0x9_f000), ram(BASE, 0x3ff0_0000)])
        .acpi_rsdp(0xf_5250)
        .finish()
        .unwrap();
    buf.truncate(len);
    buf
}

/// Recomputes both coreboot checksums (header: 24 bytes; table: `table_bytes` after).
fn fix_coreboot(data: &mut [u8]) {
    if data.len() < 24 {
        return;
    }
    let table_bytes = u32::from_le_bytes(data[12..16].try_into().unwrap()) as usize;
    let end = 24usize.saturating_add(table_bytes).min(data.len());
    let table = coreboot::ip_checksum(&data[24..end]) as u32;
    data[16..20].copy_from_slice(&table.to_le_bytes());
    data[8..12].fill(0);
    let header = coreboot::ip_checksum(&data[..24]) as u32;
    data[8..12].copy_from_slice(&header.to_le_bytes());
}

#[test]
fn coreboot_table_never_panics() {
    let sample = coreboot_sample();
    let mut valid = Platform::new(BootSource::Coreboot, BASE);
    coreboot::parse(
        &Memory {
            base: BASE,
            data: sample.clone(),
        },
        BASE,
        &mut valid,
    )
    .expect("the sample parses");
    run(
        "coreboot",
        0xc0de_b007,
        cases(3000),
        &[sample],
        256,
        fix_coreboot,
        |input| {
            let mem = Memory {
                base: BASE,
                data: input.to_vec(),
            };
            let mut platform = Platform::new(BootSource::Coreboot, BASE);
            let _ = coreboot::parse(&mem, BASE, &mut platform);
            let _ = coreboot::find_table(&mem, Some(BASE));
        },
    );
}

// ---- PVH start info ----------------------------------------------------------------

fn pvh_sample() -> Vec<u8> {
    let memory = [ram(0, 0x9_f000), ram(BASE, 0x3ff0_0000)];
    let modules = [parkboot::platform::Module {
        start: 0x20_0000,
        size: 0x1000,
        cmdline: 0,
    }];
    let mut buf = vec![0u8; 1024];
    let len = pvh::StartInfoBuilder::new()
        .version(1)
        .cmdline("console=ttyS0 parkboot.on_finish=qemu-exit")
        .rsdp(0xf_5250)
        .modules(&modules)
        .memory(&memory)
        .write(&mut buf, BASE)
        .unwrap();
    buf.truncate(len);
    buf
}

#[test]
fn pvh_start_info_never_panics() {
    let sample = pvh_sample();
    let mut valid = Platform::new(BootSource::Pvh, BASE);
    pvh::parse(
        &Memory {
            base: BASE,
            data: sample.clone(),
        },
        BASE,
        &mut valid,
    )
    .expect("the sample parses");
    run(
        "pvh",
        0x09e4_5eed,
        cases(3000),
        &[sample],
        256,
        |_| {},
        |input| {
            let mem = Memory {
                base: BASE,
                data: input.to_vec(),
            };
            let mut platform = Platform::new(BootSource::Pvh, BASE);
            let _ = pvh::parse(&mem, BASE, &mut platform);
        },
    );
}

// ---- fw_cfg directory --------------------------------------------------------------

/// A port-I/O-only fw_cfg device whose file directory is the input.
struct Device {
    items: HashMap<u16, Vec<u8>>,
    /// The selected item's bytes.
    current: Vec<u8>,
    offset: usize,
}

impl fw_cfg::FwCfgPorts for Device {
    fn select(&mut self, key: u16) {
        self.current = self.items.get(&key).cloned().unwrap_or_default();
        self.offset = 0;
    }
    fn read_data(&mut self, buf: &mut [u8]) {
        for b in buf.iter_mut() {
            *b = self.current.get(self.offset).copied().unwrap_or(0);
            self.offset += 1;
        }
    }
    fn dma_signature(&mut self) -> u64 {
        0
    }
    unsafe fn dma(&mut self, _access_phys: u64) {
        panic!("no DMA on this device");
    }
}

fn fw_cfg_directory_sample() -> Vec<u8> {
    let files = [
        ("opt/parkboot/config", 0x20u16, 300u32),
        ("etc/acpi/tables", 0x21, 4096),
    ];
    let mut dir = (files.len() as u32).to_be_bytes().to_vec();
    for (name, key, size) in files {
        dir.extend(size.to_be_bytes());
        dir.extend(key.to_be_bytes());
        dir.extend([0, 0]);
        let mut field = [0u8; 56];
        field[..name.len()].copy_from_slice(name.as_bytes());
        dir.extend(field);
    }
    dir
}

#[test]
fn fw_cfg_directory_never_panics() {
    let sample = fw_cfg_directory_sample();
    // Fewer cases: a hostile count makes each case read up to FW_CFG_MAX_FILES
    // directory entries through the (byte-wise) port interface.
    run(
        "fw_cfg",
        0x0f00_dcf6,
        cases(3000) / 12,
        &[sample],
        256,
        |_| {},
        |input| {
            let mut items = HashMap::new();
            items.insert(fw_cfg::FW_CFG_SIGNATURE, b"QEMU".to_vec());
            items.insert(fw_cfg::FW_CFG_ID, 1u32.to_le_bytes().to_vec());
            items.insert(fw_cfg::FW_CFG_FILE_DIR, input.to_vec());
            items.insert(0x20, b"park = on\n".to_vec());
            let device = Device {
                items,
                current: Vec::new(),
                offset: 0,
            };
            let mut cfg = fw_cfg::FwCfg::probe(device).expect("the device answers");
            if let Ok(files) = cfg.files() {
                for _ in files.take(16) {}
            }
            if let Ok(Some(entry)) = cfg.find("opt/parkboot/config") {
                let mut buf = [0u8; 64];
                let _ = cfg.read_entry(&entry, &mut buf);
            }
        },
    );
}

// ---- ACPI: RSDP, XSDT, MADT --------------------------------------------------------

const RSDP_AT: u64 = BASE;
const XSDT_AT: u64 = BASE + 0x40;
const MADT_AT: u64 = BASE + 0x100;

fn sdt_template(signature: &[u8; 4]) -> SdtHeader {
    SdtHeader {
        signature: *signature,
        length: 0,
        revision: 1,
        checksum: 0,
        oem_id: *b"PARKBT",
        oem_table_id: *b"HOSTILE ",
        oem_revision: 1,
        creator_id: *b"TEST",
        creator_revision: 1,
    }
}

fn madt_sample() -> Vec<u8> {
    let mut madt = vec![0u8; 44];
    sdt_template(b"APIC").write(&mut madt).unwrap();
    madt[36..40].copy_from_slice(&0xfee0_0000u32.to_le_bytes());
    madt[40..44].copy_from_slice(&1u32.to_le_bytes());
    for id in 0..4u8 {
        // Processor Local APIC: type 0, length 8, UID, APIC ID, flags (enabled).
        madt.extend([0, 8, id, id, 1, 0, 0, 0]);
    }
    // Multiprocessor Wakeup, version 1 with a ResetVector.
    madt.extend([0x10, 24, 1, 0, 0, 0, 0, 0]);
    madt.extend(0x3ffd_7000u64.to_le_bytes());
    madt.extend(0x3ffc_c000u64.to_le_bytes());
    fix_sdt(&mut madt);
    madt
}

/// Sets an SDT's length to the data and makes its bytes sum to zero.
fn fix_sdt(data: &mut [u8]) {
    if data.len() < 36 {
        return;
    }
    let len = data.len() as u32;
    data[4..8].copy_from_slice(&len.to_le_bytes());
    fix_sdt_checksum(data);
}

fn fix_sdt_checksum(data: &mut [u8]) {
    if data.len() < 10 {
        return;
    }
    data[9] = 0;
    let sum = acpi::checksum(data);
    data[9] = sum.wrapping_neg();
}

/// RSDP, XSDT and MADT at their addresses in one buffer.
fn acpi_sample() -> Vec<u8> {
    let mut data = vec![0u8; (MADT_AT - BASE) as usize];
    let mut rsdp = [0u8; 36];
    acpi::build_rsdp(*b"PARKBT", 0, XSDT_AT, &mut rsdp).unwrap();
    data[..36].copy_from_slice(&rsdp);
    let mut xsdt = [0u8; 44];
    acpi::build_xsdt(&sdt_template(b"XSDT"), &[MADT_AT], &mut xsdt).unwrap();
    let x = (XSDT_AT - BASE) as usize;
    data[x..x + 44].copy_from_slice(&xsdt);
    data.extend(madt_sample());
    data
}

/// Fixes the RSDP's two checksums and the XSDT's.
fn fix_acpi(data: &mut [u8]) {
    if data.len() >= 36 {
        data[8] = 0;
        let sum = acpi::checksum(&data[..20]);
        data[8] = sum.wrapping_neg();
        data[32] = 0;
        let sum = acpi::checksum(&data[..36]);
        data[32] = sum.wrapping_neg();
    }
    let x = (XSDT_AT - BASE) as usize;
    if data.len() >= x + 44 {
        fix_sdt_checksum(&mut data[x..x + 44]);
    }
    let m = (MADT_AT - BASE) as usize;
    if data.len() > m + 10 {
        let len = u32::from_le_bytes(data[m + 4..m + 8].try_into().unwrap()) as usize;
        let end = (m + len).min(data.len());
        fix_sdt_checksum(&mut data[m..end]);
    }
}

#[test]
fn acpi_rsdp_xsdt_and_madt_never_panic() {
    let sample = acpi_sample();
    let mem = Memory {
        base: BASE,
        data: sample.clone(),
    };
    let tables = acpi::Tables::new(&mem, RSDP_AT).expect("the sample parses");
    let madt = tables.table_bytes(&mem, acpi::Signature::MADT).unwrap();
    acpi::parse_madt(madt).expect("the sample MADT parses");
    run(
        "acpi",
        0xac91_7ab1,
        cases(3000),
        &[sample],
        512,
        fix_acpi,
        |input| {
            let mem = Memory {
                base: BASE,
                data: input.to_vec(),
            };
            let _ = acpi::parse_rsdp(&mem, RSDP_AT);
            let _ = acpi::find_rsdp(&mem, BASE, BASE + input.len() as u64);
            if let Ok(tables) = acpi::Tables::new(&mem, RSDP_AT) {
                if let Some(madt) = tables.table_bytes(&mem, acpi::Signature::MADT) {
                    let _ = acpi::parse_madt(madt);
                }
                let mut out = vec![0u8; 8192];
                let _ = acpi::rewrite_tables(
                    &mem,
                    RSDP_AT,
                    &mut out,
                    0x4000_0000,
                    0x3ffd_7000,
                    0x3ffc_c000,
                );
            }
        },
    );
    // The MADT parser straight on bytes.
    run(
        "madt",
        0x3ad7,
        cases(3000),
        &[madt_sample()],
        256,
        fix_sdt,
        |input| {
            let _ = acpi::parse_madt(input);
            if let Ok(entries) = acpi::madt_entries(input) {
                for _ in entries.take(512) {}
            }
            let mut out = vec![0u8; input.len() + 64];
            let _ = acpi::madt_with_wakeup(input, &mut out, 0x3ffd_7000, 0x3ffc_c000, &[1, 7]);
        },
    );
}

// ---- bzImage header ----------------------------------------------------------------

/// A bzImage shaped like Debian's: boot sector, 4 setup sectors, a version string, a
/// protected-mode part that `syssize` declares exactly.
fn bzimage_sample() -> Vec<u8> {
    let setup = 5 * 512;
    let pm = 0x2000;
    let mut image = vec![0u8; setup + pm];
    let w16 = |image: &mut Vec<u8>, at: usize, v: u16| {
        image[at..at + 2].copy_from_slice(&v.to_le_bytes())
    };
    let w32 = |image: &mut Vec<u8>, at: usize, v: u32| {
        image[at..at + 4].copy_from_slice(&v.to_le_bytes())
    };
    image[0x1f1] = 4;
    w32(&mut image, 0x1f4, (pm / 16) as u32);
    w16(&mut image, 0x1fe, 0xaa55);
    image[0x200] = 0xeb;
    image[0x201] = 0x6a;
    image[0x202..0x206].copy_from_slice(b"HdrS");
    w16(&mut image, 0x206, 0x020f);
    w16(&mut image, 0x20e, 0x300);
    image[0x211] = 0x01;
    w32(&mut image, 0x22c, 0x7fff_ffff);
    w32(&mut image, 0x230, 0x20_0000);
    image[0x234] = 1;
    w16(&mut image, 0x236, 0x3);
    w32(&mut image, 0x238, 2047);
    w32(&mut image, 0x248, 0x100);
    w32(&mut image, 0x24c, 0x1000);
    image[0x258..0x260].copy_from_slice(&0x100_0000u64.to_le_bytes());
    w32(&mut image, 0x260, 0x40_0000);
    let version = b"6.12.0-hostile (parkboot@test) #1 SMP\0";
    image[0x500..0x500 + version.len()].copy_from_slice(version);
    image
}

#[test]
fn bzimage_header_never_panics() {
    let sample = bzimage_sample();
    linux::parse(&sample).expect("the sample parses");
    run(
        "bzimage",
        0x0b21_3a9e,
        cases(4000),
        &[sample],
        0x800,
        |_| {},
        |input| {
            if let Ok(kernel) = linux::parse(input) {
                // Everything a caller derives from a parsed header stays in the input.
                assert!(kernel.protected_mode.end <= input.len());
                assert!(kernel.setup_header_end <= kernel.setup_bytes);
                let _ = kernel.memory_size();
                let _ = kernel.kernel_version.mailbox_handback();
                let mut page = [0u8; linux::BOOT_PARAMS_SIZE];
                let args = linux::BootArgs {
                    cmdline_addr: 0x2_0000,
                    cmdline_len: 16,
                    initrd: Some((0x800_0000, 0x1000)),
                    rsdp: 0xf_5250,
                    e820: &[(0, 0x9_fc00, 1), (BASE, 0x3ff0_0000, 1)],
                };
                let _ = linux::build_boot_params(&kernel, input, &mut page, &args);
            }
        },
    );
}

// ---- multiboot2 header and ELF plan ------------------------------------------------

/// The park-aware multiboot2 test kernel when it has been built, and a header-only
/// image that drives the ELF parser with whatever follows.
fn multiboot2_samples() -> Vec<Vec<u8>> {
    let mut header = vec![0u8; 32];
    let magic = multiboot2::HEADER_MAGIC;
    header[0..4].copy_from_slice(&magic.to_le_bytes());
    header[8..12].copy_from_slice(&24u32.to_le_bytes());
    header[16..24].copy_from_slice(&[0, 0, 0, 0, 8, 0, 0, 0]);
    fix_multiboot2(&mut header);
    let mut samples = vec![header];
    let kernel = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target/x86_64-unknown-none/release/testkernel");
    if let Ok(bytes) = std::fs::read(kernel) {
        samples.push(bytes);
    }
    samples
}

/// Fixes the checksum of the first multiboot2 header in the image.
fn fix_multiboot2(data: &mut [u8]) {
    let Some(at) = multiboot2::find_header(data) else {
        return;
    };
    if data.len() < at + 16 {
        return;
    }
    let word = |i: usize| u32::from_le_bytes(data[at + i..at + i + 4].try_into().unwrap());
    let sum = word(0).wrapping_add(word(4)).wrapping_add(word(8));
    data[at + 12..at + 16].copy_from_slice(&0u32.wrapping_sub(sum).to_le_bytes());
}

#[test]
fn multiboot2_header_and_elf_plan_never_panic() {
    let samples = multiboot2_samples();
    run(
        "multiboot2",
        0x03b2_0e1f,
        cases(3000),
        &samples,
        0x400,
        fix_multiboot2,
        |input| {
            let _ = multiboot2::find_header(input);
            if let Ok(plan) = multiboot2::plan(input) {
                for segment in plan.segments.iter() {
                    assert!(
                        segment.file_offset + segment.file_size <= input.len(),
                        "{segment:?}"
                    );
                    assert!(segment.mem_size >= segment.file_size as u64);
                }
            }
        },
    );
}

// ---- gzip --------------------------------------------------------------------------

fn gzip_sample() -> Vec<u8> {
    let data: Vec<u8> = (0..6000u32)
        .map(|i| (i * 7 % 251) as u8 ^ (i / 300) as u8)
        .collect();
    let mut gz = vec![0x1f, 0x8b, 8, 0x08, 0, 0, 0, 0, 0, 3];
    gz.extend(b"kernel\0");
    gz.extend(miniz_oxide::deflate::compress_to_vec(&data, 6));
    gz.extend(gzip::crc32(&data).to_le_bytes());
    gz.extend((data.len() as u32).to_le_bytes());
    gz
}

#[test]
fn gzip_never_panics_and_both_passes_agree() {
    let sample = gzip_sample();
    assert_eq!(gzip::inflated_size(&sample), Ok(6000));
    run(
        "gzip",
        0x921f,
        cases(3000),
        &[sample],
        0x200,
        |_| {},
        |input| {
            let counted = gzip::inflated_size(input);
            if let Ok(size) = counted {
                // What the counting pass accepts, inflate accepts into exactly that room.
                let mut out = vec![0u8; size];
                assert_eq!(gzip::inflate(input, &mut out), Ok(size));
            } else {
                let mut out = vec![0u8; 8192];
                // What the counting pass refuses, inflate refuses too.
                assert!(gzip::inflate(input, &mut out).is_err(), "{counted:?}");
            }
        },
    );
}

// ---- configuration -----------------------------------------------------------------

#[test]
fn config_parser_never_panics() {
    let samples: Vec<Vec<u8>> = [
        include_str!("../../configs/default.cfg"),
        include_str!("../../configs/linux.cfg"),
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    for sample in &samples {
        config::parse(std::str::from_utf8(sample).unwrap()).expect("shipped configs parse");
    }
    run(
        "config",
        0x000c_0f16,
        cases(3000),
        &samples,
        512,
        |_| {},
        |input| {
            let text = String::from_utf8_lossy(input);
            if let Ok(mut config) = config::parse(&text) {
                let _ = config.apply_cmdline(&text);
            }
        },
    );
}

/// CBFS images made by Debian's cbfstool (raw, LZMA, LZ4, SHA-256 attributes, a payload).
fn cbfs_samples() -> Vec<Vec<u8>> {
    vec![
        include_bytes!("../testdata/cbfs/plain.bin").to_vec(),
        include_bytes!("../testdata/cbfs/sha256.bin").to_vec(),
        include_bytes!("../testdata/cbfs/payload.bin").to_vec(),
    ]
}

/// Walks every file of a CBFS image and reads each one: headers, attributes, hashes
/// and the LZMA and LZ4 decoders all see the mutated bytes.
fn read_every_cbfs_file(input: &[u8]) {
    /// Output buffers are capped: a mutated size field may claim gigabytes.
    const MAX_OUTPUT: u64 = 1 << 20;
    let cbfs = Cbfs::from_bytes(input, 0);
    for file in cbfs.files().map_while(Result::ok) {
        if let Ok(size) = file.size() {
            let mut out = vec![0u8; size.min(MAX_OUTPUT) as usize];
            let _ = file.read_into(&mut out);
        }
        let _ = cbfs.find(file.name);
    }
}

#[test]
fn cbfs_reader_never_panics() {
    let samples = cbfs_samples();
    for sample in &samples {
        assert!(
            Cbfs::from_bytes(sample, 0).files().all(|f| f.is_ok()),
            "a cbfstool image walks cleanly"
        );
    }
    run(
        "cbfs",
        0x00cb_f500,
        cases(1500),
        &samples,
        4096,
        |_| {},
        read_every_cbfs_file,
    );
}

/// Writes the valid samples above as the fuzzers' seed corpora (fuzz/corpus/TARGET/):
/// `PARKBOOT_WRITE_FUZZ_SEEDS=1 cargo test -p parkboot --test hostile_inputs -- --ignored`.
#[test]
#[ignore = "writes fuzz/corpus; run when the samples change"]
fn write_fuzz_seeds() {
    if std::env::var_os("PARKBOOT_WRITE_FUZZ_SEEDS").is_none() {
        return;
    }
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus");
    let mut acpi_only_rsdp = acpi_sample();
    acpi_only_rsdp.truncate(36);
    let seeds: Vec<(&str, Vec<u8>)> = vec![
        ("coreboot_table", coreboot_sample()),
        ("pvh_start_info", pvh_sample()),
        ("fw_cfg_directory", fw_cfg_directory_sample()),
        ("acpi_tables", acpi_sample()),
        ("acpi_tables", acpi_only_rsdp),
        ("madt", madt_sample()),
        ("bzimage", bzimage_sample()),
        ("multiboot2_plan", multiboot2_samples().remove(0)),
        ("gzip", gzip_sample()),
        ("cbfs", cbfs_samples().remove(1)),
        (
            "config_text",
            include_bytes!("../../configs/default.cfg").to_vec(),
        ),
        (
            "config_text",
            include_bytes!("../../configs/linux.cfg").to_vec(),
        ),
    ];
    for (i, (target, bytes)) in seeds.iter().enumerate() {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("seed-{i}")), bytes).unwrap();
    }
}
