//! SPGNet on the GPU. `state`: the model's tensors in arenas; `graph`: the whole pass recorded
//! once per (batch, input size, mode) from `layers` (every layer allocates what it keeps and
//! records its launches; a step only replays them); `trainer` and `evaluator` run graphs.

mod evaluator;
mod graph;
mod layers;
mod state;
mod trainer;

pub use evaluator::Evaluator;
pub use graph::Graph;
pub use state::DeviceState;
pub use trainer::{learning_rate, TrainOptions, Trainer};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Batch statistics, running statistics updated, dropout on, backward recorded.
    Train,
    /// Running statistics, no dropout, forward only.
    Eval,
}
