//! The fitting arguments `preprocess` and `dataset build` share: target size or SDXL
//! bucket, how the aspect ratio is reconciled, the random-crop seed.

use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{Args, ValueEnum};
use huatu_imaging::{FitMode, FitOptions, ResizeFilter, Size, TargetSize};

#[derive(Args, Debug, Clone)]
pub struct FitArgs {
    /// Target size, e.g. 1024x1024.
    #[arg(
        long,
        value_name = "WxH",
        required_unless_present = "bucket",
        conflicts_with = "bucket"
    )]
    pub size: Option<Size>,
    /// Each image to the bucket nearest its aspect ratio instead of a fixed size.
    #[arg(long, value_enum)]
    pub bucket: Option<BucketSet>,
    /// How the aspect ratio is reconciled with the target.
    #[arg(long, default_value = "center-crop", value_parser = PossibleValuesParser::new(FitMode::ALL.iter().map(|mode| mode.as_str())).try_map(|text| text.parse::<FitMode>()))]
    pub fit: FitMode,
    /// Seed for random-crop; each image's offset also depends on the image, so a re-run
    /// crops the same way.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// Sets of aspect-ratio buckets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BucketSet {
    /// SDXL's ~1-megapixel multi-aspect training resolutions.
    Sdxl,
}

impl FitArgs {
    /// The options `huatu_imaging::fit` takes, with this resampling filter.
    pub fn options(&self, filter: ResizeFilter) -> anyhow::Result<FitOptions> {
        let target = match (self.size, self.bucket) {
            (Some(size), _) => TargetSize::Exact(size),
            (None, Some(BucketSet::Sdxl)) => TargetSize::SdxlBucket,
            (None, None) => anyhow::bail!("give a target: --size WxH or --bucket sdxl"),
        };
        Ok(FitOptions {
            target,
            mode: self.fit,
            filter,
            seed: self.seed,
        })
    }
}
