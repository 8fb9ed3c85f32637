//! What a campaign boots of each variant the builds made: its binary and,
//! per guest, the images QEMU starts (a kernel variant is the Linux guest's
//! alone).

use anyhow::{Context, Result};
use contract::{Config, Guest};

use crate::campaign::VariantBoot;
use crate::guests::{GuestImage, GuestPlan};
use crate::variants::{Artifacts, Variant};

/// Every variant as the campaign boots it, the first (the baseline)
/// required, each disk in `config`.
pub fn of_variants(
    art: &Artifacts,
    plans: &[GuestPlan],
    config: Config,
) -> Result<Vec<VariantBoot>> {
    let mut variants = Vec::new();
    for (i, v) in art.variants.iter().enumerate() {
        let mut images = Vec::new();
        for p in plans
            .iter()
            .filter(|p| v.kernel.is_none() || p.guest == Guest::Linux)
        {
            images.push((p.guest, image(art, p.guest, v)?));
        }
        variants.push(VariantBoot {
            name: v.name.clone(),
            binary: v.binary.clone(),
            images,
            kernel_variant: v.kernel.is_some(),
            required: i == 0,
            config,
        });
    }
    Ok(variants)
}

/// What QEMU boots for `guest` in variant `v`.
fn image(art: &Artifacts, guest: Guest, v: &Variant) -> Result<GuestImage> {
    Ok(match guest {
        Guest::Linux if v.kernel.is_some() => {
            let k = v.kernel.as_ref().expect("checked");
            GuestImage::Linux {
                kernel: k.built.kernel.image.clone(),
                initrd: k.initrd.clone(),
            }
        }
        Guest::Linux => {
            let l = art
                .linux
                .as_ref()
                .context("the Linux guest was not built")?;
            GuestImage::Linux {
                kernel: l.kernel.image.clone(),
                initrd: l.initrd.clone(),
            }
        }
        Guest::Probe => GuestImage::Probe {
            bios: art.probe.clone().context("the probe guest was not built")?,
        },
    })
}
