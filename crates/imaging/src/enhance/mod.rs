//! The image quality optimization cluster (DESIGN.md part 4): small composable steps,
//! classical ones (denoise, sharpen, contrast, white balance, saturation, vibrance,
//! gamma) and the AI one (Real-ESRGAN upscale), each with a table of documented
//! parameters; [`preset`] names chains of them and recommends one per scenario.
//! A step list is written as in `huatu enhance --steps "denoise,sharpen:amount=0.6,upscale:x2"`
//! (grammar in [`params`]); [`Step`]'s `Display` writes the same syntax back.

pub mod blur;
pub mod clahe;
pub mod color;
pub mod color_space;
pub mod denoise;
pub mod params;
pub mod preset;
pub mod sharpen;

use std::fmt;
use std::str::FromStr;
use std::time::Instant;

use image::{DynamicImage, Rgb32FImage};

use crate::error::{ImagingError, Result};
use crate::io::{ensure_not_empty, SplitImage};
use crate::resize::{resize_gray8, ResizeFilter};
use crate::sr::{TileOptions, Upscaler};
use clahe::ClaheParams;
use color::{WhiteBalanceMethod, WhiteBalanceParams};
use denoise::BilateralParams;
use params::{resolve_values, split_steps, ParamSpec};
use sharpen::UnsharpParams;

/// The name of an enhancer step: one spelling for the CLI, HTTP and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StepKind {
    Denoise,
    Sharpen,
    Contrast,
    WhiteBalance,
    Saturation,
    Vibrance,
    Gamma,
    Upscale,
}

const DENOISE: [ParamSpec; 3] = [
    ParamSpec::number(
        "sigma_color",
        0.08,
        0.001,
        1.0,
        "colour difference (RGB in 0–1) that still counts as noise",
    ),
    ParamSpec::number("sigma_space", 2.0, 0.5, 20.0, "spatial spread in pixels"),
    ParamSpec::integer(
        "radius",
        0.0,
        0.0,
        25.0,
        "window radius in pixels; 0 = round(1.5·sigma_space)",
    ),
];
const SHARPEN: [ParamSpec; 3] = [
    ParamSpec::number("amount", 0.5, 0.0, 5.0, "how much detail is added back"),
    ParamSpec::number(
        "sigma",
        1.0,
        0.1,
        20.0,
        "blur σ in pixels: the size of detail sharpened",
    ),
    ParamSpec::number(
        "threshold",
        0.0,
        0.0,
        1.0,
        "differences at or below this are left alone",
    ),
];
const CONTRAST: [ParamSpec; 2] = [
    ParamSpec::number(
        "clip_limit",
        2.0,
        0.0,
        40.0,
        "CLAHE contrast limit; 0 = no limit",
    ),
    ParamSpec::integer("grid", 8.0, 1.0, 64.0, "tiles along each side"),
];
const WHITE_BALANCE: [ParamSpec; 3] = [
    ParamSpec::choice(
        "method",
        &["gray-world", "white-patch"],
        "how the illuminant is estimated",
    ),
    ParamSpec::number(
        "percentile",
        99.0,
        50.0,
        100.0,
        "white-patch: channel percentile made white",
    ),
    ParamSpec::number(
        "strength",
        1.0,
        0.0,
        1.0,
        "0 = unchanged, 1 = full correction",
    ),
];
const SATURATION: [ParamSpec; 1] = [ParamSpec::number(
    "factor",
    1.2,
    0.0,
    4.0,
    "0 = grey, 1 = unchanged",
)];
const VIBRANCE: [ParamSpec; 1] = [ParamSpec::number(
    "amount",
    0.3,
    -1.0,
    1.0,
    "boost (or mute) of dull colours",
)];
const GAMMA: [ParamSpec; 1] = [ParamSpec::number(
    "gamma",
    1.1,
    0.1,
    10.0,
    "out = in^(1/gamma); above 1 brightens",
)];
const UPSCALE: [ParamSpec; 3] = [
    ParamSpec::number(
        "scale",
        0.0,
        0.0,
        8.0,
        "output scale (x2 = 2); 0 = the model's own",
    ),
    ParamSpec::integer(
        "tile",
        256.0,
        0.0,
        4096.0,
        "tile side in input pixels; 0 = whole image",
    ),
    ParamSpec::integer(
        "tile_pad",
        10.0,
        0.0,
        256.0,
        "context around each tile in input pixels",
    ),
];

impl StepKind {
    pub const ALL: [StepKind; 8] = [
        StepKind::Denoise,
        StepKind::Sharpen,
        StepKind::Contrast,
        StepKind::WhiteBalance,
        StepKind::Saturation,
        StepKind::Vibrance,
        StepKind::Gamma,
        StepKind::Upscale,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            StepKind::Denoise => "denoise",
            StepKind::Sharpen => "sharpen",
            StepKind::Contrast => "contrast",
            StepKind::WhiteBalance => "white-balance",
            StepKind::Saturation => "saturation",
            StepKind::Vibrance => "vibrance",
            StepKind::Gamma => "gamma",
            StepKind::Upscale => "upscale",
        }
    }

    /// What the step does, for `--help` listings.
    pub fn description(self) -> &'static str {
        match self {
            StepKind::Denoise => "edge-preserving bilateral filter",
            StepKind::Sharpen => "unsharp mask",
            StepKind::Contrast => "CLAHE on L*",
            StepKind::WhiteBalance => "gray-world or white-patch white balance",
            StepKind::Saturation => "blend with luma",
            StepKind::Vibrance => "saturation that spares vivid colours",
            StepKind::Gamma => "gamma curve",
            StepKind::Upscale => "Real-ESRGAN super-resolution (needs weights)",
        }
    }

    /// The step's parameters, in the order a bare first value and `Display` use.
    pub fn params(self) -> &'static [ParamSpec] {
        match self {
            StepKind::Denoise => &DENOISE,
            StepKind::Sharpen => &SHARPEN,
            StepKind::Contrast => &CONTRAST,
            StepKind::WhiteBalance => &WHITE_BALANCE,
            StepKind::Saturation => &SATURATION,
            StepKind::Vibrance => &VIBRANCE,
            StepKind::Gamma => &GAMMA,
            StepKind::Upscale => &UPSCALE,
        }
    }
}

impl fmt::Display for StepKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for StepKind {
    type Err = ImagingError;
    fn from_str(text: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|kind| kind.as_str() == text)
            .ok_or_else(|| ImagingError::UnknownName {
                what: "enhancer step",
                given: text.to_string(),
                known: Self::ALL.map(|kind| kind.as_str()).join(", "),
            })
    }
}

/// Parameters of the upscale step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct UpscaleParams {
    /// Wanted output scale; `None` keeps the network's own.
    pub scale: Option<f32>,
    pub tiles: TileOptions,
}

/// One enhancer step with its parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Step {
    Denoise(BilateralParams),
    Sharpen(UnsharpParams),
    Contrast(ClaheParams),
    WhiteBalance(WhiteBalanceParams),
    Saturation { factor: f32 },
    Vibrance { amount: f32 },
    Gamma { gamma: f32 },
    Upscale(UpscaleParams),
}

impl Step {
    pub fn kind(&self) -> StepKind {
        match self {
            Step::Denoise(_) => StepKind::Denoise,
            Step::Sharpen(_) => StepKind::Sharpen,
            Step::Contrast(_) => StepKind::Contrast,
            Step::WhiteBalance(_) => StepKind::WhiteBalance,
            Step::Saturation { .. } => StepKind::Saturation,
            Step::Vibrance { .. } => StepKind::Vibrance,
            Step::Gamma { .. } => StepKind::Gamma,
            Step::Upscale(_) => StepKind::Upscale,
        }
    }

    /// The step with its documented defaults.
    pub fn with_defaults(kind: StepKind) -> Step {
        let values: Vec<f64> = kind.params().iter().map(|spec| spec.default).collect();
        Step::from_values(kind, &values)
    }

    /// Builds a step from values already checked against `kind.params()`, in order.
    fn from_values(kind: StepKind, values: &[f64]) -> Step {
        let value = |index: usize| values.get(index).copied().unwrap_or(0.0) as f32;
        let whole = |index: usize| values.get(index).copied().unwrap_or(0.0) as usize;
        match kind {
            StepKind::Denoise => Step::Denoise(BilateralParams {
                sigma_color: value(0),
                sigma_space: value(1),
                radius: whole(2),
            }),
            StepKind::Sharpen => Step::Sharpen(UnsharpParams {
                amount: value(0),
                sigma: value(1),
                threshold: value(2),
            }),
            StepKind::Contrast => Step::Contrast(ClaheParams {
                clip_limit: value(0),
                grid: whole(1),
            }),
            StepKind::WhiteBalance => Step::WhiteBalance(WhiteBalanceParams {
                method: if whole(0) == 1 {
                    WhiteBalanceMethod::WhitePatch
                } else {
                    WhiteBalanceMethod::GrayWorld
                },
                percentile: value(1),
                strength: value(2),
            }),
            StepKind::Saturation => Step::Saturation { factor: value(0) },
            StepKind::Vibrance => Step::Vibrance { amount: value(0) },
            StepKind::Gamma => Step::Gamma { gamma: value(0) },
            StepKind::Upscale => Step::Upscale(UpscaleParams {
                scale: (value(0) > 0.0).then(|| value(0)),
                tiles: TileOptions {
                    tile_size: whole(1),
                    tile_pad: whole(2),
                },
            }),
        }
    }

    /// The values in `kind().params()` order (the inverse of `from_values`).
    fn values(&self) -> Vec<f64> {
        let f = |value: f32| f64::from(value);
        match *self {
            Step::Denoise(p) => vec![f(p.sigma_color), f(p.sigma_space), p.radius as f64],
            Step::Sharpen(p) => vec![f(p.amount), f(p.sigma), f(p.threshold)],
            Step::Contrast(p) => vec![f(p.clip_limit), p.grid as f64],
            Step::WhiteBalance(p) => {
                let method = match p.method {
                    WhiteBalanceMethod::GrayWorld => 0.0,
                    WhiteBalanceMethod::WhitePatch => 1.0,
                };
                vec![method, f(p.percentile), f(p.strength)]
            }
            Step::Saturation { factor } => vec![f(factor)],
            Step::Vibrance { amount } => vec![f(amount)],
            Step::Gamma { gamma } => vec![f(gamma)],
            Step::Upscale(p) => vec![
                f(p.scale.unwrap_or(0.0)),
                p.tiles.tile_size as f64,
                p.tiles.tile_pad as f64,
            ],
        }
    }

    /// Parses a whole step list, e.g. `denoise,sharpen:amount=0.6,upscale:x2`.
    pub fn parse_list(text: &str) -> Result<Vec<Step>> {
        split_steps(text)?
            .into_iter()
            .map(|raw| {
                let kind: StepKind = raw.name.parse()?;
                let values = resolve_values(kind.as_str(), kind.params(), &raw.args)?;
                Ok(Step::from_values(kind, &values))
            })
            .collect()
    }

    /// Applies the step to the colour of an image.
    pub fn apply(&self, rgb: Rgb32FImage, upscaler: Option<&Upscaler>) -> Result<Rgb32FImage> {
        let (width, height) = rgb.dimensions();
        let (w, h) = (width as usize, height as usize);
        let rebuild = |data: Vec<f32>| {
            Rgb32FImage::from_raw(width, height, data).ok_or(ImagingError::Invalid {
                what: "enhancer",
                reason: "a step changed the number of pixels".to_string(),
            })
        };
        match self {
            Step::Denoise(params) => rebuild(denoise::bilateral_filter(rgb.as_raw(), w, h, params)),
            Step::Sharpen(params) => rebuild(sharpen::unsharp_mask(rgb.as_raw(), w, h, 3, params)),
            Step::Contrast(params) => rebuild(clahe::clahe_rgb(rgb.as_raw(), w, h, params)),
            Step::WhiteBalance(params) => {
                let mut rgb = rgb;
                color::white_balance(&mut rgb, params);
                Ok(rgb)
            }
            Step::Saturation { factor } => {
                let mut rgb = rgb;
                color::saturation(&mut rgb, *factor);
                Ok(rgb)
            }
            Step::Vibrance { amount } => {
                let mut rgb = rgb;
                color::vibrance(&mut rgb, *amount);
                Ok(rgb)
            }
            Step::Gamma { gamma } => {
                let mut rgb = rgb;
                color::gamma(&mut rgb, *gamma);
                Ok(rgb)
            }
            Step::Upscale(params) => upscaler.ok_or(ImagingError::UpscalerMissing)?.upscale(
                &rgb,
                params.scale,
                params.tiles,
            ),
        }
    }
}

impl fmt::Display for Step {
    /// The canonical spelling, with every parameter: `sharpen:amount=0.6:sigma=1:threshold=0`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = self.kind();
        f.write_str(kind.as_str())?;
        for (spec, value) in kind.params().iter().zip(self.values()) {
            write!(f, ":{}={}", spec.name, spec.format(value))?;
        }
        Ok(())
    }
}

/// A step list in the `--steps` syntax.
pub fn format_steps(steps: &[Step]) -> String {
    steps
        .iter()
        .map(Step::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// Runs `steps` in order on `image`. Alpha is kept aside and resized along with any
/// upscale. An upscale step without an upscaler fails before any work is done.
pub fn enhance(
    image: &DynamicImage,
    steps: &[Step],
    upscaler: Option<&Upscaler>,
) -> Result<DynamicImage> {
    ensure_not_empty("input image", image.width(), image.height())?;
    if upscaler.is_none() && steps.iter().any(|step| step.kind() == StepKind::Upscale) {
        return Err(ImagingError::UpscalerMissing);
    }
    let mut split = SplitImage::from_dynamic(image);
    for step in steps {
        let started = Instant::now();
        let _span = tracing::info_span!("enhance_step", step = %step).entered();
        split.rgb = step.apply(split.rgb, upscaler)?;
        if let Some(alpha) = split.alpha.as_mut() {
            if alpha.dimensions() != split.rgb.dimensions() {
                *alpha = resize_gray8(alpha, split.rgb.dimensions(), ResizeFilter::Lanczos3)?;
            }
        }
        tracing::info!(step = %step, seconds = started.elapsed().as_secs_f64(), "enhancer step done");
    }
    Ok(split.into_dynamic())
}

#[cfg(test)]
#[path = "steps_tests.rs"]
mod tests;
