"""Training the Bayesian network on DFT training sets: data (descriptors, split, sampling),
the data-parallel loop with checkpoints, the driver, and the choice of M."""
