//! What a report says the run measured, from what the builds made: the
//! QEMU (a tree's state, a binary or two, a shipped package and where it
//! ran) and what each variant is built from.

use anyhow::Result;

use crate::at_once::QemuInput;
use crate::patch::{PatchSet, State};
use crate::report::{KernelVariantInfo, PackageInfo, PatchFile, QemuInfo, QemuState, VariantBuild};
use crate::shipped;
use crate::variants::Variant;

/// What the report says a variant is built from.
pub fn variant_build(v: &Variant) -> Result<VariantBuild> {
    let files = |set: Option<&PatchSet>| -> Result<Vec<PatchFile>> {
        Ok(match set {
            Some(set) => set
                .hashes()?
                .into_iter()
                .map(|(path, sha256)| PatchFile { path, sha256 })
                .collect(),
            None => vec![],
        })
    };
    Ok(VariantBuild {
        name: v.name.clone(),
        binary: v.binary.clone(),
        changes: v.changes(),
        against: v.against.clone(),
        kernel_patches: files(v.kernel.as_ref().map(|k| &k.built.set))?,
        kernel: v.kernel.as_ref().map(|k| KernelVariantInfo {
            image: k.built.kernel.image.clone(),
            release: k.built.kernel.release.clone(),
            objects_compiled: k.built.objects,
            uapi_changed: k.built.uapi_changed,
            build_s: k.built.kernel.build_s,
        }),
        patches: files(v.patches.as_ref())?,
    })
}

/// The shipped packages' part of the report: the first is the measured
/// (or baseline) binary's, the second the one compared with.
pub fn with_packages(mut info: QemuInfo, shipped: &[shipped::Shipped]) -> QemuInfo {
    let of = |p: &shipped::Shipped| PackageInfo {
        name: crate::deb::PACKAGE.into(),
        version: p.version.clone(),
        suite: p.suite.clone(),
        sha256: p.sha256.clone(),
        release_date: p.release_date.clone(),
        ran_on: p.place.name().into(),
        tree: match &p.place {
            shipped::Place::Tree(t) => Some(t.clone()),
            shipped::Place::Host => None,
        },
    };
    info.package = shipped.first().map(of);
    info.compared_package = shipped.get(1).map(of);
    info
}

/// One line naming a shipped package, above the report's tables.
pub fn package_line(p: &PackageInfo) -> String {
    format!(
        "package: {} {} ({}{}), sha256 {}, ran {}",
        p.name,
        p.version,
        p.suite.as_deref().unwrap_or("in no suite"),
        p.release_date
            .as_deref()
            .map(|d| format!(", Release of {d}"))
            .unwrap_or_default(),
        p.sha256,
        match &p.tree {
            Some(t) => format!("in its suite's tree {}", t.display()),
            None => "on the host".into(),
        }
    )
}

/// What was measured of QEMU: a tree, a binary or two.
pub fn qemu_info(input: &QemuInput) -> QemuInfo {
    match input {
        QemuInput::Tree {
            tree,
            state,
            baseline,
            ..
        } => QemuInfo {
            version: Some(tree.version.clone()),
            debian_version: tree.debian_version.clone(),
            tree: Some(tree.root.clone()),
            binary: None,
            compared_with: None,
            state: QemuState::of_tree(state),
            baseline: (*state != State::Unaffected).then(|| baseline.name().into()),
            ..QemuInfo::default()
        },
        QemuInput::Binary(b, version) => QemuInfo {
            version: Some(version.clone()),
            binary: Some(b.clone()),
            state: QemuState::Binary,
            ..QemuInfo::default()
        },
        QemuInput::Pair(a, b, version) => QemuInfo {
            version: Some(version.clone()),
            binary: Some(a.clone()),
            compared_with: Some(b.clone()),
            state: QemuState::Binaries,
            ..QemuInfo::default()
        },
    }
}
