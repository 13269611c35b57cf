//! CLIP models.
