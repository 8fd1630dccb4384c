//! Where parkboot finds its configuration and, without one, the kernel it boots.
//!
//! On a board, everything comes from the flash parkboot was put in (CBFS); under QEMU,
//! fw_cfg may add or override. The rules, in order:
//!
//! - **Configuration**: fw_cfg `opt/parkboot/config` when present (QEMU, so a user can
//!   try a configuration without rebuilding the ROM), else CBFS `parkboot/config`, else
//!   the built-in defaults.
//! - **Kernel without configured entries**: CBFS first (a board has nothing else), then
//!   fw_cfg. In CBFS: `parkboot/kernel`, else the first file, in flash order, whose last
//!   path component is `kernel`, `vmlinuz` or `bzImage` (e.g. `img/vmlinuz`). Its initrd
//!   and command line are the files `initrd` and `cmdline` in the same directory
//!   (`parkboot/initrd`, `img/initrd`, ...), when present.

use core::fmt;

/// CBFS file that holds the configuration.
pub const CONFIG_CBFS_FILE: &str = "parkboot/config";
/// CBFS file booted when no entries are configured.
pub const DEFAULT_CBFS_KERNEL: &str = "parkboot/kernel";
/// Last path components that mark a CBFS file as a kernel for the default entry.
pub const KERNEL_FILE_NAMES: [&str; 3] = ["kernel", "vmlinuz", "bzImage"];
/// Name of the initrd file next to a default kernel.
pub const INITRD_FILE_NAME: &str = "initrd";
/// Name of the command-line file next to a default kernel.
pub const CMDLINE_FILE_NAME: &str = "cmdline";

/// Where the configuration in use came from (`config_source` in the JSON summary).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigSource {
    /// CBFS `parkboot/config`.
    Cbfs,
    /// fw_cfg `opt/parkboot/config`.
    FwCfg,
    /// Neither: the built-in defaults.
    Default,
}

impl ConfigSource {
    /// The name the log and the JSON summary use.
    pub fn name(self) -> &'static str {
        match self {
            ConfigSource::Cbfs => "cbfs:parkboot/config",
            ConfigSource::FwCfg => "fw_cfg:opt/parkboot/config",
            ConfigSource::Default => "default",
        }
    }
}

impl fmt::Display for ConfigSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Which configuration wins: fw_cfg over CBFS over the defaults.
pub fn config_source(in_fw_cfg: bool, in_cbfs: bool) -> ConfigSource {
    if in_fw_cfg {
        ConfigSource::FwCfg
    } else if in_cbfs {
        ConfigSource::Cbfs
    } else {
        ConfigSource::Default
    }
}

/// The directory part of a CBFS name (`img` for `img/vmlinuz`, `` for `vmlinuz`).
fn directory(name: &str) -> &str {
    name.rsplit_once('/').map(|(dir, _)| dir).unwrap_or("")
}

fn last_component(name: &str) -> &str {
    name.rsplit_once('/').map(|(_, last)| last).unwrap_or(name)
}

/// The CBFS file the default entry boots, from the names in flash order.
pub fn default_kernel<'a>(names: impl IntoIterator<Item = &'a str> + Clone) -> Option<&'a str> {
    names
        .clone()
        .into_iter()
        .find(|&n| n == DEFAULT_CBFS_KERNEL)
        .or_else(|| {
            names
                .into_iter()
                .find(|n| KERNEL_FILE_NAMES.contains(&last_component(n)))
        })
}

/// The name of the file called `file` next to `kernel`: `sibling("img/vmlinuz",
/// "initrd")` is `img/initrd`.
pub fn sibling<const N: usize>(kernel: &str, file: &str) -> heapless::String<N> {
    let mut name = heapless::String::new();
    let dir = directory(kernel);
    if !dir.is_empty() {
        let _ = name.push_str(dir);
        let _ = name.push('/');
    }
    let _ = name.push_str(file);
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fw_cfg_overrides_cbfs_overrides_defaults() {
        assert_eq!(config_source(true, true), ConfigSource::FwCfg);
        assert_eq!(config_source(true, false), ConfigSource::FwCfg);
        assert_eq!(config_source(false, true), ConfigSource::Cbfs);
        assert_eq!(config_source(false, false), ConfigSource::Default);
        assert_eq!(ConfigSource::Cbfs.name(), "cbfs:parkboot/config");
        assert_eq!(ConfigSource::FwCfg.name(), "fw_cfg:opt/parkboot/config");
    }

    #[test]
    fn parkboot_kernel_wins_wherever_it_is() {
        let names = ["fallback/payload", "img/vmlinuz", "parkboot/kernel"];
        assert_eq!(default_kernel(names), Some("parkboot/kernel"));
    }

    #[test]
    fn else_the_first_kernel_named_file_in_flash_order() {
        let names = [
            "cbfs master header",
            "fallback/payload",
            "config",
            "kernels/bzImage",
            "img/vmlinuz",
        ];
        assert_eq!(default_kernel(names), Some("kernels/bzImage"));
        assert_eq!(default_kernel(["vmlinuz"]), Some("vmlinuz"));
        // Only the last component counts: a directory called kernel is not a kernel.
        assert_eq!(default_kernel(["kernel/notes", "fallback/payload"]), None);
        assert_eq!(default_kernel(["my-kernel", "vmlinuz.old"]), None);
        assert_eq!(default_kernel([] as [&str; 0]), None);
    }

    #[test]
    fn initrd_and_cmdline_sit_next_to_the_kernel() {
        assert_eq!(
            sibling::<64>("parkboot/kernel", INITRD_FILE_NAME).as_str(),
            "parkboot/initrd"
        );
        assert_eq!(
            sibling::<64>("a/b/vmlinuz", CMDLINE_FILE_NAME).as_str(),
            "a/b/cmdline"
        );
        assert_eq!(
            sibling::<64>("bzImage", INITRD_FILE_NAME).as_str(),
            "initrd"
        );
    }
}
