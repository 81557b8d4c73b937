"""Deep variational Monte Carlo (FermiNet / PauliNet style ansatzes)."""
