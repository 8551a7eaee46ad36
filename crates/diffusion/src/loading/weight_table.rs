//! The weights a model was built from, by diffusers name, kept beside the model so that
//! LoRA adapters can be merged into them in place and taken out again without reloading.
//!
//! A [`RecordingBackend`] wraps the backend a component loads from (memory-mapped
//! safetensors, a renamed single-file checkpoint) and keeps a handle on every tensor it
//! hands out. The handles share storage with the layers, so writing into one changes the
//! model; the wrapped backend stays available to read the untouched base weights again.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{Init, VarBuilder};

/// One component's weights as its layers hold them, plus where they came from.
#[derive(Clone)]
pub struct WeightTable {
    tensors: Arc<Mutex<BTreeMap<String, Tensor>>>,
    source: Arc<dyn SimpleBackend>,
    dtype: DType,
    device: Device,
}

impl std::fmt::Debug for WeightTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WeightTable")
            .field("dtype", &self.dtype)
            .finish_non_exhaustive()
    }
}

impl WeightTable {
    /// A VarBuilder reading from `source` whose every tensor is recorded in the table.
    pub fn recording(
        source: Box<dyn SimpleBackend>,
        dtype: DType,
        device: &Device,
    ) -> (VarBuilder<'static>, Self) {
        let table = Self {
            tensors: Arc::new(Mutex::new(BTreeMap::new())),
            source: Arc::from(source),
            dtype,
            device: device.clone(),
        };
        let backend = RecordingBackend {
            table: table.clone(),
        };
        (
            VarBuilder::from_backend(Box::new(backend), dtype, device.clone()),
            table,
        )
    }

    /// The tensor the model holds for `name`.
    pub fn get(&self, name: &str) -> Option<Tensor> {
        self.lock().get(name).cloned()
    }

    /// Names of every weight the model holds.
    pub fn names(&self) -> Vec<String> {
        self.lock().keys().cloned().collect()
    }

    /// The base weight for `name` as loaded, read again from the source.
    pub fn base(&self, name: &str) -> candle_core::Result<Tensor> {
        let held = self
            .get(name)
            .ok_or_else(|| candle_core::Error::Msg(format!("no weight `{name}`")))?;
        self.source.get(
            held.shape().clone(),
            name,
            Init::Const(0.),
            self.dtype,
            &self.device,
        )
    }

    /// Overwrites the model's weight `name` in place with `value` (same shape and dtype).
    pub fn overwrite(&self, name: &str, value: &Tensor) -> candle_core::Result<()> {
        let held = self
            .get(name)
            .ok_or_else(|| candle_core::Error::Msg(format!("no weight `{name}`")))?;
        let value = value.to_dtype(held.dtype())?.contiguous()?;
        if value.shape() != held.shape() {
            candle_core::bail!(
                "`{name}`: new value has shape {:?}, the weight {:?}",
                value.dims(),
                held.dims()
            );
        }
        held.slice_set(&value, 0, 0)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Tensor>> {
        // A poisoned lock only means another thread panicked mid-insert; the map is intact.
        self.tensors
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

struct RecordingBackend {
    table: WeightTable,
}

impl RecordingBackend {
    /// Every source hands out freshly read buffers (safetensors loads copy out of the
    /// mapping), so each weight owns its storage; in-place writes need it contiguous.
    fn record(&self, name: &str, tensor: Tensor) -> candle_core::Result<Tensor> {
        let tensor = tensor.contiguous()?;
        self.table.lock().insert(name.to_string(), tensor.clone());
        Ok(tensor)
    }
}

impl SimpleBackend for RecordingBackend {
    fn get(
        &self,
        shape: Shape,
        name: &str,
        init: Init,
        dtype: DType,
        device: &Device,
    ) -> candle_core::Result<Tensor> {
        if let Some(held) = self.table.get(name) {
            if held.shape() == &shape && held.dtype() == dtype {
                return Ok(held);
            }
        }
        let tensor = self.table.source.get(shape, name, init, dtype, device)?;
        self.record(name, tensor)
    }

    fn get_unchecked(
        &self,
        name: &str,
        dtype: DType,
        device: &Device,
    ) -> candle_core::Result<Tensor> {
        let tensor = self.table.source.get_unchecked(name, dtype, device)?;
        self.record(name, tensor)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.table.source.contains_tensor(name)
    }
}
