//! Constants of the ViT-L/14 experiment.
