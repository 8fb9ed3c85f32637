//! The variants a run boots: every (QEMU build, guest kernel build) pair
//! under the name the report uses, each compared where exactly one side
//! differs; and the guest images they boot, once QEMU is compiled.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::at_once::{Built, QemuInput, Request};
use crate::kernel::Kernel;
use crate::kernel_variant;
use crate::patch::{PatchSet, BASELINE, BINARY, PATCHED};
use crate::timings::Timings;
use crate::{initramfs, ui};

/// Which side of the (QEMU build, guest kernel build) pair a variant
/// changes against what it is compared with.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Changes {
    /// Its QEMU (its `patches`), booting the unpatched kernel.
    #[default]
    Qemu,
    /// Its guest kernel (`kernel_patches`), on the baseline QEMU.
    Kernel,
    /// Its kernel, on a QEMU variant: compared against that QEMU variant.
    Both,
}

impl Changes {
    pub fn name(self) -> &'static str {
        match self {
            Changes::Qemu => "qemu",
            Changes::Kernel => "kernel",
            Changes::Both => "both",
        }
    }
}

/// A (QEMU build, guest kernel build) pair under a name the report uses;
/// the first is the baseline. A QEMU variant boots the unpatched kernel, a
/// kernel variant the baseline QEMU, and a pair of both is measured against
/// its QEMU variant alone, so each comparison changes one side.
pub struct Variant {
    pub name: String,
    pub binary: PathBuf,
    pub patches: Option<PatchSet>,
    /// The kernel variant it boots, if any (the Linux guest only).
    pub kernel: Option<KernelBuild>,
    /// The variant it is compared against.
    pub against: String,
}

impl Variant {
    pub fn qemu(name: &str, binary: PathBuf, patches: Option<PatchSet>) -> Variant {
        Variant {
            name: name.to_string(),
            binary,
            patches,
            kernel: None,
            against: BASELINE.into(),
        }
    }

    /// What it changes against what it is compared with.
    pub fn changes(&self) -> Changes {
        match (&self.kernel, self.against == BASELINE) {
            (None, _) => Changes::Qemu,
            (Some(_), true) => Changes::Kernel,
            (Some(_), false) => Changes::Both,
        }
    }
}

/// A kernel variant's guest pieces.
#[derive(Clone)]
pub struct KernelBuild {
    pub built: kernel_variant::KernelVariant,
    pub initrd: PathBuf,
}

/// The Linux guest's pieces.
pub struct LinuxArtifacts {
    pub kernel: Kernel,
    pub selftest: PathBuf,
    pub initrd: PathBuf,
}

/// What the guest runs need, built or found in the cache.
pub struct Artifacts {
    pub linux: Option<LinuxArtifacts>,
    pub probe: Option<PathBuf>,
    pub variants: Vec<Variant>,
}

/// The QEMU builds, then each kernel variant on the baseline QEMU, then
/// each kernel variant on each QEMU variant (compared against that QEMU
/// variant with the unpatched kernel): every (QEMU build, kernel build)
/// pair, each compared where exactly one side differs.
pub fn with_kernel_variants(qemu: Vec<Variant>, kernels: &[KernelBuild]) -> Result<Vec<Variant>> {
    let mut all = Vec::new();
    for k in kernels {
        if qemu.iter().any(|q| q.name == k.built.set.name) {
            bail!(
                "kernel variant {} has the name of a QEMU variant: give it another",
                k.built.set.name
            );
        }
    }
    let base = &qemu[0];
    let mut pairs = Vec::new();
    for k in kernels {
        for q in &qemu {
            let first = q.name == base.name;
            let v = Variant {
                name: if first {
                    k.built.set.name.clone()
                } else {
                    format!("{}+{}", q.name, k.built.set.name)
                },
                binary: q.binary.clone(),
                patches: q.patches.clone(),
                kernel: Some(k.clone()),
                against: q.name.clone(),
            };
            if first {
                all.push(v);
            } else {
                pairs.push(v);
            }
        }
    }
    let mut out = qemu;
    out.extend(all);
    out.extend(pairs);
    Ok(out)
}

/// The initramfs and QEMU's compile, after the kernel's (see
/// `Request::builds_at_once`): every variant to boot.
pub fn artifacts(
    req: &Request,
    input: &QemuInput,
    built: Built,
    t: &mut Timings,
) -> Result<Artifacts> {
    let Built {
        linux,
        probe,
        prepared: qemu_prepared,
    } = built;
    let mut kernel_builds = Vec::new();
    let linux = match linux {
        Some((kernel, st, kvs)) => {
            let s = Instant::now();
            let initrd = initramfs::pack(&st.binary, &kernel.modules)?;
            ui::info(&format!("initramfs {}", initrd.display()));
            for kv in kvs {
                // The selftest is built on the kernel's uapi: a variant
                // that changes it gets its own.
                let initrd = if kv.uapi_changed {
                    let own = req.build_selftest(kv.kernel.uapi.as_deref())?;
                    initramfs::pack(&own.binary, &kv.kernel.modules)?
                } else {
                    initrd.clone()
                };
                kernel_builds.push(KernelBuild { built: kv, initrd });
            }
            t.add("initramfs", s);
            Some(LinuxArtifacts {
                kernel,
                selftest: st.binary,
                initrd,
            })
        }
        None => None,
    };
    let s = Instant::now();
    let variants = match input {
        QemuInput::Tree { tree, .. } => {
            ui::stage(&format!("QEMU {} compile", tree.describe()));
            let built = qemu_prepared.context("QEMU was not prepared")?.compile()?;
            let mut v = vec![Variant::qemu(BASELINE, built.baseline.path, None)];
            v.extend(
                built
                    .variants
                    .into_iter()
                    .map(|(set, bin)| Variant::qemu(&set.name.clone(), bin.path, Some(set))),
            );
            v
        }
        QemuInput::Binary(b, _) => vec![Variant::qemu(BINARY, b.clone(), None)],
        QemuInput::Pair(a, b, _) => vec![
            Variant::qemu(BASELINE, a.clone(), None),
            Variant::qemu(PATCHED, b.clone(), None),
        ],
    };
    t.add("qemu_build", s);
    let variants = with_kernel_variants(variants, &kernel_builds)?;
    Ok(Artifacts {
        linux,
        probe: probe.map(|p| p.image),
        variants,
    })
}
