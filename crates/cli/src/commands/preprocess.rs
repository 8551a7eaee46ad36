//! `huatu preprocess`: brings one image or a folder of images to a target size keeping
//! the aspect ratio (pad with the mean colour, center or seeded random crop), to a
//! fixed size or to each image's nearest SDXL bucket. One JSON line per image on stdout
//! carries the original size and crop offsets that SDXL's micro-conditioning wants;
//! a folder run reports bad files on stderr, goes on, and fails at the end if any did.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::Args;
use huatu_imaging::io::{load_image, save_image};
use huatu_imaging::{fit, FitMode, FitOptions, FitReport, ResizeFilter, Size};

use crate::error_report::one_line;
use crate::fit_args::FitArgs;
use serde_json::json;

/// File extensions a folder run picks up.
const IMAGE_EXTENSIONS: [&str; 4] = ["png", "jpg", "jpeg", "webp"];

#[derive(Args, Debug)]
pub struct PreprocessArgs {
    /// An image, or a folder of images (png, jpg, webp; not recursive).
    #[arg(long = "in", value_name = "IMG|DIR")]
    pub input: PathBuf,
    /// The output image, or the output folder for a folder input (created if missing;
    /// files keep their names and formats).
    #[arg(long = "out", value_name = "IMG|DIR")]
    pub output: PathBuf,
    #[command(flatten)]
    pub fit: FitArgs,
    /// Resampling filter.
    #[arg(long, default_value = "lanczos3", value_parser = PossibleValuesParser::new(ResizeFilter::ALL.map(ResizeFilter::as_str)).try_map(|text| text.parse::<ResizeFilter>()))]
    pub filter: ResizeFilter,
}

pub fn run(args: PreprocessArgs) -> anyhow::Result<()> {
    let options = args.fit.options(args.filter)?;
    if !args.input.is_dir() {
        let options = FitOptions {
            seed: file_seed(args.fit.seed, &args.input),
            ..options
        };
        // an existing folder as --out receives the file under its own name
        let output = match args.input.file_name() {
            Some(name) if args.output.is_dir() => args.output.join(name),
            _ => args.output.clone(),
        };
        let report = prepare(&args.input, &output, &options)?;
        println!("{}", report_line(&args.input, &output, &options, &report));
        return Ok(());
    }
    let files = image_files(&args.input)?;
    if files.is_empty() {
        bail!(
            "{} holds no images ({})",
            args.input.display(),
            IMAGE_EXTENSIONS.join(", ")
        );
    }
    if args.output.is_file() {
        bail!(
            "--out {} must be a folder when --in is a folder",
            args.output.display()
        );
    }
    std::fs::create_dir_all(&args.output)
        .with_context(|| format!("cannot create output folder {}", args.output.display()))?;
    let bar = progress_bar(files.len());
    let mut failed = 0usize;
    for file in &files {
        let name = file.file_name().map(PathBuf::from).unwrap_or_default();
        bar.set_message(name.display().to_string());
        let output = args.output.join(&name);
        let options = FitOptions {
            seed: file_seed(args.fit.seed, file),
            ..options
        };
        match prepare(file, &output, &options) {
            Ok(report) => println!("{}", report_line(file, &output, &options, &report)),
            Err(error) => {
                failed += 1;
                bar.suspend(|| {
                    eprintln!("skipped {}: {}", file.display(), one_line(error.as_ref()))
                });
            }
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    eprintln!(
        "prepared {} of {} images into {}",
        files.len() - failed,
        files.len(),
        args.output.display()
    );
    if failed > 0 {
        bail!(
            "{failed} of {} images could not be prepared (listed above)",
            files.len()
        );
    }
    Ok(())
}

fn prepare(input: &Path, output: &Path, options: &FitOptions) -> anyhow::Result<FitReport> {
    let image = load_image(input)?;
    let fitted = fit(&image, options)?;
    save_image(&image::DynamicImage::ImageRgb8(fitted.image), output)?;
    Ok(fitted.report)
}

/// The images directly inside `folder`, sorted by name.
fn image_files(folder: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let entries =
        std::fs::read_dir(folder).with_context(|| format!("cannot list {}", folder.display()))?;
    let mut files = Vec::new();
    for entry in entries {
        let path = entry
            .with_context(|| format!("cannot list {}", folder.display()))?
            .path();
        let extension = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        if path.is_file() && extension.is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.as_str())) {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// The run's seed mixed with the file name (FNV-1a), so each file gets its own crop
/// and the same crop on every run, whatever else is in the folder.
fn file_seed(seed: u64, path: &Path) -> u64 {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    huatu_imaging::keyed_seed(seed, &name)
}

fn report_line(input: &Path, output: &Path, options: &FitOptions, report: &FitReport) -> String {
    let size = |s: Size| json!({"width": s.width, "height": s.height});
    json!({
        "input": input.display().to_string(),
        "output": output.display().to_string(),
        "fit": options.mode.as_str(),
        "original_size": size(report.original_size),
        "resized_size": size(report.resized_size),
        "target_size": size(report.target_size),
        "crop_top_left": {"top": report.crop_top_left.0, "left": report.crop_top_left.1},
        "pad_top_left": {"top": report.pad_top_left.0, "left": report.pad_top_left.1},
        "fill": report.fill,
        "seed": (options.mode == FitMode::RandomCrop).then_some(options.seed),
    })
    .to_string()
}

fn progress_bar(count: usize) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(count as u64),
        indicatif::ProgressDrawTarget::stderr(),
    );
    let style = indicatif::ProgressStyle::with_template(
        "{msg:>24} [{bar:30}] {pos}/{len} {per_sec} eta {eta}",
    )
    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
    bar.set_style(style.progress_chars("=> "));
    bar
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Wrapper {
        #[command(flatten)]
        args: PreprocessArgs,
    }

    fn parse(argv: &[&str]) -> Result<PreprocessArgs, clap::Error> {
        Wrapper::try_parse_from(std::iter::once("preprocess").chain(argv.iter().copied()))
            .map(|w| w.args)
    }

    #[test]
    fn a_folder_run_skips_bad_files_and_reports_them() -> anyhow::Result<()> {
        let dir = std::env::temp_dir().join(format!("huatu-preprocess-{}", std::process::id()));
        let (input, output) = (dir.join("in"), dir.join("out"));
        std::fs::create_dir_all(&input)?;
        image::RgbImage::from_pixel(40, 20, image::Rgb([10, 200, 30])).save(input.join("a.png"))?;
        image::RgbImage::from_pixel(20, 40, image::Rgb([1, 2, 3])).save(input.join("b.jpg"))?;
        std::fs::write(input.join("broken.png"), b"\x89PNG\r\n\x1a\nnot really")?;
        std::fs::write(input.join("notes.txt"), b"ignored")?;
        let (i, o) = (input.display().to_string(), output.display().to_string());
        let args = parse(&["--in", &i, "--out", &o, "--size", "16x16", "--fit", "pad"])?;
        let error = run(args).err().map(|e| e.to_string()).unwrap_or_default();
        assert_eq!(error, "1 of 3 images could not be prepared (listed above)");
        let a = image::open(output.join("a.png"))?.to_rgb8();
        assert_eq!(a.dimensions(), (16, 16));
        assert_eq!(
            a.get_pixel(0, 0).0,
            [10, 200, 30],
            "padding uses the image's mean colour"
        );
        assert!(output.join("b.jpg").is_file());
        assert!(!output.join("broken.png").exists());
        std::fs::remove_dir_all(&dir).ok();
        Ok(())
    }

    #[test]
    fn arguments_are_checked() {
        assert!(
            parse(&["--in", "a", "--out", "b"]).is_err(),
            "a target is required"
        );
        assert!(parse(&["--in", "a", "--out", "b", "--size", "0x5"]).is_err());
        assert!(parse(&["--in", "a", "--out", "b", "--size", "8x8", "--bucket", "sdxl"]).is_err());
        assert!(parse(&["--in", "a", "--out", "b", "--size", "8x8", "--fit", "stretch"]).is_err());
        let args = parse(&[
            "--in",
            "a",
            "--out",
            "b",
            "--bucket",
            "sdxl",
            "--fit",
            "random-crop",
        ])
        .ok();
        assert_eq!(
            args.map(|a| (a.fit.fit, a.fit.bucket)),
            Some((FitMode::RandomCrop, Some(crate::fit_args::BucketSet::Sdxl)))
        );
    }

    #[test]
    fn file_seeds_differ_by_name_and_repeat() {
        let (a, b) = (Path::new("x/a.png"), Path::new("y/b.png"));
        assert_eq!(file_seed(1, a), file_seed(1, Path::new("other/a.png")));
        assert_ne!(file_seed(1, a), file_seed(1, b));
        assert_ne!(file_seed(1, a), file_seed(2, a));
    }
}
