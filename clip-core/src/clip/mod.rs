//! CLIP itself, as OpenAI's `clip` package: the models (`model`), checkpoints and their strict
//! loading (`weights`), the released models' table (`released`), the BPE tokenizer (`tokenizer`)
//! and image preprocessing (`preprocess`); scoring images against texts (`score`); zero-shot
//! classification (`zeroshot`); user files opened only when they are regular files (`files`).
pub mod excerpt;
pub mod files;
pub mod model;
pub mod preprocess;
pub mod released;
pub mod score;
pub mod tokenizer;
pub mod torch_error;
pub mod weights;
pub mod zeroshot;
