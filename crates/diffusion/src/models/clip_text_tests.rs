//! Unit tests of the CLIP text encoder on random weights: shapes, causality, the hidden
//! state shortcut, key prefixes and both pooling rules. Numerical parity with
//! transformers is in tests/parity/clip_text_parity.rs.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;

use super::*;

fn tiny_config(eos_token_id: u32, hidden_act: ClipActivation) -> ClipTextConfig {
    ClipTextConfig {
        vocab_size: 50,
        hidden_size: 8,
        intermediate_size: 16,
        projection_dim: Some(6),
        num_hidden_layers: 3,
        num_attention_heads: 2,
        max_position_embeddings: 12,
        hidden_act,
        layer_norm_eps: 1e-5,
        pad_token_id: Some(1),
        bos_token_id: Some(0),
        eos_token_id,
    }
}

/// Random weights under `prefix`, with the key names and shapes of transformers.
fn random_weights(
    config: &ClipTextConfig,
    prefix: &str,
    projection: bool,
) -> HashMap<String, Tensor> {
    let device = Device::Cpu;
    let hidden = config.hidden_size;
    let mut shapes: Vec<(String, Vec<usize>)> = vec![
        (
            "embeddings.token_embedding.weight".into(),
            vec![config.vocab_size, hidden],
        ),
        (
            "embeddings.position_embedding.weight".into(),
            vec![config.max_position_embeddings, hidden],
        ),
        ("final_layer_norm.weight".into(), vec![hidden]),
        ("final_layer_norm.bias".into(), vec![hidden]),
    ];
    for layer in 0..config.num_hidden_layers {
        let base = format!("encoder.layers.{layer}");
        for projection_name in ["q_proj", "k_proj", "v_proj", "out_proj"] {
            shapes.push((
                format!("{base}.self_attn.{projection_name}.weight"),
                vec![hidden, hidden],
            ));
            shapes.push((
                format!("{base}.self_attn.{projection_name}.bias"),
                vec![hidden],
            ));
        }
        for norm in ["layer_norm1", "layer_norm2"] {
            shapes.push((format!("{base}.{norm}.weight"), vec![hidden]));
            shapes.push((format!("{base}.{norm}.bias"), vec![hidden]));
        }
        shapes.push((
            format!("{base}.mlp.fc1.weight"),
            vec![config.intermediate_size, hidden],
        ));
        shapes.push((
            format!("{base}.mlp.fc1.bias"),
            vec![config.intermediate_size],
        ));
        shapes.push((
            format!("{base}.mlp.fc2.weight"),
            vec![hidden, config.intermediate_size],
        ));
        shapes.push((format!("{base}.mlp.fc2.bias"), vec![hidden]));
    }
    let mut weights: HashMap<String, Tensor> = shapes
        .into_iter()
        .map(|(name, shape)| {
            let tensor = Tensor::randn(0f32, 0.5, shape, &device).unwrap();
            (format!("{prefix}{name}"), tensor)
        })
        .collect();
    if projection {
        let projection_dim = config.projection_dim.unwrap();
        weights.insert(
            "text_projection.weight".into(),
            Tensor::randn(0f32, 0.5, (projection_dim, hidden), &device).unwrap(),
        );
    }
    weights
}

fn model(config: &ClipTextConfig, prefix: &str) -> ClipTextModel {
    let weights = random_weights(config, prefix, false);
    ClipTextModel::new(
        VarBuilder::from_tensors(weights, DType::F32, &Device::Cpu),
        config,
    )
    .unwrap()
}

fn ids(rows: &[&[u32]]) -> Tensor {
    let flat: Vec<u32> = rows.iter().flat_map(|row| row.iter().copied()).collect();
    Tensor::from_vec(flat, (rows.len(), rows[0].len()), &Device::Cpu).unwrap()
}

fn max_difference(left: &Tensor, right: &Tensor) -> f32 {
    (left - right)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar()
        .unwrap()
}

#[test]
fn output_shapes() {
    let config = tiny_config(49, ClipActivation::QuickGelu);
    let model = model(&config, "");
    let output = model
        .forward(&ids(&[&[0, 5, 6, 49, 1, 1], &[0, 7, 49, 1, 1, 1]]))
        .unwrap();
    assert_eq!(output.last_hidden_state.dims(), &[2, 6, 8]);
    assert_eq!(output.pooled_output.dims(), &[2, 8]);
    assert_eq!(output.hidden_states.len(), 4);
    for hidden_state in &output.hidden_states {
        assert_eq!(hidden_state.dims(), &[2, 6, 8]);
    }
    // A single unbatched sequence is accepted as [1, n].
    let single = model
        .forward(&Tensor::new(&[0u32, 5, 49], &Device::Cpu).unwrap())
        .unwrap();
    assert_eq!(single.last_hidden_state.dims(), &[1, 3, 8]);
}

#[test]
fn attention_is_causal() {
    let config = tiny_config(49, ClipActivation::Gelu);
    let model = model(&config, "");
    let first = model.forward(&ids(&[&[0, 5, 6, 7, 8, 49]])).unwrap();
    let second = model.forward(&ids(&[&[0, 5, 6, 30, 31, 32]])).unwrap();
    let prefix = |tensor: &Tensor| tensor.narrow(1, 0, 3).unwrap();
    assert!(
        max_difference(
            &prefix(&first.last_hidden_state),
            &prefix(&second.last_hidden_state)
        ) < 1e-6
    );
    // The changed tokens do change their own positions.
    let suffix = |tensor: &Tensor| tensor.narrow(1, 3, 3).unwrap();
    assert!(
        max_difference(
            &suffix(&first.last_hidden_state),
            &suffix(&second.last_hidden_state)
        ) > 1e-3
    );
}

#[test]
fn hidden_state_matches_forward() {
    let config = tiny_config(49, ClipActivation::GeluTanh);
    let model = model(&config, "");
    let input_ids = ids(&[&[0, 5, 6, 49, 1]]);
    let output = model.forward(&input_ids).unwrap();
    for index in 0..=3 {
        let hidden_state = model.hidden_state(&input_ids, index).unwrap();
        assert_eq!(
            max_difference(&hidden_state, &output.hidden_states[index]),
            0.0,
            "index {index}"
        );
    }
    assert!(model.hidden_state(&input_ids, 4).is_err());
}

#[test]
fn text_model_prefix_is_detected() {
    let config = tiny_config(49, ClipActivation::QuickGelu);
    let unprefixed = random_weights(&config, "", false);
    let prefixed: HashMap<String, Tensor> = unprefixed
        .iter()
        .map(|(name, tensor)| (format!("text_model.{name}"), tensor.clone()))
        .collect();
    let input_ids = ids(&[&[0, 5, 6, 49]]);
    let run = |weights: HashMap<String, Tensor>| {
        let model = ClipTextModel::new(
            VarBuilder::from_tensors(weights, DType::F32, &Device::Cpu),
            &config,
        )
        .unwrap();
        model.forward(&input_ids).unwrap().last_hidden_state
    };
    assert_eq!(max_difference(&run(unprefixed), &run(prefixed)), 0.0);
}

#[test]
fn pooling_rules() {
    // Legacy eos id 2: argmax of the ids, the first one on ties (SDXL pads with eos).
    let legacy = model(&tiny_config(2, ClipActivation::QuickGelu), "");
    let input_ids = ids(&[&[0, 5, 49, 49, 49], &[0, 30, 3, 40, 2]]);
    let output = legacy.forward(&input_ids).unwrap();
    let expected = Tensor::stack(
        &[
            output.last_hidden_state.get(0).unwrap().get(2).unwrap(),
            output.last_hidden_state.get(1).unwrap().get(3).unwrap(),
        ],
        0,
    )
    .unwrap();
    assert_eq!(max_difference(&output.pooled_output, &expected), 0.0);

    // Otherwise the first eos position (the pad id may be larger than eos).
    let current = model(&tiny_config(9, ClipActivation::QuickGelu), "");
    let input_ids = ids(&[&[0, 5, 9, 40, 9], &[0, 30, 3, 40, 41]]);
    let output = current.forward(&input_ids).unwrap();
    let expected = Tensor::stack(
        &[
            output.last_hidden_state.get(0).unwrap().get(2).unwrap(),
            output.last_hidden_state.get(1).unwrap().get(0).unwrap(),
        ],
        0,
    )
    .unwrap();
    assert_eq!(max_difference(&output.pooled_output, &expected), 0.0);
}

#[test]
fn projection_model() {
    let config = tiny_config(49, ClipActivation::Gelu);
    let weights = random_weights(&config, "text_model.", true);
    let projection = weights["text_projection.weight"].clone();
    let model = ClipTextModelWithProjection::new(
        VarBuilder::from_tensors(weights, DType::F32, &Device::Cpu),
        &config,
    )
    .unwrap();
    let output = model.forward(&ids(&[&[0, 5, 49, 1]])).unwrap();
    assert_eq!(output.text_embeds.dims(), &[1, 6]);
    let pooled = model
        .text_model()
        .forward(&ids(&[&[0, 5, 49, 1]]))
        .unwrap()
        .pooled_output;
    let expected = pooled.matmul(&projection.t().unwrap()).unwrap();
    assert!(max_difference(&output.text_embeds, &expected) < 1e-6);
}

#[test]
fn rejects_bad_input() {
    let config = tiny_config(49, ClipActivation::QuickGelu);
    let model = model(&config, "");
    assert!(model.forward(&ids(&[&[0, 50]])).is_err());
    assert!(model.forward(&ids(&[&[1; 13]])).is_err());
    let mut bad = config.clone();
    bad.num_attention_heads = 3;
    let weights = random_weights(&config, "", false);
    assert!(ClipTextModel::new(
        VarBuilder::from_tensors(weights, DType::F32, &Device::Cpu),
        &bad
    )
    .is_err());
}

#[test]
fn config_from_transformers_json() {
    let config: ClipTextConfig = serde_json::from_str(
        r#"{"architectures": ["CLIPTextModelWithProjection"], "hidden_act": "gelu", "hidden_size": 1280,
            "intermediate_size": 5120, "num_attention_heads": 20, "num_hidden_layers": 32,
            "projection_dim": 1280, "eos_token_id": 2, "torch_dtype": "float16"}"#,
    )
    .unwrap();
    assert_eq!(config.hidden_act, ClipActivation::Gelu);
    assert_eq!(config.vocab_size, 49408);
    assert_eq!(config.max_position_embeddings, 77);
    assert_eq!(config.eos_token_id, 2);
    assert_eq!(config.projection_dim, Some(1280));
    let default: ClipTextConfig = serde_json::from_str("{}").unwrap();
    assert_eq!(default, ClipTextConfig::default());
    assert!(serde_json::from_str::<ClipTextConfig>(r#"{"hidden_act": "mish"}"#).is_err());
}
