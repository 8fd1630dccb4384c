//! The kernels parkboot loads: multiboot2 images (ELF or a.out kludge) and Linux
//! bzImages, gzip for kernels shipped compressed, and the hand-off to 32-bit protected
//! mode for multiboot2.

pub mod gzip;
pub mod handoff;
pub mod linux;
pub mod multiboot2;
