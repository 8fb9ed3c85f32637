//! The configuration axes a disk runs in, beside the controller table: the
//! AIO backend, the host cache mode and an iothread, named as QEMU spells
//! them. Which combinations a row can take is known from the table before
//! any boot (`Config::applies`); the QEMU arguments each yields come from
//! here (`Config::drive_opts`, `Controller::qemu_args_in`).

#[allow(unused_imports)]
use crate::prelude::*;
use crate::{bail, Controller, Result};

/// `-drive aio=`: who submits the host I/O.
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
pub enum Aio {
    /// io_uring, submitted from the AioContext's thread (the bug's path).
    #[default]
    #[serde(rename = "io_uring")]
    IoUring,
    /// linux-aio: `io_submit` runs in the submitting thread; needs O_DIRECT.
    #[serde(rename = "native")]
    Native,
    /// A thread pool, completions signalled through an event notifier.
    #[serde(rename = "threads")]
    Threads,
}

/// `-drive cache=`: whether the host page cache is bypassed (O_DIRECT).
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
#[serde(rename_all = "snake_case")]
pub enum Cache {
    #[default]
    None,
    Writeback,
}

/// Whether the device runs in an iothread's AioContext.
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
#[serde(rename_all = "snake_case")]
pub enum Iothread {
    #[default]
    Off,
    On,
}

impl Aio {
    pub const ALL: [Aio; 3] = [Aio::IoUring, Aio::Native, Aio::Threads];
    pub fn name(self) -> &'static str {
        match self {
            Aio::IoUring => "io_uring",
            Aio::Native => "native",
            Aio::Threads => "threads",
        }
    }
    pub fn parse(s: &str) -> Result<Aio> {
        match Aio::ALL.into_iter().find(|a| a.name() == s) {
            Some(a) => Ok(a),
            None => bail!("unknown aio {s:?}; valid: io_uring, native, threads"),
        }
    }
}

impl Cache {
    pub const ALL: [Cache; 2] = [Cache::None, Cache::Writeback];
    pub fn name(self) -> &'static str {
        match self {
            Cache::None => "none",
            Cache::Writeback => "writeback",
        }
    }
    pub fn parse(s: &str) -> Result<Cache> {
        match Cache::ALL.into_iter().find(|c| c.name() == s) {
            Some(c) => Ok(c),
            None => bail!("unknown cache {s:?}; valid: none, writeback"),
        }
    }
}

impl Iothread {
    pub const ALL: [Iothread; 2] = [Iothread::Off, Iothread::On];
    pub fn name(self) -> &'static str {
        match self {
            Iothread::Off => "off",
            Iothread::On => "on",
        }
    }
    pub fn parse(s: &str) -> Result<Iothread> {
        match Iothread::ALL.into_iter().find(|i| i.name() == s) {
            Some(i) => Ok(i),
            None => bail!("unknown iothread {s:?}; valid: off, on"),
        }
    }
}

macro_rules! from_str {
    ($($t:ty),*) => {$(
        impl core::str::FromStr for $t {
            type Err = crate::Error;
            fn from_str(s: &str) -> Result<$t> {
                <$t>::parse(s)
            }
        }
    )*};
}
from_str!(Aio, Cache, Iothread);

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
        for aio in Aio::ALL {
            for cache in Cache::ALL {
                for iothread in Iothread::ALL {
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
        assert_eq!(Aio::parse("native").unwrap(), Aio::Native);
        assert!(Aio::parse("posix")
            .unwrap_err()
            .0
            .contains("io_uring, native"));
        assert_eq!(Cache::parse("writeback").unwrap(), Cache::Writeback);
        assert_eq!(Iothread::parse("on").unwrap(), Iothread::On);
    }
}
