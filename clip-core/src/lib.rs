//! OpenAI's CLIP on libtorch: the models (`model`), strict weight loading (`weights`), the BPE
//! tokenizer (`tokenizer`) and image preprocessing (`preprocess`); and the seed's experiment: pixel
//! optimisation (`optimize`) with its augmentation (`augment`) and losses (`loss`), outputs
//! (`output`), the experiment binaries' flags and run (`experiment`), and the cross-model
//! comparison of its results (`compare`); the step's benchmark (`bench`) and its CUDA graphs (`cuda_graph`).
pub mod augment;
pub mod bench;
pub mod cli;
pub mod compare;
pub mod cuda_graph;
pub mod device;
pub mod experiment;
pub mod interrupt;
pub mod loss;
pub mod model;
pub mod optimize;
pub mod output;
pub mod preprocess;
pub mod tokenizer;
pub mod weights;
