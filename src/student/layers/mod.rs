//! Layers as small structs with a forward and a backward pass over a batch of rows; students compose
//! them and own the buffers in between.

mod head;
mod linear;
mod norm;
mod relu;
mod scaling;

pub use head::{head_backward, head_extras, head_forward, head_position, head_width, HeadBuffers};
pub use linear::Linear;
pub use norm::BatchNorm;
pub use relu::Relu;
pub use scaling::{InputScaling, InputStats};
