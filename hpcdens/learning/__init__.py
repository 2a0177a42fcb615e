"""Bayesian active learning over the composition space: the journaled loop, its reports, and
the comparison of learning runs on one test set."""
