//! The builds a run needs, on two tracks at once: which QEMU is measured
//! (a tree, a binary, two binaries), its source and configure beside the
//! guest kernel's fetch and configure, then the selftest and the probe's
//! image beside the kernel's compile.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use contract::Controller;

use crate::kernel::{Kernel, KernelInput, KernelSource};
use crate::kernel_variant::{self, KernelPatchChoice};
use crate::patch::{self, PatchChoice, PatchSet, State};
use crate::qemu::{self, BaselineMode};
use crate::source::QemuSource;
use crate::timings::Timings;
use crate::tree::QemuTree;
use crate::{selftest, ui};

/// What a run asks to be built, from its flags.
pub struct Request<'a> {
    pub source: &'a QemuSource,
    /// `--qemu-binary`: one prebuilt binary, measured alone.
    pub qemu_binary: Option<&'a Path>,
    /// `--compare-binaries`: two prebuilt binaries, the first the baseline.
    pub compare_binaries: &'a [PathBuf],
    pub patches: &'a PatchChoice,
    pub baseline: BaselineMode,
    pub kernel: &'a KernelSource,
    pub kernel_patches: &'a KernelPatchChoice,
    /// Which guests boot: the Linux guest needs a kernel and the selftest,
    /// the probe its image.
    pub linux: bool,
    pub probe: bool,
    /// The rows the Linux guest's kernel must drive.
    pub linux_controllers: Vec<&'static Controller>,
    /// Whether a guest has user networking (a prebuilt QEMU must offer it).
    pub networked: bool,
}

/// Which QEMU is measured.
pub enum QemuInput {
    /// A tree: the baseline built from it, and one variant per patch set
    /// (`patches/` unless told otherwise).
    Tree {
        tree: QemuTree,
        state: State,
        baseline: BaselineMode,
        sets: Vec<PatchSet>,
    },
    /// A prebuilt binary measured alone, and its QEMU version.
    Binary(PathBuf, String),
    /// Two prebuilt binaries, the first as the baseline, and its version.
    Pair(PathBuf, PathBuf, String),
}

impl QemuInput {
    /// The tree, when it never had the stall (no `aio_add_sqe()`).
    pub fn unaffected(&self) -> Option<&QemuTree> {
        match self {
            QemuInput::Tree {
                tree,
                state: State::Unaffected,
                ..
            } => Some(tree),
            _ => None,
        }
    }
}

/// What the QEMU track of `builds_at_once` brings back.
struct QemuSide {
    input: QemuInput,
    fetched: Duration,
    prepared: Option<qemu::Prepared>,
    prepare_took: Option<Duration>,
    selftest: Option<selftest::Selftest>,
    probe: Option<crate::probe_image::ProbeImage>,
}

/// What the kernel track of `builds_at_once` brings back.
struct KernelSide {
    kernel: Kernel,
    variants: Vec<kernel_variant::KernelVariant>,
    fetched: Duration,
    took: Duration,
}

/// Built at once, before QEMU's compile: the Linux guest's kernel and
/// selftest, the probe's image, for the guests the run boots.
pub struct Built {
    pub linux: Option<(
        Kernel,
        selftest::Selftest,
        Vec<kernel_variant::KernelVariant>,
    )>,
    pub probe: Option<crate::probe_image::ProbeImage>,
    pub prepared: Option<qemu::Prepared>,
}

impl Request<'_> {
    /// Inputs: which QEMU, and what the baseline is.
    pub fn inputs(&self) -> Result<QemuInput> {
        let exists = |flag: &str, b: &Path| -> Result<String> {
            if !b.is_file() {
                bail!("{flag} {}: no such file", b.display());
            }
            let version = qemu::probe(b).with_context(|| format!("{flag} {}", b.display()))?;
            // Before any build: a prebuilt binary either can or cannot. One
            // we build always can: configure gets --enable-slirp (and fails
            // without libslirp) and the device list has VIRTIO_NET.
            if self.networked {
                qemu::require_user_networking(b)?;
            }
            ui::stage(&format!("{flag}: {} is QEMU {version}", b.display()));
            Ok(version)
        };
        if let Some(b) = self.qemu_binary {
            let v = exists("--qemu-binary", b)?;
            return Ok(QemuInput::Binary(b.to_path_buf(), v));
        }
        if let [a, b] = self.compare_binaries {
            let v = exists("--compare-binaries", a)?;
            exists("--compare-binaries", b)?;
            return Ok(QemuInput::Pair(a.clone(), b.clone(), v));
        }
        // Bad patch files are named before QEMU is fetched or anything built.
        let sets = self.patches.sets()?;
        let tree = self.source.resolve()?;
        let state = patch::classify(&tree)?;
        ui::stage(&patch::summary(&tree, &state));
        let baseline = if state == State::Unaffected {
            BaselineMode::AsIs
        } else {
            self.baseline.resolve(&state)?
        };
        Ok(QemuInput::Tree {
            tree,
            state,
            baseline,
            sets,
        })
    }

    /// Fetching and building on two tracks at once, each going on as soon
    /// as what it needs is there:
    /// - QEMU: its source, then (a tree) the work copy synced, the meson
    ///   venv and configure, mostly on one core and beside the kernel's
    ///   download and configure; then the selftest, once the kernel's
    ///   headers are exported, and the probe's image, beside the kernel's
    ///   compile;
    /// - kernel (Linux guest only): its source, configure and headers, then
    ///   the compile, which keeps both cores busy for minutes.
    ///
    /// QEMU's compile comes after (`artifacts`): the two compiles at once
    /// measured no faster than one after the other (389 s vs 395 s). QEMU's
    /// source decides first: a tree that never had the stall stops the
    /// kernel's fetch and comes back with nothing built (SKIPPED), and a
    /// kernel that cannot be fetched is named only once QEMU's input is
    /// known good. A run without the Linux guest fetches no kernel at all.
    pub fn builds_at_once(&self, t: &mut Timings) -> Result<(QemuInput, Option<Built>)> {
        let s = Instant::now();
        let (linux, probe) = (self.linux, self.probe);
        // Whether QEMU's input never had the stall, once it is known.
        let (decided_tx, decided_rx) = std::sync::mpsc::channel::<bool>();
        // The kernel's headers (or its failure, as text: the same error
        // then comes from both tracks, whichever is reported).
        let (uapi_tx, uapi_rx) = std::sync::mpsc::channel::<Result<Option<PathBuf>, String>>();
        // Each track owns its ends of the channels: a track that stops
        // drops them, so the other never waits on it for ever.
        let (qemu_side, kernel_side) = crate::children::at_once(
            move || -> Result<QemuSide> {
                let input = self.inputs()?;
                let fetched = s.elapsed();
                let unaffected = input.unaffected().is_some();
                let _ = decided_tx.send(unaffected);
                if unaffected {
                    crate::children::cancel();
                    return Ok(QemuSide {
                        input,
                        fetched,
                        prepared: None,
                        prepare_took: None,
                        selftest: None,
                        probe: None,
                    });
                }
                let p = Instant::now();
                let prepared = self.prepare_qemu(&input)?;
                let prepare_took = prepared.is_some().then(|| p.elapsed());
                let selftest = if linux {
                    let uapi = uapi_rx
                        .recv()
                        .unwrap_or_else(|_| Err("the guest kernel was not configured".into()))
                        .map_err(|e| anyhow::anyhow!(e))?;
                    Some(self.build_selftest(uapi.as_deref())?)
                } else {
                    None
                };
                let probe = if probe {
                    ui::stage("probe guest (bare metal, -bios image)");
                    let img = crate::probe_image::build()?;
                    ui::info(&format!(
                        "probe image {} ({:.1} s)",
                        img.image.display(),
                        img.build_s
                    ));
                    Some(img)
                } else {
                    None
                };
                Ok(QemuSide {
                    input,
                    fetched,
                    prepared,
                    prepare_took,
                    selftest,
                    probe,
                })
            },
            move || -> Result<Option<KernelSide>> {
                if !linux {
                    return Ok(None);
                }
                let mut tree = None;
                let planned = self
                    .kernel
                    .fetch(&self.linux_controllers)
                    .and_then(|input| {
                        let fetched = s.elapsed();
                        let k = Instant::now();
                        ui::stage("guest kernel");
                        if let KernelInput::Tree {
                            tree: t,
                            source,
                            ctrls,
                        } = &input
                        {
                            tree = Some((t.clone(), source.clone(), ctrls.clone()));
                        }
                        Ok((input.plan()?, fetched, k))
                    });
                let _ = uapi_tx.send(match &planned {
                    Ok((plan, ..)) => Ok(plan.uapi().map(Path::to_path_buf)),
                    Err(e) => Err(format!("{e:#}")),
                });
                let (plan, fetched, k) = match planned {
                    Ok(p) => p,
                    // Stopped for an unaffected QEMU, or failed: named only
                    // once QEMU's input is known good (a QEMU that fails
                    // to fetch has stopped this track and is the error).
                    Err(e) => {
                        return match decided_rx.recv() {
                            Ok(true) => Ok(None),
                            _ => Err(e),
                        }
                    }
                };
                let kernel = plan.finish()?;
                let sets = self.kernel_patches.sets()?;
                let variants = match (&tree, sets.is_empty()) {
                    (_, true) => vec![],
                    (Some((t, source, ctrls)), false) => {
                        ui::stage("guest kernel variants");
                        let uapi = kernel.uapi.clone().context("the tree's kernel has no header export")?;
                        kernel_variant::build(t, source, ctrls, &uapi, &sets)?
                    }
                    (None, false) => bail!("kernel patches need a guest kernel built from a tree (--kernel-tree, or the default Debian source), not a prebuilt --kernel"),
                };
                Ok(Some(KernelSide {
                    kernel,
                    variants,
                    fetched,
                    took: k.elapsed(),
                }))
            },
        )?;
        t.set("qemu_source", qemu_side.fetched);
        if qemu_side.input.unaffected().is_some() {
            return Ok((qemu_side.input, None));
        }
        let linux = match (kernel_side, qemu_side.selftest) {
            (Some(k), Some(st)) => {
                t.set("kernel_source", k.fetched);
                t.set("kernel", k.took);
                t.set("selftest", Duration::from_secs_f64(st.build_s));
                Some((k.kernel, st, k.variants))
            }
            _ => None,
        };
        if let Some(took) = qemu_side.prepare_took {
            t.set("qemu_prepare", took);
        }
        if let Some(p) = &qemu_side.probe {
            t.set("probe", Duration::from_secs_f64(p.build_s));
        }
        Ok((
            qemu_side.input,
            Some(Built {
                linux,
                probe: qemu_side.probe,
                prepared: qemu_side.prepared,
            }),
        ))
    }

    /// The selftest against the kernel's uapi (or the system's headers).
    pub fn build_selftest(&self, uapi: Option<&Path>) -> Result<selftest::Selftest> {
        ui::stage(&format!(
            "selftest (static, uapi from {})",
            uapi.map(|p| p.display().to_string())
                .unwrap_or_else(|| "the system headers".into())
        ));
        let st = selftest::build(uapi)?;
        ui::info(&format!(
            "selftest {} ({:.1} s)",
            st.binary.display(),
            st.build_s
        ));
        Ok(st)
    }

    /// QEMU's work copy and configure, when it is built from a tree.
    fn prepare_qemu(&self, input: &QemuInput) -> Result<Option<qemu::Prepared>> {
        let QemuInput::Tree {
            tree,
            baseline,
            sets,
            ..
        } = input
        else {
            return Ok(None);
        };
        let names: Vec<&str> = sets.iter().map(|s| s.name.as_str()).collect();
        ui::stage(&format!(
            "QEMU {} (baseline {}, then {})",
            tree.describe(),
            baseline.name(),
            names.join(", ")
        ));
        qemu::prepare(tree, *baseline, sets).map(Some)
    }
}
