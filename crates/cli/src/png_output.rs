//! Writing PNGs with the generation settings in text chunks, so that any image can be
//! reproduced: a `huatu` chunk holding the settings as JSON and a `parameters` chunk in
//! the plain-text form other SD tools show.

use std::path::Path;

use anyhow::Context;
use huatu_diffusion::pipelines::RgbImage;

/// Writes an RGB PNG with UTF-8 (iTXt) text chunks.
pub fn write_png(
    path: &Path,
    image: &RgbImage,
    text_chunks: &[(&str, String)],
) -> anyhow::Result<()> {
    let file =
        std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let mut encoder = png::Encoder::new(
        std::io::BufWriter::new(file),
        image.width as u32,
        image.height as u32,
    );
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    for (keyword, text) in text_chunks {
        encoder
            .add_itxt_chunk(keyword.to_string(), text.clone())
            .with_context(|| format!("cannot add text chunk {keyword}"))?;
    }
    let mut writer = encoder
        .write_header()
        .with_context(|| format!("cannot write {}", path.display()))?;
    writer
        .write_image_data(&image.pixels)
        .with_context(|| format!("cannot write {}", path.display()))?;
    writer
        .finish()
        .with_context(|| format!("cannot finish {}", path.display()))?;
    Ok(())
}
