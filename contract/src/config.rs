//! The configuration axes a disk runs in, beside the controller table: the
//! AIO backend, the host cache mode and an iothread, named as QEMU spells
//! them. Which combinations a row can take is known from the table before
//! any boot (`Config::applies`); the QEMU arguments each yields come from
//! here (`Config::drive_opts`, `Controller::qemu_args_in`).

use crate::params::named_enum;
#[allow(unused_imports)]
use crate::prelude::*;
use crate::{bail, Controller, Error, Result};

named_enum!(
    /// `-drive aio=`: who submits the host I/O. The defaults, axis by axis,
    /// are what every run used before there were axes.
    #[derive(Default)]
    Aio {
        /// io_uring, submitted from the AioContext's thread (the bug's path).
        #[default]
        IoUring = "io_uring",
        /// linux-aio: `io_submit` runs in the submitting thread; needs O_DIRECT.
        Native = "native",
        /// A thread pool, completions signalled through an event notifier.
        Threads = "threads",
    }
);

named_enum!(
    /// `-drive cache=`: whether the host page cache is bypassed (O_DIRECT).
    #[derive(Default)]
    Cache {
        #[default]
        None = "none",
        Writeback = "writeback",
    }
);

named_enum!(
    /// Whether the device runs in an iothread's AioContext.
    #[derive(Default)]
    Iothread {
        #[default]
        Off = "off",
        On = "on",
    }
);

/// One configuration of a disk. `Default` is what every run used before
/// there were axes: `aio=io_uring,cache=none`, no iothread.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Default,
    serde::Serialize,
    serde::Deserialize,
)]
pub struct Config {
    pub aio: Aio,
    pub cache: Cache,
    pub iothread: Iothread,
}

impl Config {
    /// Every combination of the axes, the default first.
    pub fn all() -> Vec<Config> {
        let mut out = Vec::new();
        for &aio in Aio::ALL {
            for &cache in Cache::ALL {
                for &iothread in Iothread::ALL {
                    out.push(Config {
                        aio,
                        cache,
                        iothread,
                    });
                }
            }
        }
        out
    }

    pub fn is_default(&self) -> bool {
        *self == Config::default()
    }

    /// The `-drive` options it sets, as QEMU spells them.
    pub fn drive_opts(&self) -> String {
        format!("aio={},cache={}", self.aio.name(), self.cache.name())
    }

    /// Its short name: the drive options, and `iothread` when on
    /// (`aio=threads,cache=none,iothread`).
    pub fn name(&self) -> String {
        match self.iothread {
            Iothread::Off => self.drive_opts(),
            Iothread::On => format!("{},iothread", self.drive_opts()),
        }
    }

    /// A name fit for a file or boot label: `threads-none-iothread`.
    pub fn slug(&self) -> String {
        let mut s = format!("{}-{}", self.aio.name(), self.cache.name());
        if self.iothread == Iothread::On {
            s.push_str("-iothread");
        }
        s
    }

    /// Why `c` cannot run in this configuration, if it cannot: known from
    /// the table, before any boot.
    pub fn not_applicable(&self, c: &Controller) -> Option<&'static str> {
        // linux-aio submits asynchronously only with O_DIRECT; QEMU refuses
        // `aio=native` on a cached file ("aio=native was specified, but
        // it requires cache.direct=on").
        if self.aio == Aio::Native && self.cache != Cache::None {
            return Some("aio=native needs O_DIRECT (cache=none)");
        }
        if self.iothread == Iothread::On && !c.iothread {
            return Some("this device takes no iothread");
        }
        None
    }

    pub fn applies(&self, c: &Controller) -> bool {
        self.not_applicable(c).is_none()
    }

    /// The same advice in the front ends' terms: libvirt's `<driver>`
    /// attributes and Proxmox VE's disk options.
    pub fn libvirt(&self) -> String {
        let iothread = match self.iothread {
            Iothread::Off => "",
            Iothread::On => " iothread='1'",
        };
        format!(
            "<driver io='{}' cache='{}'{iothread}/>",
            self.aio.name(),
            self.cache.name()
        )
    }

    pub fn proxmox(&self) -> String {
        let mut s = format!("aio={},cache={}", self.aio.name(), self.cache.name());
        if self.iothread == Iothread::On {
            s.push_str(",iothread=1");
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controllers::by_name;

    #[test]
    fn the_default_is_todays_configuration() {
        let d = Config::default();
        assert_eq!(d.drive_opts(), "aio=io_uring,cache=none");
        assert_eq!(d.name(), "aio=io_uring,cache=none");
        assert!(d.is_default() && Config::all()[0] == d);
        assert_eq!(Config::all().len(), 12);
        assert_eq!(
            serde_json::to_string(&d).unwrap(),
            r#"{"aio":"io_uring","cache":"none","iothread":"off"}"#
        );
    }

    #[test]
    fn which_combinations_apply_to_which_row() {
        let count = |name: &str| {
            let c = by_name(name).unwrap();
            Config::all().iter().filter(|k| k.applies(c)).count()
        };
        // 3 aio x 2 cache, less native+writeback: 5; doubled by an iothread.
        assert_eq!(count("virtio_blk"), 10);
        assert_eq!(count("virtio_scsi"), 10);
        for row in ["ahci", "ide", "nvme", "virtio_blk_noioeventfd", "lsi"] {
            assert_eq!(count(row), 5, "{row}");
        }
        let ahci = by_name("ahci").unwrap();
        let native_wb = Config {
            aio: Aio::Native,
            cache: Cache::Writeback,
            iothread: Iothread::Off,
        };
        assert_eq!(
            native_wb.not_applicable(ahci),
            Some("aio=native needs O_DIRECT (cache=none)")
        );
        let io = Config {
            iothread: Iothread::On,
            ..Config::default()
        };
        assert_eq!(
            io.not_applicable(ahci),
            Some("this device takes no iothread")
        );
        assert!(io.applies(by_name("virtio_blk").unwrap()));
    }

    #[test]
    fn names_in_qemus_and_the_front_ends_terms() {
        let t = Config {
            aio: Aio::Threads,
            cache: Cache::Writeback,
            iothread: Iothread::On,
        };
        assert_eq!(t.name(), "aio=threads,cache=writeback,iothread");
        assert_eq!(t.slug(), "threads-writeback-iothread");
        assert_eq!(
            t.libvirt(),
            "<driver io='threads' cache='writeback' iothread='1'/>"
        );
        assert_eq!(t.proxmox(), "aio=threads,cache=writeback,iothread=1");
        assert_eq!("native".parse::<Aio>().unwrap(), Aio::Native);
        assert_eq!(
            "posix".parse::<Aio>().unwrap_err().0,
            "aio must be io_uring or native or threads, not \"posix\""
        );
        assert_eq!("writeback".parse::<Cache>().unwrap(), Cache::Writeback);
        assert_eq!("on".parse::<Iothread>().unwrap(), Iothread::On);
        assert_eq!(Config::default().name(), "aio=io_uring,cache=none");
    }
}
