//! Constants of the ViT-B/32 experiment.
