"""The MPI shell of hpcdens: grid decomposition, halo atoms, parallel HDF5 output and the MPI
prediction driver.

Only this package (and the command-line entry points) know about communicators; the math it calls
(:mod:`hpcdens.neighbors`, :mod:`hpcdens.descriptors`, :mod:`hpcdens.bnn_predict`,
:mod:`hpcdens.sad`) runs on local arrays. ``decomposition``, ``halo`` and ``block`` import no
MPI, so they are tested serially; ``inputs`` checks on one rank; ``collective`` holds the
reductions and the raise-on-every-rank helpers; ``predict`` is the driver (in memory and to a
file), ``writer`` the parallel HDF5 file.
"""
