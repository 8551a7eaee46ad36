//! Finding the model weight each LoRA module changes. Every weight the model holds gets
//! the names files use for it: the diffusers module name (`unet.` files), kohya's
//! underscore-joined form of it, and for the UNet also the underscore-joined original (SGM)
//! name that sd-scripts writes for SDXL (`input_blocks_4_1_transformer_blocks_0_attn1_to_q`),
//! after diffusers' `_convert_unet_lora_key` / `_maybe_map_sgm_blocks_to_diffusers`.

use std::collections::HashMap;

use super::file::LoraFormat;
use crate::loading::original_keys::{original_name, CheckpointLayout, Component, UNET_PREFIX};

/// Alias → weight name, per component.
#[derive(Debug, Default)]
pub struct WeightIndex {
    aliases: HashMap<(Component, LoraFormat, String), String>,
}

fn kohya_form(module: &str) -> String {
    module.replace('.', "_")
}

impl WeightIndex {
    /// `weights`: (component, the names of the weights the model holds for it).
    pub fn new(weights: &[(Component, Vec<String>)], layout: &CheckpointLayout) -> Self {
        let mut aliases = HashMap::new();
        for (component, names) in weights {
            for name in names {
                let Some(module) = name.strip_suffix(".weight") else {
                    continue;
                };
                let mut add = |format: LoraFormat, alias: String| {
                    aliases.insert((*component, format, alias), name.clone());
                };
                add(LoraFormat::Diffusers, module.to_string());
                add(LoraFormat::Kohya, kohya_form(module));
                match component {
                    Component::Unet => {
                        if let Some((original, _)) = original_name(Component::Unet, name, layout) {
                            let original = original
                                .trim_start_matches(UNET_PREFIX)
                                .trim_end_matches(".weight");
                            add(LoraFormat::Kohya, kohya_form(original));
                        }
                    }
                    Component::TextEncoder | Component::TextEncoder2 => {
                        // transformers 5 names CLIP layers without the `text_model.` level.
                        if let Some(bare) = module.strip_prefix("text_model.") {
                            add(LoraFormat::Diffusers, bare.to_string());
                            add(LoraFormat::Kohya, kohya_form(bare));
                        }
                    }
                    Component::Vae => {}
                }
            }
        }
        Self { aliases }
    }

    /// The weight name for a module as a file of `format` names it.
    pub fn resolve(&self, component: Component, format: LoraFormat, module: &str) -> Option<&str> {
        self.aliases
            .get(&(component, format, module.to_string()))
            .map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kohya_sgm_and_diffusers_names_find_the_same_weight() {
        let layout = CheckpointLayout {
            layers_per_block: 2,
            up_has_attention: vec![true, true, false],
            vae_levels: 4,
        };
        let weight =
            "down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q.weight".to_string();
        let clip = "text_model.encoder.layers.0.mlp.fc1.weight".to_string();
        let index = WeightIndex::new(
            &[
                (Component::Unet, vec![weight.clone()]),
                (Component::TextEncoder2, vec![clip.clone()]),
            ],
            &layout,
        );
        let unet = |format, module| index.resolve(Component::Unet, format, module);
        assert_eq!(
            unet(
                LoraFormat::Kohya,
                "input_blocks_4_1_transformer_blocks_0_attn1_to_q"
            ),
            Some(weight.as_str())
        );
        assert_eq!(
            unet(
                LoraFormat::Kohya,
                "down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_q"
            ),
            Some(weight.as_str())
        );
        assert_eq!(
            unet(
                LoraFormat::Diffusers,
                "down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q"
            ),
            Some(weight.as_str())
        );
        let te2 = |format, module| index.resolve(Component::TextEncoder2, format, module);
        assert_eq!(
            te2(LoraFormat::Kohya, "text_model_encoder_layers_0_mlp_fc1"),
            Some(clip.as_str())
        );
        assert_eq!(
            te2(LoraFormat::Diffusers, "encoder.layers.0.mlp.fc1"),
            Some(clip.as_str())
        );
        assert_eq!(
            index.resolve(
                Component::TextEncoder,
                LoraFormat::Kohya,
                "text_model_encoder_layers_0_mlp_fc1"
            ),
            None
        );
    }
}
