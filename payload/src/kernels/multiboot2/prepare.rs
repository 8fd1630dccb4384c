//! Preparing a multiboot2 hand-off: reserving and filling the kernel's segments, its
//! module and its boot information, through region handles, so the bare-metal binary
//! only has to enter the kernel (and host tests check every byte on fake memory).

use super::*;
use crate::memory::bulk;
use crate::memory::region::RegionMemory;
use crate::memory::{AllocationRequest, Lifetime, MemoryError, PAGE_SIZE};

/// Room for the multiboot2 boot information parkboot builds (memory map included).
pub const BOOT_INFO_BYTES: u64 = 16 * 1024;
/// Size of an ACPI 2.0+ RSDP, what the boot information's tag 15 copies.
pub const RSDP_V2_BYTES: usize = 36;

/// Reservation names of what [`prepare`] places.
pub const SEGMENT_NAME: &str = "multiboot2 kernel segment";
pub const MODULE_NAME: &str = "multiboot2 module";
pub const BOOT_INFO_NAME: &str = "multiboot2 boot information";

/// What the kernel is handed besides its own image.
pub struct Handoff<'a> {
    pub cmdline: &'a str,
    pub loader_name: &'a str,
    /// The one module (an initrd), loaded below 4 GiB, with the command line "initrd".
    pub module: Option<&'a [u8]>,
    /// parkboot's own tag, when CPUs are parked.
    pub parkboot: Option<Multiboot2ParkbootTag>,
    /// The ACPI 2.0+ RSDP the kernel gets (tag 15): the one parkboot built or the
    /// platform's.
    pub rsdp: &'a [u8],
}

/// Where [`prepare`] put things.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Prepared {
    /// Physical address of the boot information (the kernel's `ebx`).
    pub boot_info: u64,
    /// Its size in bytes.
    pub boot_info_len: usize,
    /// The module's physical range `(start, len)`.
    pub module: Option<(u64, u64)>,
}

/// The end of each phase of the preparation, for the loop's per-phase timing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Segments and module copied, the boot information begun.
    Copied,
    /// Memory information and parkboot's tag written.
    BootInfo,
    /// The RSDP copied.
    Acpi,
}

/// Why a multiboot2 hand-off could not be prepared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PrepareError {
    /// A segment, the module or the boot information found no room.
    Memory(MemoryError),
    /// The image does not fit the plan (a plan made for another image):
    /// [`Mb2Error::SegmentPastFile`].
    Image(Mb2Error),
    /// The boot information could not be laid out.
    BootInfo(Mb2Error),
}

impl From<MemoryError> for PrepareError {
    fn from(e: MemoryError) -> Self {
        PrepareError::Memory(e)
    }
}

impl fmt::Display for PrepareError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PrepareError::Memory(e) => write!(f, "{e}"),
            PrepareError::Image(e) => write!(f, "{e}"),
            PrepareError::BootInfo(e) => write!(f, "building the boot information: {e}"),
        }
    }
}

/// Loads `image` as `plan` says and builds its boot information, all in memory taken
/// from `map` for this boot ([`Lifetime::Boot`], shown to the kernel as usable):
///
/// 1. every segment is reserved at its address first, so a clash with parkboot's
///    image, the park region or firmware memory is an error before anything is
///    copied; then each gets its file bytes and zeros up to its memory size;
/// 2. the module is copied to the highest free pages below 4 GiB;
/// 3. the boot information ([`BOOT_INFO_BYTES`], below 4 GiB) gets the command line,
///    loader name, module, basic meminfo, the memory map as the kernel sees it (the
///    boot information's own pages included), parkboot's tag and the RSDP.
///
/// `phase` is called at the end of each [`Phase`].
pub fn prepare(
    map: &mut MemoryMap,
    memory: &mut impl RegionMemory,
    image: &[u8],
    plan: &LoadPlan,
    handoff: &Handoff,
    phase: &mut impl FnMut(Phase),
) -> Result<Prepared, PrepareError> {
    for segment in plan.segments.iter() {
        map.reserve(
            segment.dest,
            segment.mem_size.max(1),
            SEGMENT_NAME,
            ReportAs::Usable,
            Lifetime::Boot,
        )?;
    }
    for (index, segment) in plan.segments.iter().enumerate() {
        let data = image.get(segment.file_range()).ok_or(PrepareError::Image(
            Mb2Error::SegmentPastFile {
                index,
                dest: segment.dest,
                end: segment.end(),
                file_offset: segment.file_offset as u64,
                file_end: segment.file_range().end as u64,
                file_size: image.len(),
            },
        ))?;
        let (file, zeros) = map
            .region(segment.dest, segment.mem_size)?
            .split_at(segment.file_size as u64)?;
        bulk::copy(memory.bytes(file), data);
        bulk::zero(memory.bytes(zeros));
    }
    let module = match handoff.module {
        Some(bytes) => {
            let start = map.allocate(AllocationRequest {
                size: (bytes.len() as u64).max(1),
                align: PAGE_SIZE,
                min: ONE_MIB,
                max: FOUR_GIB,
                name: MODULE_NAME,
                report_as: ReportAs::Usable,
                lifetime: Lifetime::Boot,
            })?;
            bulk::copy(memory.bytes(map.region(start, bytes.len() as u64)?), bytes);
            Some((start, bytes.len() as u64))
        }
        None => None,
    };
    let boot_info = map.allocate(AllocationRequest {
        size: BOOT_INFO_BYTES,
        align: PAGE_SIZE,
        min: ONE_MIB,
        max: FOUR_GIB,
        name: BOOT_INFO_NAME,
        report_as: ReportAs::Usable,
        lifetime: Lifetime::Boot,
    })?;
    let meminfo = basic_meminfo(map);
    let buf = memory.bytes(map.region(boot_info, BOOT_INFO_BYTES)?);
    let mut info = InfoBuilder::new(buf);
    info.cmdline(handoff.cmdline)
        .loader_name(handoff.loader_name);
    if let Some((start, len)) = module {
        info.module(start as u32, (start + len) as u32, "initrd");
    }
    phase(Phase::Copied);
    info.basic_meminfo(meminfo.lower_kib, meminfo.upper_kib);
    info.memory_map(
        map.kernel_view()
            .map(|(start, size, report)| (start, size, report.multiboot2_type())),
    );
    if let Some(tag) = &handoff.parkboot {
        info.parkboot_tag(tag);
    }
    phase(Phase::BootInfo);
    info.acpi_new_rsdp(handoff.rsdp);
    phase(Phase::Acpi);
    let boot_info_len = info.finish().map_err(PrepareError::BootInfo)?;
    Ok(Prepared {
        boot_info,
        boot_info_len,
        module,
    })
}

#[cfg(test)]
#[path = "prepare_tests.rs"]
mod tests;
