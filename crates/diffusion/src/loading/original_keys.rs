//! Diffusers weight names → the original Stability (SGM) single-file names, the inverse of
//! diffusers' `loaders/single_file_utils.py` converters (`convert_ldm_unet_checkpoint`,
//! `convert_ldm_vae_checkpoint`, `convert_open_clip_checkpoint`). The models only ever ask
//! for diffusers names; this module says where each one lives in a checkpoint and how the
//! stored tensor must be reshaped to become it.

/// Which SDXL component a name belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Component {
    Unet,
    Vae,
    TextEncoder,
    TextEncoder2,
}

/// How the stored tensor becomes the diffusers one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transform {
    /// Same values; a differing shape with the same element count is reshaped
    /// (the VAE's mid-block attention stores its linear layers as 1×1 convolutions).
    Reshape,
    /// The transpose of a matrix (OpenCLIP's `text_projection` is [width, projection]).
    Transpose,
    /// Part `index` of 3 along dim 0 (OpenCLIP's fused q/k/v `in_proj`).
    ThirdOf(usize),
}

/// The parts of the UNet and VAE configs that decide the original block numbering.
#[derive(Debug, Clone)]
pub struct CheckpointLayout {
    pub layers_per_block: usize,
    /// Whether each UNet up block has attentions (so its upsampler sits at slot 2, not 1).
    pub up_has_attention: Vec<bool>,
    /// Number of VAE levels; the original numbers up blocks from the bottom.
    pub vae_levels: usize,
}

pub const UNET_PREFIX: &str = "model.diffusion_model.";
pub const VAE_PREFIX: &str = "first_stage_model.";
pub const TEXT_ENCODER_PREFIX: &str = "conditioner.embedders.0.transformer.";
pub const TEXT_ENCODER_2_PREFIX: &str = "conditioner.embedders.1.model.";

/// The checkpoint name and transform of a diffusers weight name, or `None` when the
/// diffusers name has no original counterpart.
pub fn original_name(
    component: Component,
    name: &str,
    layout: &CheckpointLayout,
) -> Option<(String, Transform)> {
    match component {
        Component::Unet => {
            unet_name(name, layout).map(|n| (format!("{UNET_PREFIX}{n}"), Transform::Reshape))
        }
        Component::Vae => vae_name(name, layout.vae_levels)
            .map(|n| (format!("{VAE_PREFIX}{n}"), Transform::Reshape)),
        Component::TextEncoder => {
            Some((format!("{TEXT_ENCODER_PREFIX}{name}"), Transform::Reshape))
        }
        Component::TextEncoder2 => {
            text_encoder_2_name(name).map(|(n, t)| (format!("{TEXT_ENCODER_2_PREFIX}{n}"), t))
        }
    }
}

fn resnet_part(name: &str) -> Option<&'static str> {
    Some(match name {
        "norm1" => "in_layers.0",
        "conv1" => "in_layers.2",
        "time_emb_proj" => "emb_layers.1",
        "norm2" => "out_layers.0",
        "conv2" => "out_layers.3",
        "conv_shortcut" => "skip_connection",
        _ => return None,
    })
}

fn unet_name(name: &str, layout: &CheckpointLayout) -> Option<String> {
    let parts: Vec<&str> = name.split('.').collect();
    let (leaf, head) = parts.split_last()?;
    let head_joined = head.join(".");
    let top = match head_joined.as_str() {
        "time_embedding.linear_1" => Some("time_embed.0"),
        "time_embedding.linear_2" => Some("time_embed.2"),
        "add_embedding.linear_1" => Some("label_emb.0.0"),
        "add_embedding.linear_2" => Some("label_emb.0.2"),
        "conv_in" => Some("input_blocks.0.0"),
        "conv_norm_out" => Some("out.0"),
        "conv_out" => Some("out.2"),
        _ => None,
    };
    if let Some(top) = top {
        return Some(format!("{top}.{leaf}"));
    }
    let per_level = layout.layers_per_block + 1;
    let index = |i: usize| parts.get(i).and_then(|p| p.parse::<usize>().ok());
    let rest = |from: usize| parts.get(from..).map(|p| p.join("."));
    match *parts.first()? {
        "down_blocks" => {
            let block = index(1)?;
            match *parts.get(2)? {
                "resnets" => {
                    let slot = 1 + block * per_level + index(3)?;
                    Some(format!(
                        "input_blocks.{slot}.0.{}.{leaf}",
                        resnet_part(parts.get(4)?)?
                    ))
                }
                "attentions" => Some(format!(
                    "input_blocks.{}.1.{}",
                    1 + block * per_level + index(3)?,
                    rest(4)?
                )),
                "downsamplers" => Some(format!(
                    "input_blocks.{}.0.op.{leaf}",
                    block * per_level + per_level
                )),
                _ => None,
            }
        }
        "mid_block" => {
            let layer = index(2)?;
            match *parts.get(1)? {
                "resnets" => Some(format!(
                    "middle_block.{}.{}.{leaf}",
                    2 * layer,
                    resnet_part(parts.get(3)?)?
                )),
                "attentions" => Some(format!("middle_block.1.{}", rest(3)?)),
                _ => None,
            }
        }
        "up_blocks" => {
            let block = index(1)?;
            match *parts.get(2)? {
                "resnets" => {
                    let slot = block * per_level + index(3)?;
                    Some(format!(
                        "output_blocks.{slot}.0.{}.{leaf}",
                        resnet_part(parts.get(4)?)?
                    ))
                }
                "attentions" => Some(format!(
                    "output_blocks.{}.1.{}",
                    block * per_level + index(3)?,
                    rest(4)?
                )),
                "upsamplers" => {
                    let slot = if *layout.up_has_attention.get(block)? {
                        2
                    } else {
                        1
                    };
                    Some(format!(
                        "output_blocks.{}.{slot}.conv.{leaf}",
                        block * per_level + per_level - 1
                    ))
                }
                _ => None,
            }
        }
        _ => None,
    }
}

fn vae_name(name: &str, levels: usize) -> Option<String> {
    let parts: Vec<&str> = name.split('.').collect();
    let side = *parts.first()?;
    if side == "quant_conv" || side == "post_quant_conv" {
        return Some(name.to_string());
    }
    let rest = parts.get(1..)?;
    let leaf = *rest.last()?;
    let index = |i: usize| rest.get(i).and_then(|p| p.parse::<usize>().ok());
    let resnet = |n: &str| {
        if n == "conv_shortcut" {
            "nin_shortcut".to_string()
        } else {
            n.to_string()
        }
    };
    match *rest.first()? {
        "conv_in" | "conv_out" => Some(name.to_string()),
        "conv_norm_out" => Some(format!("{side}.norm_out.{leaf}")),
        "mid_block" => match *rest.get(1)? {
            "resnets" => Some(format!(
                "{side}.mid.block_{}.{}.{leaf}",
                index(2)? + 1,
                rest.get(3)?
            )),
            "attentions" => {
                let part = match *rest.get(3)? {
                    "group_norm" => "norm",
                    "to_q" => "q",
                    "to_k" => "k",
                    "to_v" => "v",
                    "to_out" => "proj_out",
                    _ => return None,
                };
                Some(format!("{side}.mid.attn_1.{part}.{leaf}"))
            }
            _ => None,
        },
        "down_blocks" => {
            let level = index(1)?;
            match *rest.get(2)? {
                "resnets" => Some(format!(
                    "{side}.down.{level}.block.{}.{}.{leaf}",
                    index(3)?,
                    resnet(rest.get(4)?)
                )),
                "downsamplers" => Some(format!("{side}.down.{level}.downsample.conv.{leaf}")),
                _ => None,
            }
        }
        "up_blocks" => {
            let level = levels.checked_sub(1 + index(1)?)?;
            match *rest.get(2)? {
                "resnets" => Some(format!(
                    "{side}.up.{level}.block.{}.{}.{leaf}",
                    index(3)?,
                    resnet(rest.get(4)?)
                )),
                "upsamplers" => Some(format!("{side}.up.{level}.upsample.conv.{leaf}")),
                _ => None,
            }
        }
        _ => None,
    }
}

/// OpenCLIP names: fused q/k/v `in_proj`, `resblocks`, `ln_final`, transposed projection.
fn text_encoder_2_name(name: &str) -> Option<(String, Transform)> {
    let plain = |n: &str| Some((n.to_string(), Transform::Reshape));
    match name {
        "text_model.embeddings.token_embedding.weight" => return plain("token_embedding.weight"),
        "text_model.embeddings.position_embedding.weight" => return plain("positional_embedding"),
        "text_model.final_layer_norm.weight" => return plain("ln_final.weight"),
        "text_model.final_layer_norm.bias" => return plain("ln_final.bias"),
        "text_projection.weight" => {
            return Some(("text_projection".to_string(), Transform::Transpose))
        }
        _ => {}
    }
    let layer_and_rest = name.strip_prefix("text_model.encoder.layers.")?;
    let (layer, rest) = layer_and_rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let (module, leaf) = rest.rsplit_once('.')?;
    let target = format!("transformer.resblocks.{layer}.");
    let third = match module {
        "self_attn.q_proj" => Some(0),
        "self_attn.k_proj" => Some(1),
        "self_attn.v_proj" => Some(2),
        _ => None,
    };
    if let Some(third) = third {
        return Some((
            format!("{target}attn.in_proj_{leaf}"),
            Transform::ThirdOf(third),
        ));
    }
    let renamed = match module {
        "layer_norm1" => "ln_1",
        "layer_norm2" => "ln_2",
        "self_attn.out_proj" => "attn.out_proj",
        "mlp.fc1" => "mlp.c_fc",
        "mlp.fc2" => "mlp.c_proj",
        _ => return None,
    };
    Some((format!("{target}{renamed}.{leaf}"), Transform::Reshape))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sdxl_layout() -> CheckpointLayout {
        CheckpointLayout {
            layers_per_block: 2,
            up_has_attention: vec![true, true, false],
            vae_levels: 4,
        }
    }

    #[test]
    fn unet_names_follow_the_original_block_numbering() {
        let layout = sdxl_layout();
        let cases = [
            ("conv_in.weight", "input_blocks.0.0.weight"),
            ("add_embedding.linear_2.bias", "label_emb.0.2.bias"),
            (
                "down_blocks.1.resnets.0.conv1.weight",
                "input_blocks.4.0.in_layers.2.weight",
            ),
            (
                "down_blocks.0.downsamplers.0.conv.weight",
                "input_blocks.3.0.op.weight",
            ),
            (
                "down_blocks.2.attentions.1.transformer_blocks.0.attn2.to_k.weight",
                "input_blocks.8.1.transformer_blocks.0.attn2.to_k.weight",
            ),
            (
                "mid_block.resnets.1.time_emb_proj.weight",
                "middle_block.2.emb_layers.1.weight",
            ),
            (
                "mid_block.attentions.0.proj_in.weight",
                "middle_block.1.proj_in.weight",
            ),
            (
                "up_blocks.0.resnets.2.conv_shortcut.bias",
                "output_blocks.2.0.skip_connection.bias",
            ),
            (
                "up_blocks.0.upsamplers.0.conv.weight",
                "output_blocks.2.2.conv.weight",
            ),
            (
                "up_blocks.2.resnets.0.norm2.weight",
                "output_blocks.6.0.out_layers.0.weight",
            ),
        ];
        for (diffusers, original) in cases {
            let (name, _) = original_name(Component::Unet, diffusers, &layout).unwrap();
            assert_eq!(name, format!("{UNET_PREFIX}{original}"), "{diffusers}");
        }
    }

    #[test]
    fn vae_up_blocks_count_from_the_bottom() {
        let layout = sdxl_layout();
        let (name, _) = original_name(
            Component::Vae,
            "decoder.up_blocks.0.resnets.1.conv2.weight",
            &layout,
        )
        .unwrap();
        assert_eq!(name, "first_stage_model.decoder.up.3.block.1.conv2.weight");
        let (name, _) = original_name(
            Component::Vae,
            "encoder.mid_block.attentions.0.to_out.0.weight",
            &layout,
        )
        .unwrap();
        assert_eq!(name, "first_stage_model.encoder.mid.attn_1.proj_out.weight");
    }

    #[test]
    fn open_clip_attention_is_fused() {
        let layout = sdxl_layout();
        let name = "text_model.encoder.layers.3.self_attn.v_proj.bias";
        let (original, transform) = original_name(Component::TextEncoder2, name, &layout).unwrap();
        assert_eq!(
            original,
            "conditioner.embedders.1.model.transformer.resblocks.3.attn.in_proj_bias"
        );
        assert_eq!(transform, Transform::ThirdOf(2));
        let (_, transform) =
            original_name(Component::TextEncoder2, "text_projection.weight", &layout).unwrap();
        assert_eq!(transform, Transform::Transpose);
        assert!(original_name(Component::Unet, "nonsense.weight", &layout).is_none());
    }
}
