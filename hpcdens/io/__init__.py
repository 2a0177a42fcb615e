"""One module per file format, each read and written in one place: cube files, the HDF5
training set, the HDF5 prediction file, the model file, and the atomic JSON/CSV writers."""
