//! preprocess (to be written).
