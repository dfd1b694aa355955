//! The student: a pure-ndarray MLP, its distillation loss, optimizers, training loop and file format.

pub mod checkpoint;
pub mod io;
pub mod loss;
pub mod mlp;
pub mod optim;
pub mod train;

pub use checkpoint::Checkpointing;
pub use io::{StudentFile, StudentInfo};
pub use mlp::{Dense, Mlp};
pub use optim::{Adam, LrSchedule, Optimizer, Sgd};
pub use train::{train, EpochLog, TrainData, TrainSettings, TrainedStudent};
