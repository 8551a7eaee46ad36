//! A linear-chain CRF over the character tags (Lafferty et al. 2001), as torchcrf's
//! `CRF` and the BERT-CRF taggers of Chinese NER: learned start, end and tag-to-tag
//! transition scores on top of the tagger's per-character logits, trained with the
//! negative log-likelihood from the forward algorithm. Decoding (Viterbi, with the
//! contract's constraints) lives in `decode.rs` and reads the scores as plain numbers.
//!
//! Written with candle ops that all have a backward pass: log-sum-exp is built from a
//! detached max, `exp`, `sum` and `log` (candle's fused softmax has none).

use candle_core::{DType, Tensor};
use candle_nn::VarBuilder;

use crate::error::Result;

pub struct Crf {
    /// [tags, tags]: score of tag `j` right after tag `i` at `[i, j]`.
    transitions: Tensor,
    /// [tags]: score of the first tag.
    start_transitions: Tensor,
    /// [tags]: score of the last tag.
    end_transitions: Tensor,
    num_tags: usize,
}

/// The CRF's scores as numbers, for decoding.
#[derive(Debug, Clone, PartialEq)]
pub struct TransitionScores {
    pub start: Vec<f32>,
    pub end: Vec<f32>,
    /// `between[i][j]`: tag `j` after tag `i`.
    pub between: Vec<Vec<f32>>,
}

impl TransitionScores {
    /// No preference between tags (a model trained without a CRF).
    pub fn uniform(num_tags: usize) -> Self {
        Self {
            start: vec![0.0; num_tags],
            end: vec![0.0; num_tags],
            between: vec![vec![0.0; num_tags]; num_tags],
        }
    }
}

/// log Σ exp over `dim`, which is removed; the max is detached (it only keeps the
/// exponentials in range and does not change the value or its gradient).
pub fn log_sum_exp<Dm: candle_core::shape::Dim + Copy>(xs: &Tensor, dim: Dm) -> Result<Tensor> {
    let max = xs.max_keepdim(dim)?.detach();
    let summed = xs.broadcast_sub(&max)?.exp()?.sum_keepdim(dim)?.log()?;
    Ok((summed + max)?.squeeze(dim)?)
}

impl Crf {
    pub fn new(vb: VarBuilder, num_tags: usize) -> Result<Self> {
        let init = candle_nn::Init::Uniform { lo: -0.1, up: 0.1 };
        Ok(Self {
            transitions: vb.get_with_hints((num_tags, num_tags), "transitions", init)?,
            start_transitions: vb.get_with_hints(num_tags, "start_transitions", init)?,
            end_transitions: vb.get_with_hints(num_tags, "end_transitions", init)?,
            num_tags,
        })
    }

    pub fn scores(&self) -> Result<TransitionScores> {
        Ok(TransitionScores {
            start: self.start_transitions.to_dtype(DType::F32)?.to_vec1()?,
            end: self.end_transitions.to_dtype(DType::F32)?.to_vec1()?,
            between: self.transitions.to_dtype(DType::F32)?.to_vec2()?,
        })
    }

    /// Summed negative log-likelihood of the gold tags over the batch.
    ///
    /// `emissions`: [b, s, tags]; `tags`: [b, s] u32; `mask`: [b, s] f32, 1 on the
    /// tagged positions, which run from position 1 ([CLS] at 0) without gaps. Rows
    /// with nothing tagged add nothing.
    pub fn neg_log_likelihood(
        &self,
        emissions: &Tensor,
        tags: &Tensor,
        mask: &Tensor,
    ) -> Result<Tensor> {
        let (batch, seq_len, num_tags) = emissions.dims3()?;
        let device = emissions.device();
        let gold: Vec<Vec<u32>> = tags.to_vec2()?;
        let lengths: Vec<usize> = mask
            .to_vec2::<f32>()?
            .iter()
            .map(|row| row.iter().filter(|&&m| m > 0.5).count())
            .collect();
        let longest = lengths.iter().copied().max().unwrap_or(0);
        if longest == 0 || seq_len < 2 {
            return Ok(Tensor::zeros((), DType::F32, device)?);
        }
        let present: Vec<f32> = lengths
            .iter()
            .map(|&n| if n > 0 { 1.0 } else { 0.0 })
            .collect();
        let present = Tensor::from_vec(present, batch, device)?;

        // Score of the gold path: emissions + start + transitions + end.
        let emitted = (emissions.gather(&tags.unsqueeze(2)?, 2)?.squeeze(2)? * mask)?.sum(1)?; // [b]
        let first: Vec<u32> = gold.iter().map(|row| row[1]).collect();
        let last: Vec<u32> = gold
            .iter()
            .zip(&lengths)
            .map(|(row, &n)| row[n.max(1)])
            .collect();
        let start = self
            .start_transitions
            .index_select(&Tensor::from_vec(first, batch, device)?, 0)?;
        let end = self
            .end_transitions
            .index_select(&Tensor::from_vec(last, batch, device)?, 0)?;
        let steps = longest.saturating_sub(1).max(1);
        let mut pair_index = Vec::with_capacity(batch * steps);
        let mut pair_weight = Vec::with_capacity(batch * steps);
        for (row, &n) in gold.iter().zip(&lengths) {
            for t in 2..2 + steps {
                let inside = t <= n;
                pair_index.push(if inside {
                    row[t - 1] * num_tags as u32 + row[t]
                } else {
                    0
                });
                pair_weight.push(if inside { 1f32 } else { 0.0 });
            }
        }
        let pairs = self
            .transitions
            .flatten_all()?
            .index_select(&Tensor::from_vec(pair_index, batch * steps, device)?, 0)?
            .mul(&Tensor::from_vec(pair_weight, batch * steps, device)?)?
            .reshape((batch, steps))?
            .sum(1)?;
        let gold_score = (((emitted + start)? + end)? + pairs)?;

        // log Z by the forward algorithm over positions 1..=longest.
        let transitions = self.transitions.unsqueeze(0)?; // [1, tags, tags]
        let mut alpha = emissions
            .narrow(1, 1, 1)?
            .squeeze(1)?
            .broadcast_add(&self.start_transitions.unsqueeze(0)?)?; // [b, tags]
        for t in 2..=longest {
            let emission = emissions.narrow(1, t, 1)?.squeeze(1)?; // [b, tags]
            let scores = alpha.unsqueeze(2)?.broadcast_add(&transitions)?; // [b, tags, tags]
            let next = (log_sum_exp(&scores, 1)? + emission)?;
            let keep = mask.narrow(1, t, 1)?; // [b, 1]
            alpha = (next.broadcast_mul(&keep)? + alpha.broadcast_mul(&(1.0 - &keep)?)?)?;
        }
        let log_partition = log_sum_exp(
            &alpha.broadcast_add(&self.end_transitions.unsqueeze(0)?)?,
            1,
        )?;
        Ok(((log_partition - gold_score)? * present)?.sum_all()?)
    }

    pub fn num_tags(&self) -> usize {
        self.num_tags
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};
    use candle_nn::VarMap;

    /// log Z by listing every path, for a check of the forward algorithm.
    fn brute_force_nll(emissions: &[Vec<f32>], gold: &[usize], scores: &TransitionScores) -> f32 {
        let tags = scores.start.len();
        let n = emissions.len();
        let path_score = |path: &[usize]| {
            let mut s = scores.start[path[0]] + emissions[0][path[0]];
            for t in 1..n {
                s += scores.between[path[t - 1]][path[t]] + emissions[t][path[t]];
            }
            s + scores.end[path[n - 1]]
        };
        let mut total = Vec::new();
        for code in 0..tags.pow(n as u32) {
            let path: Vec<usize> = (0..n).map(|t| (code / tags.pow(t as u32)) % tags).collect();
            total.push(path_score(&path));
        }
        let max = total.iter().copied().fold(f32::MIN, f32::max);
        let log_z = max + total.iter().map(|s| (s - max).exp()).sum::<f32>().ln();
        log_z - path_score(gold)
    }

    #[test]
    fn forward_algorithm_matches_enumerating_paths_and_skips_padding() -> Result<()> {
        let device = Device::Cpu;
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &device);
        let crf = Crf::new(vb, 3)?;
        // Row 0: [CLS] + 3 tagged + [SEP]; row 1: [CLS] + 2 tagged + [SEP] + pad.
        let values: Vec<f32> = (0..2 * 5 * 3)
            .map(|i| ((i * 7 % 11) as f32) / 5.0 - 1.0)
            .collect();
        let emissions = Tensor::from_vec(values.clone(), (2, 5, 3), &device)?;
        let tags = Tensor::from_vec(vec![0u32, 1, 2, 0, 0, 0, 2, 2, 0, 0], (2, 5), &device)?;
        let mask = Tensor::from_vec(
            vec![0f32, 1., 1., 1., 0., 0., 1., 1., 0., 0.],
            (2, 5),
            &device,
        )?;
        let nll = crf
            .neg_log_likelihood(&emissions, &tags, &mask)?
            .to_scalar::<f32>()?;
        let scores = crf.scores()?;
        let row = |b: usize, t: usize| values[(b * 5 + t) * 3..(b * 5 + t) * 3 + 3].to_vec();
        let expected = brute_force_nll(&[row(0, 1), row(0, 2), row(0, 3)], &[1, 2, 0], &scores)
            + brute_force_nll(&[row(1, 1), row(1, 2)], &[2, 2], &scores);
        assert!((nll - expected).abs() < 1e-4, "{nll} vs {expected}");
        Ok(())
    }

    #[test]
    fn the_loss_has_gradients_for_transitions_and_emissions() -> Result<()> {
        let device = Device::Cpu;
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &device);
        let crf = Crf::new(vb, 3)?;
        let emissions = Var::from_tensor(&Tensor::zeros((1, 4, 3), DType::F32, &device)?)?;
        let tags = Tensor::from_vec(vec![0u32, 1, 2, 0], (1, 4), &device)?;
        let mask = Tensor::from_vec(vec![0f32, 1., 1., 0.], (1, 4), &device)?;
        let loss = crf.neg_log_likelihood(emissions.as_tensor(), &tags, &mask)?;
        let grads = loss.backward()?;
        let emission_grad = grads.get(emissions.as_tensor()).map(|g| {
            g.abs()
                .and_then(|g| g.sum_all())
                .and_then(|g| g.to_scalar::<f32>())
        });
        assert!(matches!(emission_grad, Some(Ok(g)) if g > 0.0));
        for var in varmap.all_vars() {
            assert!(grads.get(var.as_tensor()).is_some());
        }
        Ok(())
    }
}
