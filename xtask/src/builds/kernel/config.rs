//! The options a guest kernel gets: the selftest's needs (the controllers'
//! drivers only for the controllers asked for), then the trims for speed;
//! applied on tinyconfig and checked line by line after olddefconfig.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use contract::Controller;

use super::make;
use crate::ui;

/// The options the guest needs, from the selftest's `config` file.
pub fn fragment_path() -> PathBuf {
    crate::workspace().join("kselftest/config")
}

/// The options the guest kernel leaves out for speed (see the file).
pub fn trim_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("guest-kernel.config")
}

/// The options a guest kernel built for `ctrls` gets: the lines of
/// `needs` (kselftest/config, which lists every controller's options too)
/// that belong to no controller, then the options of the default
/// controllers and of `ctrls`, in table order, each once. Another
/// controller's drivers are compiled only when a run asks for it (every
/// row's drivers and ACPI: 1007 objects; the defaults' alone: 699), and a
/// subset of the defaults shares the default kernel.
pub fn needs_for(needs: &str, ctrls: &[&Controller]) -> String {
    let per_controller: std::collections::HashSet<&str> = contract::CONTROLLERS
        .iter()
        .flat_map(|c| c.kconfig.iter().copied())
        .collect();
    let mut out: String = needs
        .lines()
        .filter(|l| !per_controller.contains(l.trim()))
        .map(|l| format!("{l}\n"))
        .collect();
    let mut added = Vec::new();
    let wanted = |c: &Controller| {
        contract::controllers::DEFAULT.contains(&c.name) || ctrls.iter().any(|w| w.name == c.name)
    };
    for c in contract::CONTROLLERS.iter().filter(|c| wanted(c)) {
        out.push_str(&format!("# {}\n", c.name));
        for opt in c.kconfig {
            if !added.contains(opt) {
                added.push(*opt);
                out.push_str(&format!("{opt}\n"));
            }
        }
    }
    out
}

/// Lines of a fragment that olddefconfig did not keep: a `CONFIG_X=y` that is
/// not in the `.config`, or a `# CONFIG_X is not set` that something turned
/// back on (a `select`).
pub fn missing_options(fragment: &str, dotconfig: &str) -> Vec<String> {
    let have: std::collections::HashSet<&str> = dotconfig.lines().map(str::trim).collect();
    // The options set to anything (`CONFIG_X=y`, `=m`, `="..."`).
    let set: std::collections::HashSet<&str> = have
        .iter()
        .filter_map(|l| l.split_once('=').map(|(name, _)| name))
        .collect();
    fragment
        .lines()
        .map(str::trim)
        .filter(|l| match unset_option(l) {
            Some(name) => set.contains(name),
            None => l.starts_with("CONFIG_") && !have.contains(l),
        })
        .map(str::to_string)
        .collect()
}

/// `CONFIG_X` of a `# CONFIG_X is not set` line.
fn unset_option(line: &str) -> Option<&str> {
    line.strip_prefix("# ")?
        .strip_suffix(" is not set")
        .filter(|name| name.starts_with("CONFIG_"))
}

/// The configuration a guest kernel for `ctrls` gets: the needs (for
/// those controllers), then the trims; and the files they came from.
pub(crate) fn fragment_for(ctrls: &[&Controller]) -> Result<(String, String, String)> {
    let fragment_file = fragment_path();
    let needs = std::fs::read_to_string(&fragment_file)
        .with_context(|| format!("reading {}", fragment_file.display()))?;
    let trim_file = trim_path();
    let trim = std::fs::read_to_string(&trim_file)
        .with_context(|| format!("reading {}", trim_file.display()))?;
    // Needs first, then the trims: a trim never switches off a need, and
    // `configure` would name it if one did.
    let fragment = format!("{}\n{trim}", needs_for(&needs, ctrls));
    Ok((fragment, needs, trim))
}

/// tinyconfig plus `fragment` in `build`, then olddefconfig, checking that
/// every line of the fragment held.
pub(crate) fn configure(tree: &Path, build: &Path, fragment: &str, log: &Path) -> Result<()> {
    let (fragment_file, trim_file) = (fragment_path(), trim_path());
    ui::info(&format!(
        "configuring: tinyconfig + {} + {}",
        fragment_file.display(),
        trim_file.display()
    ));
    let mut c = make(tree, build);
    c.arg("tinyconfig");
    ui::run_logged(c, log, "make tinyconfig", |_| {})?;
    let dotconfig = build.join(".config");
    let mut cfg =
        std::fs::read_to_string(&dotconfig).context("reading .config after tinyconfig")?;
    cfg.push_str(fragment);
    std::fs::write(&dotconfig, cfg)?;
    let mut c = make(tree, build);
    c.arg("olddefconfig");
    ui::run_logged(c, log, "make olddefconfig", |_| {})?;
    let final_cfg = std::fs::read_to_string(&dotconfig)?;
    let missing = missing_options(fragment, &final_cfg);
    if !missing.is_empty() {
        bail!(
            "olddefconfig did not keep these lines (unmet dependencies, a select, or this kernel lacks them):\n  {}\nsee {}, {} and {}",
            missing.join("\n  "),
            fragment_file.display(),
            trim_file.display(),
            dotconfig.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use contract::CONTROLLERS;

    #[test]
    fn dropped_options_are_named() {
        let frag = "# c\nCONFIG_A=y\nCONFIG_B=y\n# CONFIG_C is not set\n";
        assert_eq!(
            missing_options(frag, "CONFIG_A=y\n# CONFIG_B is not set\n"),
            ["CONFIG_B=y"]
        );
        assert!(missing_options(frag, "CONFIG_A=y\nCONFIG_B=y\n").is_empty());
        // A switched-off option that a select turned back on is named too;
        // absent or "is not set" both count as off.
        assert_eq!(
            missing_options(frag, "CONFIG_A=y\nCONFIG_B=y\nCONFIG_C=m\n"),
            ["# CONFIG_C is not set"]
        );
        assert!(
            missing_options(frag, "CONFIG_A=y\nCONFIG_B=y\n# CONFIG_C is not set\n").is_empty()
        );
    }

    #[test]
    fn trims_never_switch_off_a_need() {
        let needs = std::fs::read_to_string(fragment_path()).unwrap();
        let trim = std::fs::read_to_string(trim_path()).unwrap();
        for name in trim.lines().filter_map(unset_option) {
            assert!(!needs.contains(&format!("{name}=")), "{name} is needed");
        }
    }

    #[test]
    fn the_fragment_asks_for_what_the_guest_needs() {
        let f = std::fs::read_to_string(fragment_path()).unwrap();
        let table = CONTROLLERS.iter().flat_map(|c| c.kconfig.iter().copied());
        for opt in table.chain(["CONFIG_IO_URING=y", "CONFIG_HZ_100=y", "CONFIG_DEVTMPFS=y"]) {
            assert!(f.lines().any(|l| l == opt), "kselftest/config lacks {opt}");
        }
    }

    fn by_names(names: &[&str]) -> Vec<&'static Controller> {
        names
            .iter()
            .map(|n| contract::controllers::by_name(n).unwrap())
            .collect()
    }

    #[test]
    fn a_kernel_gets_the_drivers_of_its_controllers_and_the_defaults() {
        let needs = std::fs::read_to_string(fragment_path()).unwrap();
        let has = |f: &str, opt: &str| f.lines().any(|l| l == opt);
        let default = needs_for(&needs, &by_names(&["ahci", "virtio_blk", "nvme"]));
        for opt in [
            "CONFIG_IO_URING=y",
            "CONFIG_SATA_AHCI=y",
            "CONFIG_VIRTIO_BLK=y",
            "CONFIG_BLK_DEV_NVME=y",
        ] {
            assert!(has(&default, opt), "{opt}\n{default}");
        }
        // ACPI only with the two rows whose legacy interrupts need it.
        for opt in [
            "CONFIG_USB=y",
            "CONFIG_MMC_SDHCI=y",
            "CONFIG_MEGARAID_SAS=y",
            "CONFIG_ATA_PIIX=y",
            "CONFIG_ACPI=y",
        ] {
            assert!(!has(&default, opt), "{opt}\n{default}");
        }
        // A subset of the defaults shares the default kernel; order and
        // repeats do not matter.
        assert_eq!(needs_for(&needs, &by_names(&["nvme", "ahci"])), default);
        assert_eq!(needs_for(&needs, &[]), default);
        let more = needs_for(&needs, &by_names(&["usb_storage", "megasas", "nvme"]));
        assert_eq!(
            more,
            needs_for(&needs, &by_names(&["megasas", "usb_storage"]))
        );
        for opt in [
            "CONFIG_USB_STORAGE=y",
            "CONFIG_MEGARAID_SAS=y",
            "CONFIG_SATA_AHCI=y",
        ] {
            assert!(has(&more, opt), "{opt}\n{more}");
        }
        assert!(!has(&more, "CONFIG_MMC=y") && !has(&more, "CONFIG_ACPI=y"));
        assert!(has(
            &needs_for(&needs, &by_names(&["sdhci"])),
            "CONFIG_ACPI=y"
        ));
        // Every option once, whichever rows share it.
        let all = needs_for(&needs, &CONTROLLERS.iter().collect::<Vec<_>>());
        for opt in CONTROLLERS.iter().flat_map(|c| c.kconfig) {
            assert_eq!(all.lines().filter(|l| l == opt).count(), 1, "{opt}");
        }
    }
}
