"""The MPI shell of hpcdens: grid decomposition, halo atoms, parallel HDF5 output and the MPI
prediction driver.

Only this package (and the command-line entry points) know about communicators; the math it calls
(:mod:`hpcdens.neighbors`, :mod:`hpcdens.descriptors`, :mod:`hpcdens.bnn`) runs on local arrays.
``decomposition`` and ``halo`` are pure numpy and import no MPI, so they are tested serially.
"""
