//! OpenAI's CLIP on libtorch: the models (`model`), strict weight loading (`weights`), the BPE
//! tokenizer (`tokenizer`) and image preprocessing (`preprocess`).
pub mod augment;
pub mod cli;
pub mod device;
pub mod loss;
pub mod model;
pub mod optimize;
pub mod preprocess;
pub mod tokenizer;
pub mod weights;
