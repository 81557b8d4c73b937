"""Benchmark molecules (geometries in angstrom, PySCF atom-string format).

Water and benzene are standard experimental-like geometries; the 20-atom molecule is n-hexane
(C6H14) in an ideal all-trans zigzag with tetrahedral angles, C-C 1.53 A and C-H 1.09 A, built
programmatically so that anyone can regenerate it.
"""

from __future__ import annotations

import math

import numpy as np

WATER = "O 0 0 0.1173; H 0 0.7572 -0.4692; H 0 -0.7572 -0.4692"

BENZENE = "; ".join(
    [f"C {1.3915 * math.cos(k * math.pi / 3):.6f} {1.3915 * math.sin(k * math.pi / 3):.6f} 0" for k in range(6)]
    + [f"H {2.4715 * math.cos(k * math.pi / 3):.6f} {2.4715 * math.sin(k * math.pi / 3):.6f} 0" for k in range(6)]
)


def n_alkane(n_carbons: int, cc: float = 1.53, ch: float = 1.09) -> str:
    """All-trans CnH(2n+2) with ideal tetrahedral geometry, as a PySCF atom string (angstrom)."""
    half = math.radians(109.4712206) / 2
    dx, dy = cc * math.sin(half), cc * math.cos(half)
    carbons = [np.array([i * dx, (i % 2) * dy, 0.0]) for i in range(n_carbons)]
    atoms = [("C", c) for c in carbons]
    z = np.array([0.0, 0.0, 1.0])
    for i, c in enumerate(carbons):
        out = np.array([0.0, -1.0 if i % 2 == 0 else 1.0, 0.0])
        for sign in (1.0, -1.0):
            atoms.append(("H", c + ch * (math.cos(half) * out + sign * math.sin(half) * z)))
        for end, step in ((0, -1), (n_carbons - 1, 1)):
            if i == end:
                virtual = np.array([(i + step) * dx, ((i + step) % 2) * dy, 0.0])
                direction = (virtual - c) / np.linalg.norm(virtual - c)
                atoms.append(("H", c + ch * direction))
    return "; ".join(f"{s} {x:.6f} {y:.6f} {zz:.6f}" for s, (x, y, zz) in atoms)


HEXANE = n_alkane(6)

MOLECULES = {"water": WATER, "benzene": BENZENE, "hexane": HEXANE}
