//! Gradient checkpointing for the UNet, by hand (candle keeps every intermediate of a graph
//! until `backward()`): the forward pass runs stage by stage (time embedding, `conv_in`,
//! each down block, the mid block, each up block, the output head) with the adapters
//! detached, keeping only each stage's inputs; the backward pass walks the stages in
//! reverse, recomputes one stage from its saved inputs as fresh variables with the
//! adapters attached, and takes the vector–Jacobian product with the scalar
//! `Σ (output · g_output)`, which yields the adapters' gradients and the gradients of the
//! stage's inputs for the stages below. Peak memory is one stage's graph plus the saved
//! stage inputs (the skip connections a plain forward keeps anyway). The gradients equal
//! the plain backward's (tested).

use candle_core::{Tensor, Var};
use huatu_diffusion::loading::original_keys::Component;
use huatu_diffusion::models::unet_2d_condition::{AddedConditions, UNet2DConditionModel};

use crate::lora_params::LoraParams;
use crate::Result;

/// Where a stage reads and writes: indices into the tape of saved tensors.
struct Stage {
    kind: StageKind,
    inputs: Vec<usize>,
    outputs: Vec<usize>,
}

#[derive(Clone, Copy)]
enum StageKind {
    Embed,
    ConvIn,
    Down(usize),
    Mid,
    Up(usize, Option<(usize, usize)>),
    Out,
}

// Fixed tape slots of the stage inputs that come from outside.
const SAMPLE: usize = 0;
const ENCODER_HIDDEN_STATES: usize = 1;
const TEXT_EMBEDS: usize = 2;
const TIME_IDS: usize = 3;
const EMBEDDING: usize = 4;

fn run_stage(
    unet: &UNet2DConditionModel,
    kind: StageKind,
    timesteps: &Tensor,
    inputs: &[Tensor],
) -> Result<Vec<Tensor>> {
    Ok(match kind {
        StageKind::Embed => {
            let added = AddedConditions {
                text_embeds: inputs[0].clone(),
                time_ids: inputs[1].clone(),
            };
            vec![unet.embed(timesteps, &added, inputs[0].dtype())?]
        }
        StageKind::ConvIn => vec![unet.conv_in(&inputs[0])?],
        StageKind::Down(index) => {
            unet.down_block(index, &inputs[0], &inputs[1], &inputs[2])?
                .1
        }
        StageKind::Mid => vec![unet.mid_block(&inputs[0], &inputs[1], &inputs[2])?],
        StageKind::Up(index, upsample_size) => {
            vec![unet.up_block(
                index,
                &inputs[0],
                &inputs[3..],
                &inputs[1],
                &inputs[2],
                upsample_size,
            )?]
        }
        StageKind::Out => vec![unet.conv_out(&inputs[0])?],
    })
}

/// The loss and every adapter's gradient (`None` where none reaches it), computed stage by
/// stage. `prompt_embeds` and `text_embeds` may carry a graph (text-encoder training): their
/// gradients are pushed into it at the end.
#[allow(clippy::too_many_arguments)]
pub fn checkpointed_gradients(
    unet: &mut UNet2DConditionModel,
    params: &LoraParams,
    sample: &Tensor,
    timesteps: &Tensor,
    prompt_embeds: &Tensor,
    added: &AddedConditions,
    loss_of: &dyn Fn(&Tensor) -> Result<Tensor>,
) -> Result<(Tensor, Vec<Option<Tensor>>)> {
    checkpointed_gradients_with(
        unet,
        params,
        &[],
        sample,
        timesteps,
        prompt_embeds,
        added,
        loss_of,
    )
}

/// [`checkpointed_gradients`] for the adapters and the UNet's own trained weights `extra`
/// (variables the model holds, e.g. InstructPix2Pix's `conv_in` or every weight): the
/// gradients of `params.vars()` then of `extra`. Stages whose weights are variables still
/// build a graph in the forward pass, but each is dropped when its output is detached.
#[allow(clippy::too_many_arguments)]
pub fn checkpointed_gradients_with(
    unet: &mut UNet2DConditionModel,
    params: &LoraParams,
    extra: &[Var],
    sample: &Tensor,
    timesteps: &Tensor,
    prompt_embeds: &Tensor,
    added: &AddedConditions,
    loss_of: &dyn Fn(&Tensor) -> Result<Tensor>,
) -> Result<(Tensor, Vec<Option<Tensor>>)> {
    let (_, _, height, width) = sample.dims4()?;
    let mut tape: Vec<Tensor> = vec![
        sample.detach(),
        prompt_embeds.detach(),
        added.text_embeds.detach(),
        added.time_ids.detach(),
    ];
    let mut stages = Vec::new();

    // Forward without a graph: adapters detached, every stage output detached.
    params.attach(Component::Unet, &mut unet.collect_linears(), true)?;
    let push = |tape: &mut Vec<Tensor>,
                stages: &mut Vec<Stage>,
                kind,
                inputs: Vec<usize>|
     -> Result<Vec<usize>> {
        let values: Vec<Tensor> = inputs.iter().map(|&slot| tape[slot].clone()).collect();
        let outputs = run_stage(unet, kind, timesteps, &values)?;
        let slots: Vec<usize> = (tape.len()..tape.len() + outputs.len()).collect();
        tape.extend(outputs.into_iter().map(|output| output.detach()));
        stages.push(Stage {
            kind,
            inputs,
            outputs: slots.clone(),
        });
        Ok(slots)
    };
    let embedding = push(
        &mut tape,
        &mut stages,
        StageKind::Embed,
        vec![TEXT_EMBEDS, TIME_IDS],
    )?;
    debug_assert_eq!(embedding, vec![EMBEDDING]);
    let mut residuals = push(&mut tape, &mut stages, StageKind::ConvIn, vec![SAMPLE])?;
    let mut hidden = residuals[0];
    for index in 0..unet.num_down_blocks() {
        let outputs = push(
            &mut tape,
            &mut stages,
            StageKind::Down(index),
            vec![hidden, EMBEDDING, ENCODER_HIDDEN_STATES],
        )?;
        hidden = *outputs.last().unwrap_or(&hidden);
        residuals.extend(outputs);
    }
    hidden = push(
        &mut tape,
        &mut stages,
        StageKind::Mid,
        vec![hidden, EMBEDDING, ENCODER_HIDDEN_STATES],
    )?[0];
    for index in 0..unet.num_up_blocks() {
        let split = residuals.len() - unet.up_block_residuals(index);
        let block_residuals = residuals.split_off(split);
        let next = residuals.last().map(|&slot| tape[slot].clone());
        let upsample_size = unet.upsample_size(index, (height, width), next.as_ref())?;
        let mut inputs = vec![hidden, EMBEDDING, ENCODER_HIDDEN_STATES];
        inputs.extend(block_residuals);
        hidden = push(
            &mut tape,
            &mut stages,
            StageKind::Up(index, upsample_size),
            inputs,
        )?[0];
    }
    let prediction_slot = push(&mut tape, &mut stages, StageKind::Out, vec![hidden])?[0];

    // The loss on the prediction as a variable gives the first output gradient.
    let prediction = Var::from_tensor(&tape[prediction_slot])?;
    let loss = loss_of(prediction.as_tensor())?;
    let mut slot_grads: Vec<Option<Tensor>> = vec![None; tape.len()];
    slot_grads[prediction_slot] = loss.backward()?.get(prediction.as_tensor()).cloned();

    // Backward, stage by stage, with the adapters as variables.
    params.attach(Component::Unet, &mut unet.collect_linears(), false)?;
    let mut vars = params.vars();
    vars.extend(extra.iter().cloned());
    let mut grads: Vec<Option<Tensor>> = vec![None; vars.len()];
    for stage in stages.iter().rev() {
        if stage.outputs.iter().all(|&slot| slot_grads[slot].is_none()) {
            continue;
        }
        let inputs = stage
            .inputs
            .iter()
            .map(|&slot| Var::from_tensor(&tape[slot]))
            .collect::<candle_core::Result<Vec<Var>>>()?;
        let values: Vec<Tensor> = inputs.iter().map(|var| var.as_tensor().clone()).collect();
        let outputs = run_stage(unet, stage.kind, timesteps, &values)?;
        let mut objective: Option<Tensor> = None;
        for (output, slot) in outputs.iter().zip(&stage.outputs) {
            if let Some(grad) = &slot_grads[*slot] {
                let term = (output * grad)?.sum_all()?;
                objective = Some(match objective {
                    None => term,
                    Some(sum) => (sum + term)?,
                });
            }
        }
        let Some(objective) = objective else { continue };
        let store = objective.backward()?;
        for (grad, var) in grads.iter_mut().zip(&vars) {
            if let Some(new) = store.get(var.as_tensor()) {
                *grad = Some(match grad.take() {
                    None => new.clone(),
                    Some(sum) => (sum + new)?,
                });
            }
        }
        for (var, &slot) in inputs.iter().zip(&stage.inputs) {
            if let Some(new) = store.get(var.as_tensor()) {
                slot_grads[slot] = Some(match slot_grads[slot].take() {
                    None => new.clone(),
                    Some(sum) => (sum + new)?,
                });
            }
        }
    }

    // Text-encoder adapters: push the conditioning's gradients through its own graph.
    let mut objective: Option<Tensor> = None;
    for (tensor, slot) in [
        (prompt_embeds, ENCODER_HIDDEN_STATES),
        (&added.text_embeds, TEXT_EMBEDS),
    ] {
        if let (true, Some(grad)) = (tensor.track_op(), &slot_grads[slot]) {
            let term = (tensor * grad)?.sum_all()?;
            objective = Some(match objective {
                None => term,
                Some(sum) => (sum + term)?,
            });
        }
    }
    if let Some(objective) = objective {
        let store = objective.backward()?;
        for (grad, var) in grads.iter_mut().zip(&vars) {
            if let Some(new) = store.get(var.as_tensor()) {
                *grad = Some(match grad.take() {
                    None => new.clone(),
                    Some(sum) => (sum + new)?,
                });
            }
        }
    }
    Ok((loss.detach(), grads))
}
