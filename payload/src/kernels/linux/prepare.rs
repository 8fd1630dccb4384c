//! Preparing a Linux hand-off (64-bit boot protocol): the protected-mode kernel, the
//! initrd, the command line and boot_params, each reserved in the memory map and written
//! through region handles, so the bare-metal binary only has to jump (and host tests
//! check every byte on fake memory).

use core::fmt::Write;

use super::*;
use crate::memory::region::RegionMemory;
use crate::memory::{AllocationRequest, Lifetime, MemoryError, ONE_MIB};

/// Longest command line parkboot builds (the kernel's own limit is checked too).
pub const CMDLINE_BYTES: usize = 4096;

/// Reservation names of what [`prepare`] places.
pub const KERNEL_NAME: &str = "Linux kernel";
pub const INITRD_NAME: &str = "Linux initrd";
pub const CMDLINE_NAME: &str = "Linux command line";
pub const BOOT_PARAMS_NAME: &str = "Linux boot_params";

/// The kernel's command line: the entry's, plus what parkboot's Linux tooling reads
/// (where the park table is, which iteration this is, how many the entry asks for, and
/// how many CPUs the kernels' MADT lists; without a usable MADT parkboot knows no CPU
/// count, `cpus` 0, and says nothing rather than 0). Longer lines are cut at
/// [`CMDLINE_BYTES`].
pub fn command_line(
    entry_cmdline: &str,
    park_table: Option<u64>,
    iterations: u32,
    cpus: u32,
) -> heapless::String<CMDLINE_BYTES> {
    let mut cmdline: heapless::String<CMDLINE_BYTES> = heapless::String::new();
    let _ = cmdline.push_str(entry_cmdline);
    if let Some(table) = park_table {
        let _ = write!(cmdline, " parkboot.park_table={table:#x}");
    }
    let _ = write!(cmdline, " parkboot.iteration=1 parkboot.loops={iterations}");
    if cpus > 0 {
        let _ = write!(cmdline, " parkboot.cpus={cpus}");
    }
    cmdline
}

/// Where [`prepare`] put things.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Prepared {
    /// Physical address the protected-mode kernel was loaded at.
    pub load: u64,
    /// Its 64-bit entry point.
    pub entry_point: u64,
    /// The initrd's `(address, size)`.
    pub initrd: Option<(u64, u64)>,
    /// The NUL-terminated command line.
    pub cmdline: u64,
    /// The boot_params page (the kernel's `rsi`).
    pub boot_params: u64,
    /// How many e820 entries boot_params holds.
    pub e820_entries: usize,
}

/// Why a Linux hand-off could not be prepared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PrepareError {
    /// The kernel, initrd, command line or boot_params found no room.
    Memory(MemoryError),
    /// The kernel cannot be booted as asked (placement, limits of its boot protocol).
    Linux(LinuxError),
}

impl From<MemoryError> for PrepareError {
    fn from(e: MemoryError) -> Self {
        PrepareError::Memory(e)
    }
}

impl From<LinuxError> for PrepareError {
    fn from(e: LinuxError) -> Self {
        PrepareError::Linux(e)
    }
}

impl fmt::Display for PrepareError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PrepareError::Memory(e) => write!(f, "{e}"),
            PrepareError::Linux(e) => write!(f, "{e}"),
        }
    }
}

/// Loads `kernel` (parsed from `image`) and hands it `initrd` and `cmdline`, in memory
/// taken from `map` for this boot ([`Lifetime::Boot`], shown to the kernel as usable):
///
/// 1. the protected-mode part at [`place_kernel`]'s address, reserved for the larger
///    of `init_size` and the part itself;
/// 2. the initrd at [`place_initrd`]'s address;
/// 3. the command line, NUL-terminated, in the highest free page(s) below 4 GiB;
/// 4. boot_params in the highest free page below 4 GiB, with the e820 map of the
///    memory as the kernel sees it (every reservation above included) and `rsdp`.
pub fn prepare(
    map: &mut MemoryMap,
    memory: &mut impl RegionMemory,
    kernel: &Kernel,
    image: &[u8],
    initrd: Option<&[u8]>,
    cmdline: &str,
    rsdp: u64,
) -> Result<Prepared, PrepareError> {
    let load = place_kernel(kernel, map)?;
    let protected_mode = image
        .get(kernel.protected_mode.clone())
        .ok_or(LinuxError::TooShort {
            len: image.len(),
            needed: kernel.protected_mode.end,
        })?;
    let need = kernel.init_size.max(protected_mode.len() as u64);
    map.reserve(load, need, KERNEL_NAME, ReportAs::Usable, Lifetime::Boot)?;
    memory
        .bytes(map.region(load, protected_mode.len() as u64)?)
        .copy_from_slice(protected_mode);

    let initrd = match initrd {
        Some(bytes) => {
            let size = bytes.len() as u64;
            let addr = place_initrd(kernel, size, map)?;
            map.reserve(addr, size, INITRD_NAME, ReportAs::Usable, Lifetime::Boot)?;
            memory.bytes(map.region(addr, size)?).copy_from_slice(bytes);
            Some((addr, size))
        }
        None => None,
    };

    // The line and its NUL.
    let cmdline_bytes = cmdline.len() as u64 + 1;
    let cmdline_addr = map.allocate(AllocationRequest {
        size: cmdline_bytes,
        align: PAGE_SIZE,
        min: ONE_MIB,
        max: FOUR_GIB,
        name: CMDLINE_NAME,
        report_as: ReportAs::Usable,
        lifetime: Lifetime::Boot,
    })?;
    let (text, nul) = memory
        .bytes(map.region(cmdline_addr, cmdline_bytes)?)
        .split_at_mut(cmdline.len());
    text.copy_from_slice(cmdline.as_bytes());
    nul.fill(0);

    let boot_params = map.allocate(AllocationRequest {
        size: BOOT_PARAMS_SIZE as u64,
        align: PAGE_SIZE,
        min: ONE_MIB,
        max: FOUR_GIB,
        name: BOOT_PARAMS_NAME,
        report_as: ReportAs::Usable,
        lifetime: Lifetime::Boot,
    })?;
    let mut e820 = [(0u64, 0u64, 0u32); E820_MAX_ENTRIES];
    let e820_entries = e820_from_kernel_view(map.kernel_view(), &mut e820)?;
    let page: &mut [u8; BOOT_PARAMS_SIZE] = memory
        .bytes(map.region(boot_params, BOOT_PARAMS_SIZE as u64)?)
        .try_into()
        .map_err(|_| LinuxError::BootParamsLayout {
            offset: BOOT_PARAMS_SIZE,
        })?;
    build_boot_params(
        kernel,
        image,
        page,
        &BootArgs {
            cmdline_addr,
            cmdline_len: cmdline.len(),
            initrd,
            rsdp,
            e820: e820.get(..e820_entries).unwrap_or_default(),
        },
    )?;
    Ok(Prepared {
        load,
        entry_point: load + LINUX_64BIT_ENTRY_OFFSET,
        initrd,
        cmdline: cmdline_addr,
        boot_params,
        e820_entries,
    })
}
