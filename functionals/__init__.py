"""Exchange-correlation and kinetic energy functionals (pure functions of density features)."""
