"""Benchmarks: dftjax against its peers (PySCF/libcint, libxc, ...) in the same process."""
