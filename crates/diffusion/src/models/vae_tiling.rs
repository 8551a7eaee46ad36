//! The tiling of diffusers `AutoencoderKL.tiled_decode` / `_tiled_encode`
//! (models/autoencoders/autoencoder_kl.py): overlapping tiles processed one by one, each
//! blended with the tile above and to its left (`blend_v`, `blend_h`), then cropped.

use candle_core::{Result, Tensor};

/// The geometry of one tiled pass: input tiles of `input_tile` every `stride`, outputs
/// blended over `blend_extent` and cropped to `row_limit`.
pub(crate) struct TileLayout {
    input_tile: usize,
    stride: usize,
    blend_extent: usize,
    row_limit: usize,
}

impl TileLayout {
    pub(crate) fn new(input_tile: usize, output_tile: usize, overlap_factor: f64) -> Result<Self> {
        // Python's int() truncation.
        let stride = (input_tile as f64 * (1.0 - overlap_factor)) as usize;
        let blend_extent = (output_tile as f64 * overlap_factor) as usize;
        if stride == 0 || blend_extent > output_tile {
            candle_core::bail!(
                "VAE tiling: tiles of {input_tile} with overlap factor {overlap_factor} leave no stride"
            );
        }
        Ok(Self {
            input_tile,
            stride,
            blend_extent,
            row_limit: output_tile - blend_extent,
        })
    }

    /// Runs `process` on every tile of `xs` ([b, c, H, W]) and assembles the result. Rows
    /// are processed one at a time; like diffusers (which blends in place), each tile is
    /// blended with neighbours that were themselves already blended.
    pub(crate) fn run(
        &self,
        xs: &Tensor,
        process: impl Fn(&Tensor) -> Result<Tensor>,
    ) -> Result<Tensor> {
        let (_, _, height, width) = xs.dims4()?;
        let mut previous_row: Vec<Tensor> = Vec::new();
        let mut result_rows = Vec::new();
        for top in (0..height).step_by(self.stride) {
            let tile_height = self.input_tile.min(height - top);
            let mut row: Vec<Tensor> = Vec::new();
            for left in (0..width).step_by(self.stride) {
                let tile_width = self.input_tile.min(width - left);
                let tile = xs
                    .narrow(2, top, tile_height)?
                    .narrow(3, left, tile_width)?;
                let mut output = process(&tile)?;
                if let Some(above) = previous_row.get(row.len()) {
                    output = blend_vertical(above, &output, self.blend_extent)?;
                }
                if let Some(before) = row.last() {
                    output = blend_horizontal(before, &output, self.blend_extent)?;
                }
                row.push(output);
            }
            let cropped = row
                .iter()
                .map(|tile| self.crop(tile))
                .collect::<Result<Vec<_>>>()?;
            result_rows.push(Tensor::cat(&cropped, 3)?);
            previous_row = row;
        }
        Tensor::cat(&result_rows, 2)
    }

    /// `tile[:, :, :row_limit, :row_limit]`
    fn crop(&self, tile: &Tensor) -> Result<Tensor> {
        let (_, _, height, width) = tile.dims4()?;
        tile.narrow(2, 0, self.row_limit.min(height))?
            .narrow(3, 0, self.row_limit.min(width))
    }
}

/// diffusers `blend_v`/`blend_h` along `dim` (2 or 3): the first `extent` lines of `next`
/// fade in from the last `extent` lines of `previous`: line y is
/// `previous[-extent + y] · (1 - y/extent) + next[y] · (y/extent)`.
fn blend(previous: &Tensor, next: &Tensor, blend_extent: usize, dim: usize) -> Result<Tensor> {
    let previous_size = previous.dim(dim)?;
    let next_size = next.dim(dim)?;
    let extent = blend_extent.min(previous_size).min(next_size);
    if extent == 0 {
        return Ok(next.clone());
    }
    // Python computes the weights in double and multiplies in the tensor's dtype.
    let fade_in: Vec<f32> = (0..extent)
        .map(|y| (y as f64 / extent as f64) as f32)
        .collect();
    let fade_out: Vec<f32> = (0..extent)
        .map(|y| (1.0 - y as f64 / extent as f64) as f32)
        .collect();
    let mut weight_shape = [1usize; 4];
    weight_shape[dim] = extent;
    let device = next.device();
    let fade_in = Tensor::from_vec(fade_in, &weight_shape, device)?.to_dtype(next.dtype())?;
    let fade_out = Tensor::from_vec(fade_out, &weight_shape, device)?.to_dtype(next.dtype())?;
    let tail = previous.narrow(dim, previous_size - extent, extent)?;
    let head = next.narrow(dim, 0, extent)?;
    let blended = (tail.broadcast_mul(&fade_out)? + head.broadcast_mul(&fade_in)?)?;
    if extent == next_size {
        Ok(blended)
    } else {
        Tensor::cat(
            &[&blended, &next.narrow(dim, extent, next_size - extent)?],
            dim,
        )
    }
}

fn blend_vertical(above: &Tensor, tile: &Tensor, blend_extent: usize) -> Result<Tensor> {
    blend(above, tile, blend_extent, 2)
}

fn blend_horizontal(before: &Tensor, tile: &Tensor, blend_extent: usize) -> Result<Tensor> {
    blend(before, tile, blend_extent, 3)
}

#[cfg(test)]
#[path = "vae_tiling_tests.rs"]
mod tests;
