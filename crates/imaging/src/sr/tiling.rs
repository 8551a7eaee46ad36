//! Tiled inference with overlap so that any image fits in memory, exactly as
//! Real-ESRGAN's `RealESRGANer` (realesrgan/utils.py) does it: reflect-pad the input
//! to a multiple of 2 (×2 models) or 4 (×1 models), cut it into `tile_size` squares,
//! run each with `tile_pad` pixels of context on every side, keep only the square's
//! own part of each output, and crop the padding off at the end.

use candle_core::{Module, Result, Tensor};

/// How an image is cut for inference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TileOptions {
    /// Side of a tile in input pixels; 0 runs the whole image at once.
    pub tile_size: usize,
    /// Context added on each side of a tile, in input pixels (RealESRGANer's default is 10).
    pub tile_pad: usize,
}

impl Default for TileOptions {
    fn default() -> Self {
        Self {
            tile_size: 256,
            tile_pad: 10,
        }
    }
}

/// The multiple the input sides must have for the pixel-unshuffle of ×2 and ×1 RRDBNets.
pub fn mod_scale(net_scale: usize) -> usize {
    match net_scale {
        2 => 2,
        1 => 4,
        _ => 1,
    }
}

/// Pads `pad` rows or columns at the end of dimension `dim` by reflection (PyTorch's
/// `F.pad(..., 'reflect')`, which leaves out the edge itself). Falls back to repeating
/// the edge where the image is too small to reflect, which PyTorch refuses.
fn reflect_pad_end(xs: &Tensor, dim: usize, pad: usize) -> Result<Tensor> {
    if pad == 0 {
        return Ok(xs.clone());
    }
    let size = xs.dim(dim)?;
    let mut parts = vec![xs.clone()];
    for offset in 0..pad {
        let index = if size > pad {
            size - 2 - offset
        } else {
            size - 1
        };
        parts.push(xs.narrow(dim, index, 1)?);
    }
    Tensor::cat(&parts, dim)
}

/// Runs `model` over `input` ([1, c, h, w]) tile by tile; returns the raw, unclamped
/// output [1, c', h·s, w·s] for a network of scale `net_scale`.
pub fn tiled_forward(
    model: &impl Module,
    input: &Tensor,
    net_scale: usize,
    options: TileOptions,
) -> Result<Tensor> {
    let (_, _, height, width) = input.dims4()?;
    let multiple = mod_scale(net_scale);
    let pad_h = (multiple - height % multiple) % multiple;
    let pad_w = (multiple - width % multiple) % multiple;
    let image = reflect_pad_end(&reflect_pad_end(input, 2, pad_h)?, 3, pad_w)?;
    let (padded_h, padded_w) = (height + pad_h, width + pad_w);

    let output = if options.tile_size == 0
        || (options.tile_size >= padded_h && options.tile_size >= padded_w)
    {
        model.forward(&image)?
    } else {
        // Tiles and context must keep every tile a multiple of `multiple`.
        let round = |value: usize| value.div_ceil(multiple) * multiple;
        let (tile_size, tile_pad) = (round(options.tile_size), round(options.tile_pad));
        let mut rows = Vec::new();
        for start_y in (0..padded_h).step_by(tile_size) {
            let end_y = (start_y + tile_size).min(padded_h);
            let mut row = Vec::new();
            for start_x in (0..padded_w).step_by(tile_size) {
                let end_x = (start_x + tile_size).min(padded_w);
                let start_y_pad = start_y.saturating_sub(tile_pad);
                let end_y_pad = (end_y + tile_pad).min(padded_h);
                let start_x_pad = start_x.saturating_sub(tile_pad);
                let end_x_pad = (end_x + tile_pad).min(padded_w);
                let _span = tracing::trace_span!("tile", start_y, start_x).entered();
                let tile = image
                    .narrow(2, start_y_pad, end_y_pad - start_y_pad)?
                    .narrow(3, start_x_pad, end_x_pad - start_x_pad)?;
                let output_tile = model.forward(&tile)?;
                // keep the tile's own square: [1, c', (end_y-start_y)·s, (end_x-start_x)·s]
                let kept = output_tile
                    .narrow(
                        2,
                        (start_y - start_y_pad) * net_scale,
                        (end_y - start_y) * net_scale,
                    )?
                    .narrow(
                        3,
                        (start_x - start_x_pad) * net_scale,
                        (end_x - start_x) * net_scale,
                    )?;
                row.push(kept);
            }
            rows.push(Tensor::cat(&row, 3)?);
        }
        Tensor::cat(&rows, 2)?
    };
    output
        .narrow(2, 0, height * net_scale)?
        .narrow(3, 0, width * net_scale)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn reflect_pad_matches_pytorch() -> Result<()> {
        // F.pad([[0,1,2]], (0, 2), 'reflect') = [[0,1,2,1,0]]
        let xs = Tensor::new(&[[[[0f32, 1., 2.]]]], &Device::Cpu)?;
        let padded = reflect_pad_end(&xs, 3, 2)?;
        assert_eq!(
            padded.flatten_all()?.to_vec1::<f32>()?,
            [0., 1., 2., 1., 0.]
        );
        Ok(())
    }

    #[test]
    fn tiling_an_identity_model_gives_the_input_back() -> Result<()> {
        struct Identity;
        impl Module for Identity {
            fn forward(&self, xs: &Tensor) -> Result<Tensor> {
                Ok(xs.clone())
            }
        }
        let input =
            Tensor::arange(0f32, 3.0 * 13.0 * 17.0, &Device::Cpu)?.reshape((1, 3, 13, 17))?;
        // net scale 1 also exercises the reflect padding to a multiple of 4 and its crop
        for (tile_size, tile_pad) in [(5, 3), (4, 0), (100, 0), (0, 0)] {
            let options = TileOptions {
                tile_size,
                tile_pad,
            };
            let output = tiled_forward(&Identity, &input, 1, options)?;
            assert_eq!(output.dims(), input.dims());
            let difference = (output - &input)?.abs()?.max_all()?;
            assert_eq!(difference.to_scalar::<f32>()?, 0.0, "{options:?}");
        }
        Ok(())
    }
}
