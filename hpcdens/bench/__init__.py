"""Benchmarks that print figures: SCF cost per backend, descriptor and network speed,
prediction speed and memory."""
