//! `huatu enhance`: runs a chain of enhancer steps (a preset, a scenario's recommended
//! preset, and/or an explicit `--steps` list) on one image; `--list` prints every step
//! with its parameters, the presets and the scenario defaults.

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::Args;
use huatu_imaging::enhance::params::ParamKind;
use huatu_imaging::io::{load_image, save_image};
use huatu_imaging::{enhance, format_steps, Preset, Scenario, Step, StepKind, Upscaler};
use serde_json::json;

use crate::device_args::DeviceArgs;

#[derive(Args, Debug)]
pub struct EnhanceArgs {
    /// The image to improve.
    #[arg(long = "in", value_name = "IMG", required_unless_present = "list")]
    pub input: Option<PathBuf>,
    /// Where to write the result (png, jpg or webp by extension).
    #[arg(long = "out", value_name = "IMG", required_unless_present = "list")]
    pub output: Option<PathBuf>,
    /// A named chain of steps (see --list).
    #[arg(long, conflicts_with = "scenario", value_parser = PossibleValuesParser::new(Preset::ALL.iter().map(|p| p.as_str())).map(|s| s.parse::<Preset>().unwrap_or(Preset::None)))]
    pub preset: Option<Preset>,
    /// Use the preset recommended for this scenario.
    #[arg(long, value_parser = PossibleValuesParser::new(Scenario::ALL.iter().map(|s| s.as_str())).map(|s| s.parse::<Scenario>().unwrap_or(Scenario::Edit)))]
    pub scenario: Option<Scenario>,
    /// Steps to run (after the preset's, if any), e.g. "denoise,sharpen:amount=0.6,upscale:x2".
    #[arg(long, value_name = "LIST")]
    pub steps: Option<String>,
    /// Real-ESRGAN weights for the upscale step (.pth or .safetensors: RRDBNet ×4/×2/×1
    /// such as RealESRGAN_x4plus.pth, or SRVGGNetCompact such as realesr-general-x4v3.pth).
    #[arg(long, value_name = "FILE")]
    pub sr_model: Option<PathBuf>,
    /// Print the steps, their parameters, the presets and the scenario defaults.
    #[arg(long)]
    pub list: bool,
    #[command(flatten)]
    pub device: DeviceArgs,
}

pub fn run(args: EnhanceArgs) -> anyhow::Result<()> {
    if args.list {
        print!("{}", listing());
        return Ok(());
    }
    let (Some(input), Some(output)) = (args.input, args.output) else {
        bail!("--in and --out are required");
    };
    let preset = args
        .preset
        .or(args.scenario.map(Scenario::recommended_preset));
    let mut steps = match preset {
        Some(preset) => preset.steps()?,
        None => Vec::new(),
    };
    if let Some(list) = &args.steps {
        steps.extend(Step::parse_list(list)?);
    }
    if preset.is_none() && args.steps.is_none() {
        bail!("say what to do: --preset NAME, --scenario NAME or --steps LIST (see --list)");
    }
    let needs_upscaler = steps.iter().any(|step| step.kind() == StepKind::Upscale);
    let upscaler = match (&args.sr_model, needs_upscaler) {
        (Some(path), true) => Some(Upscaler::load_on(path, &args.device.open()?)?),
        (None, true) => bail!("the upscale step needs Real-ESRGAN weights: pass --sr-model FILE (.pth or .safetensors)"),
        (_, false) => None,
    };
    let image = load_image(&input)?;
    eprintln!(
        "enhancing {} ({}×{}) with {}",
        input.display(),
        image.width(),
        image.height(),
        if steps.is_empty() {
            "no steps".to_string()
        } else {
            format_steps(&steps)
        }
    );
    if let Some(upscaler) = &upscaler {
        eprintln!(
            "super-resolution model: {} from {}",
            upscaler.describe(),
            upscaler.path().display()
        );
    }
    let started = std::time::Instant::now();
    let result = enhance(&image, &steps, upscaler.as_ref())
        .with_context(|| format!("cannot enhance {}", input.display()))?;
    save_image(&result, &output)?;
    eprintln!(
        "wrote {} in {:.2} s",
        output.display(),
        started.elapsed().as_secs_f64()
    );
    let line = json!({
        "input": input.display().to_string(),
        "output": output.display().to_string(),
        "preset": preset.map(Preset::as_str),
        "steps": format_steps(&steps),
        "width": result.width(),
        "height": result.height(),
    });
    println!("{line}");
    Ok(())
}

fn listing() -> String {
    let mut text = String::from("steps:\n");
    for kind in StepKind::ALL {
        text.push_str(&format!("  {:<14} {}\n", kind.as_str(), kind.description()));
        for spec in kind.params() {
            let range = match spec.kind {
                ParamKind::Number { min, max, .. } => format!("{min}–{max}"),
                ParamKind::Choice(options) => options.join(" | "),
            };
            text.push_str(&format!(
                "      {:<12} default {:<11} {:<24} {}\n",
                spec.name,
                spec.format(spec.default),
                range,
                spec.doc
            ));
        }
    }
    text.push_str("presets:\n");
    for preset in Preset::ALL {
        let definition = if preset.definition().is_empty() {
            "(no steps)"
        } else {
            preset.definition()
        };
        text.push_str(&format!("  {:<14} {}\n", preset.as_str(), definition));
    }
    text.push_str("scenario defaults:\n");
    for scenario in Scenario::ALL {
        text.push_str(&format!(
            "  {:<14} {}\n",
            scenario.as_str(),
            scenario.recommended_preset()
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Wrapper {
        #[command(flatten)]
        args: EnhanceArgs,
    }

    fn parse(argv: &[&str]) -> Result<EnhanceArgs, clap::Error> {
        Wrapper::try_parse_from(std::iter::once("enhance").chain(argv.iter().copied()))
            .map(|w| w.args)
    }

    fn fixture(name: &str) -> String {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/fixtures/realesrgan")
            .join(name);
        path.display().to_string()
    }

    #[test]
    fn preset_and_upscale_run_end_to_end() -> anyhow::Result<()> {
        let dir = std::env::temp_dir().join(format!("huatu-enhance-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let (input, output) = (dir.join("in.png"), dir.join("out.png"));
        image::RgbImage::from_fn(12, 9, |x, y| {
            image::Rgb([(x * 20) as u8, (y * 25) as u8, 128])
        })
        .save(&input)?;
        let (i, o, model) = (
            input.display().to_string(),
            output.display().to_string(),
            fixture("srvgg_x4.pth"),
        );
        run(parse(&[
            "--in",
            &i,
            "--out",
            &o,
            "--scenario",
            "poster",
            "--steps",
            "upscale:x2",
            "--sr-model",
            &model,
        ])?)?;
        let written = image::open(&output)?;
        assert_eq!((written.width(), written.height()), (24, 18));
        // without weights the upscale step is refused before any work
        let error = run(parse(&["--in", &i, "--out", &o, "--steps", "upscale"])?)
            .err()
            .map(|e| e.to_string());
        assert!(error.unwrap_or_default().contains("--sr-model"));
        let error = run(parse(&[
            "--in",
            &i,
            "--out",
            &o,
            "--steps",
            "sharpen:amount=9",
        ])?)
        .err()
        .map(|e| e.to_string());
        assert_eq!(
            error.unwrap_or_default(),
            "step sharpen: parameter amount must be between 0 and 5, got 9"
        );
        std::fs::remove_dir_all(&dir).ok();
        Ok(())
    }

    #[test]
    fn arguments_are_checked() {
        assert!(parse(&["--in", "a"]).is_err(), "--out is required");
        assert!(parse(&["--list"]).is_ok());
        assert!(
            parse(&["--in", "a", "--out", "b", "--preset", "poster"]).is_err(),
            "poster is a scenario"
        );
        assert!(parse(&[
            "--in",
            "a",
            "--out",
            "b",
            "--preset",
            "vivid",
            "--scenario",
            "poster"
        ])
        .is_err());
        let args = parse(&["--in", "a", "--out", "b", "--scenario", "portrait"]).ok();
        assert_eq!(args.and_then(|a| a.scenario), Some(Scenario::Portrait));
    }

    #[test]
    fn listing_names_every_step_preset_and_scenario() {
        let text = listing();
        for kind in StepKind::ALL {
            assert!(text.contains(kind.as_str()));
        }
        for preset in Preset::ALL {
            assert!(text.contains(preset.definition()));
        }
        assert!(text.contains("poster         vivid"));
    }
}
