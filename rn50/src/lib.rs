//! Constants of the RN50 experiment.
