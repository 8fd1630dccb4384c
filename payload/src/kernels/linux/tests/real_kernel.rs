//! A real Debian kernel, when one is installed on the host.

use super::*;

/// The newest `vmlinuz-*` directly in `dir`.
fn vmlinuz_in(dir: &std::path::Path) -> Option<PathBuf> {
    let mut kernels: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("vmlinuz-"))
        })
        .collect();
    kernels.sort();
    kernels.pop()
}

/// `parent/*/boot` for every directory in `parent`, sorted.
fn boot_dirs_under(parent: &std::path::Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(parent)
        .map(|entries| entries.flatten().map(|e| e.path().join("boot")).collect())
        .unwrap_or_default();
    dirs.sort();
    dirs
}

/// A Debian kernel on disk, if there is one: `$PARKBOOT_LINUX_KERNEL`, then where
/// scripts/lib/linux.sh unpacks it (target/linux/kernel/PACKAGE/boot), then
/// target/linux/boot and /tmp/*/boot.
fn real_kernel() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("PARKBOOT_LINUX_KERNEL") {
        return Some(PathBuf::from(path));
    }
    let linux = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/linux");
    let mut dirs = boot_dirs_under(&linux.join("kernel"));
    dirs.push(linux.join("boot"));
    dirs.extend(boot_dirs_under(std::path::Path::new("/tmp")));
    dirs.iter().find_map(|dir| vmlinuz_in(dir))
}

#[test]
fn parses_a_real_debian_kernel_if_present() {
    let Some(path) = real_kernel() else {
        println!("skipped: no vmlinuz-* under target/linux or /tmp/*/boot");
        return;
    };
    let bytes = std::fs::read(&path).unwrap();
    let k = parse(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    println!(
        "{}: protocol {}, version {}, init_size {:#x}, pref {:#x}, align {:#x}",
        path.display(),
        Protocol(k.version),
        k.kernel_version,
        k.init_size,
        k.pref_address,
        k.kernel_alignment
    );
    assert!(k.version >= MIN_PROTOCOL);
    assert!(k.relocatable);
    assert!(k.can_load_initrd_above_4g);
    assert!(k.kernel_alignment >= PAGE_SIZE);
    assert!(k.init_size > k.protected_mode_len());
    let release = k.kernel_version.get().expect("a version string");
    assert!(
        release.starts_with(|c: char| c.is_ascii_digit()),
        "{release}"
    );
    // Its file name carries the same release.
    let name = path.file_name().unwrap().to_str().unwrap();
    assert!(
        release.starts_with(name.trim_start_matches("vmlinuz-")),
        "{release}"
    );

    let map = pc_map();
    let at = place_kernel(&k, &map).unwrap();
    assert_eq!(at, k.pref_address);
    let mut page = [0u8; BOOT_PARAMS_SIZE];
    let e820 = [(0, 0x9fc00, 1), (MIB, 2 * GIB - MIB, 1)];
    build_boot_params(&k, &bytes, &mut page, &args(&e820)).unwrap();
    assert_eq!(&page[0x202..0x206], b"HdrS");
    assert_eq!(r8(&page, 0x210), 0xff);
    assert_eq!(r32(&page, 0x260) as u64, k.init_size);

    // The same kernel cut to 1 MB (the reproduction) is refused by name.
    let err = parse(&bytes[..1_000_000]).unwrap_err();
    assert!(
        matches!(err, LinuxError::Truncated { declared, .. } if declared > 1_000_000),
        "{err}"
    );
}
