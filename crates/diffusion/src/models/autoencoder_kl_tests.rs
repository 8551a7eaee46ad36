//! Unit tests of `AutoencoderKL`: config parsing, tile settings, shapes and the posterior.

use super::*;
use candle_core::Device;
use candle_nn::VarMap;

const TINY_CONFIG: &str = r#"{
    "_class_name": "AutoencoderKL",
    "block_out_channels": [8, 16, 16, 16],
    "down_block_types": ["DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D"],
    "up_block_types": ["UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D"],
    "latent_channels": 4,
    "layers_per_block": 1,
    "norm_num_groups": 4,
    "sample_size": 32,
    "scaling_factor": 0.13025,
    "latents_mean": null,
    "some_future_key": [1, 2]
}"#;

fn tiny_config() -> anyhow::Result<AutoencoderKLConfig> {
    Ok(serde_json::from_str(TINY_CONFIG)?)
}

#[test]
fn config_defaults_and_unknown_keys() -> anyhow::Result<()> {
    let config = tiny_config()?;
    assert_eq!(config.in_channels, 3);
    assert_eq!(config.out_channels, 3);
    assert_eq!(config.act_fn, "silu");
    assert_eq!(config.shift_factor, None);
    assert_eq!(config.latents_mean, None);
    assert!(config.force_upcast && config.use_quant_conv && config.use_post_quant_conv);
    assert!(config.mid_block_add_attention);
    assert_eq!(config.scaling_factor, 0.13025);
    config.validate()?;

    let empty: AutoencoderKLConfig = serde_json::from_str("{}")?;
    assert_eq!(empty.block_out_channels, vec![64]);
    assert_eq!(empty.scaling_factor, 0.18215);
    assert_eq!(empty.sample_size, SampleSize::Square(32));
    assert_eq!(empty.layers_per_block, 1);

    let pair: AutoencoderKLConfig = serde_json::from_str(r#"{"sample_size": [48, 64]}"#)?;
    assert_eq!(pair.sample_size.first(), 48);
    Ok(())
}

#[test]
fn config_rejects_unsupported_blocks() -> anyhow::Result<()> {
    let mut config = tiny_config()?;
    config.down_block_types[1] = "AttnDownEncoderBlock2D".into();
    let message = config
        .validate()
        .err()
        .map(|error| error.to_string())
        .unwrap_or_default();
    assert!(message.contains("AttnDownEncoderBlock2D"), "{message}");

    let mut config = tiny_config()?;
    config.norm_num_groups = 3;
    assert!(config.validate().is_err());
    Ok(())
}

#[test]
fn tile_settings_follow_diffusers() -> anyhow::Result<()> {
    let tiles = TileSettings::from_config(&tiny_config()?);
    assert_eq!(
        tiles,
        TileSettings {
            tile_sample_min_size: 32,
            tile_latent_min_size: 4,
            tile_overlap_factor: 0.25
        }
    );
    let mut sdxl = tiny_config()?;
    sdxl.sample_size = SampleSize::Square(1024);
    assert_eq!(TileSettings::from_config(&sdxl).tile_latent_min_size, 128);
    Ok(())
}

#[test]
fn model_shapes_and_posterior() -> anyhow::Result<()> {
    let device = Device::Cpu;
    let map = VarMap::new();
    let vb = VarBuilder::from_varmap(&map, DType::F32, &device);
    let vae = AutoencoderKL::new(vb, &tiny_config()?)?;
    let image = Tensor::randn(0f32, 1.0, (1, 3, 40, 24), &device)?;
    let posterior = vae.encode(&image)?;
    assert_eq!(posterior.mean.dims(), &[1, 4, 5, 3]);
    assert_eq!(posterior.logvar.dims(), &[1, 4, 5, 3]);
    let noise = Tensor::zeros((1, 4, 5, 3), DType::F32, &device)?;
    let sample = posterior.sample_with_noise(&noise)?;
    let difference = (sample - posterior.mode())?
        .abs()?
        .flatten_all()?
        .max(0)?
        .to_scalar::<f32>()?;
    assert_eq!(difference, 0.0);
    assert_eq!(vae.decode(&posterior.mean)?.dims(), &[1, 3, 40, 24]);
    assert_eq!(
        vae.tiled_decode(&Tensor::zeros((1, 4, 7, 5), DType::F32, &device)?)?
            .dims(),
        &[1, 3, 56, 40]
    );
    assert_eq!(vae.tiled_encode(&image)?.mean.dims(), &[1, 4, 5, 3]);
    assert_eq!(vae.dtype(), DType::F32);
    Ok(())
}

#[test]
fn logvar_is_clamped() -> anyhow::Result<()> {
    let moments = Tensor::new(&[0f32, 1.0, -100.0, 100.0], &Device::Cpu)?.reshape((1, 4, 1, 1))?;
    let posterior = DiagonalGaussianDistribution::from_moments(&moments)?;
    assert_eq!(
        posterior.mean.flatten_all()?.to_vec1::<f32>()?,
        vec![0.0, 1.0]
    );
    assert_eq!(
        posterior.logvar.flatten_all()?.to_vec1::<f32>()?,
        vec![-30.0, 20.0]
    );
    Ok(())
}
