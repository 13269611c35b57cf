//! The optimisation engine: the image's augmentation (`augment`), the losses (`loss`), the
//! optimisation loop (`optimize`) and CUDA graphs (`cuda_graph`).
pub mod augment;
pub mod cuda_graph;
pub mod loss;
pub mod optimize;
