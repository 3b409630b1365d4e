"""Input and output: atomic writes, HDF5 results, Gwyddion and image formats."""
