//! Host tests of bzImage parsing, kernel and initrd placement and boot_params, over
//! synthetic images built by [`TestImage`] with the boot protocol's offsets written as numbers.

use super::*;
use crate::memory::{Lifetime, MemoryKind, MemoryRegion, GIB};
use std::path::PathBuf;

mod boot_params;
mod bzimage;
mod memory_placement;
mod real_kernel;

// Offsets below are written as numbers on purpose: they are the boot protocol's
// tables, checked independently of the structures above.

fn w8(image: &mut [u8], at: usize, v: u8) {
    image[at] = v;
}
fn w16(image: &mut [u8], at: usize, v: u16) {
    image[at..at + 2].copy_from_slice(&v.to_le_bytes());
}
fn w32(image: &mut [u8], at: usize, v: u32) {
    image[at..at + 4].copy_from_slice(&v.to_le_bytes());
}
fn w64(image: &mut [u8], at: usize, v: u64) {
    image[at..at + 8].copy_from_slice(&v.to_le_bytes());
}
fn r8(page: &[u8], at: usize) -> u8 {
    page[at]
}
fn r16(page: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(page[at..at + 2].try_into().unwrap())
}
fn r32(page: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(page[at..at + 4].try_into().unwrap())
}
fn r64(page: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(page[at..at + 8].try_into().unwrap())
}

/// A synthetic bzImage: a boot sector and setup code holding a setup header, then
/// a protected-mode part filled with a pattern.
#[derive(Clone)]
struct TestImage {
    setup_sects: u8,
    version: u16,
    xloadflags: u16,
    loadflags: u8,
    relocatable: u8,
    pref_address: u64,
    kernel_alignment: u32,
    init_size: u32,
    cmdline_size: u32,
    initrd_addr_max: u32,
    /// The jump's offset byte: the header ends at 0x202 plus this.
    jump_offset: u8,
    protected_mode_len: usize,
    version_string: Option<&'static [u8]>,
    version_pointer: u16,
    /// `syssize`; `None` declares exactly the protected-mode part built.
    syssize: Option<u32>,
    payload_offset: u32,
    payload_length: u32,
}

impl Default for TestImage {
    fn default() -> Self {
        TestImage {
            setup_sects: 4,
            version: 0x020F,
            xloadflags: XLF_KERNEL_64 | XLF_CAN_BE_LOADED_ABOVE_4G,
            loadflags: 0x81,
            relocatable: 1,
            pref_address: 0x100_0000,
            kernel_alignment: 0x20_0000,
            init_size: 0x240_0000,
            cmdline_size: 2047,
            initrd_addr_max: 0x7fff_ffff,
            jump_offset: 0x6a,
            protected_mode_len: 0x3000,
            version_string: Some(b"6.12.0-test (parkboot@test) #1 SMP"),
            version_pointer: 0x300,
            syssize: None,
            payload_offset: 0x2cc,
            payload_length: 0x2000,
        }
    }
}

impl TestImage {
    fn setup_bytes(&self) -> usize {
        let sects = if self.setup_sects == 0 {
            4
        } else {
            self.setup_sects as usize
        };
        (sects + 1) * 512
    }

    fn build(&self) -> Vec<u8> {
        let setup_bytes = self.setup_bytes();
        let mut image = vec![0u8; setup_bytes + self.protected_mode_len];
        // Garbage where boot_params keeps its own fields, which a loader must not
        // copy: the sentinel, and code after the header.
        w8(&mut image, 0x1ef, 0xff);
        for b in &mut image[0x26c..0x290] {
            *b = 0xcc;
        }
        w8(&mut image, 0x1f1, self.setup_sects);
        let syssize = self
            .syssize
            .unwrap_or((self.protected_mode_len / 16) as u32);
        w32(&mut image, 0x1f4, syssize);
        w32(&mut image, 0x248, self.payload_offset);
        w32(&mut image, 0x24c, self.payload_length);
        w16(&mut image, 0x1fa, 0xffff);
        w16(&mut image, 0x1fe, 0xaa55);
        w8(&mut image, 0x200, 0xeb);
        w8(&mut image, 0x201, self.jump_offset);
        image[0x202..0x206].copy_from_slice(b"HdrS");
        w16(&mut image, 0x206, self.version);
        w16(&mut image, 0x20e, self.version_pointer);
        w8(&mut image, 0x211, self.loadflags);
        w32(&mut image, 0x214, 0x10_0000);
        w32(&mut image, 0x22c, self.initrd_addr_max);
        w32(&mut image, 0x230, self.kernel_alignment);
        w8(&mut image, 0x234, self.relocatable);
        w8(&mut image, 0x235, 21);
        w16(&mut image, 0x236, self.xloadflags);
        w32(&mut image, 0x238, self.cmdline_size);
        w64(&mut image, 0x258, self.pref_address);
        w32(&mut image, 0x260, self.init_size);
        w32(&mut image, 0x264, 0x190);
        if self.jump_offset >= 0x6a {
            w32(&mut image, 0x268, 0x12_3400);
        }
        if let Some(s) = self.version_string {
            let at = self.version_pointer as usize + 0x200;
            image[at..at + s.len()].copy_from_slice(s);
            image[at + s.len()] = 0;
        }
        for (i, b) in image[setup_bytes..].iter_mut().enumerate() {
            *b = (i % 251) as u8 | 1;
        }
        image
    }
}

fn image() -> Vec<u8> {
    TestImage::default().build()
}

fn region(start: u64, size: u64, kind: MemoryKind) -> MemoryRegion {
    MemoryRegion { start, size, kind }
}

fn ram(start: u64, size: u64) -> MemoryRegion {
    region(start, size, MemoryKind::Usable)
}

/// A PC-like map: low RAM, the BIOS area, RAM from 1 MiB to 2 GiB, ACPI tables,
/// firmware-reserved memory, and 4 GiB of RAM above 4 GiB.
fn pc_map() -> MemoryMap {
    MemoryMap::new(&[
        ram(0, 0x9fc00),
        region(0xf0000, 0x10000, MemoryKind::Reserved),
        ram(MIB, 2 * GIB - MIB),
        region(2 * GIB, MIB, MemoryKind::AcpiReclaim),
        region(2 * GIB + MIB, MIB, MemoryKind::Reserved),
        ram(FOUR_GIB, FOUR_GIB),
    ])
    .unwrap()
}

fn reserve(map: &mut MemoryMap, start: u64, size: u64, name: &'static str) {
    map.reserve(start, size, name, ReportAs::Reserved, Lifetime::Boot)
        .unwrap();
}

fn args(e820: &[(u64, u64, u32)]) -> BootArgs<'_> {
    BootArgs {
        cmdline_addr: 0x1_2345_6000,
        cmdline_len: 2047,
        initrd: Some((0x2_0000_1000, 0x1_0000_0123)),
        rsdp: 0xf_5250,
        e820,
    }
}
