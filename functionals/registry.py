"""Functional names (PySCF/libxc spelling) -> :class:`~functionals.functional.Functional` builders.

:func:`get_functional` reads the same strings as ``pyscf.dft.libxc.parse_xc`` and gives them the
same meaning:

* ``"x_part, c_part"``: exchange names before the comma, correlation names after it
  (``"b88,lyp"``, ``"lda,vwn"``, ``"pbe,pbe"``); ``"slater,"`` is exchange only, ``",vwn"``
  correlation only. A name means the exchange functional in the first part and the correlation
  functional in the second (``PBE``: GGA_X_PBE before the comma, GGA_C_PBE after it).
* without a comma, a conventional compound name: ``"pbe"`` (= ``"pbe,pbe"``), ``"blyp"``,
  ``"bp86"``, ``"b3lyp"``, ``"pbe0"``, ``"camb3lyp"``, ``"r2scan"``, ``"scan"``, ``"hf"``; a
  single component name means that component alone (``"lda"`` and ``"slater"`` are Slater exchange
  only, ``"b88"`` is B88 exchange only, ``"vwn"`` is VWN5 correlation only), as in PySCF.
* linear combinations ``"c1*NAME1 + c2*NAME2 - NAME3, ..."``, factors on either side of ``*``;
  a compound name is scaled as a unit (``"0.5*b3lyp"``). ``HF`` is full-range exact exchange,
  ``SR_HF(omega)`` / ``LR_HF(omega)`` short/long-range exact exchange.
* Exact-exchange coefficients follow ``pyscf.dft.libxc.hybrid_coeff`` / ``rsh_coeff``
  (see :mod:`functionals.functional`).

Definitions that differ between codes are PySCF's: ``VWN`` is VWN5 (libxc LDA_C_VWN), ``b3lyp`` is
libxc's HYB_GGA_XC_B3LYP with VWN-RPA (``VWN3``/``VWNRPA`` in PySCF), ``b3lyp5`` the VWN5 variant,
``LDA`` is Slater exchange.

Registries are explicit dicts of zero-argument builders: :data:`EXCHANGE`, :data:`CORRELATION`,
:data:`COMPOUND` (valid in either part, scaled as a unit) and :data:`ALIASES` (strings, only without
a comma). Meta-GGA builders import :mod:`functionals.mgga` lazily.

Wrapping your own functional (e.g. a neural network) needs no registry entry: any
``(params, features) -> (n,)`` function becomes a Functional with
:func:`functionals.functional.from_energy_density` (example in :mod:`functionals`), and combines
with registered ones via :func:`functionals.functional.linear_combination`.
"""
from __future__ import annotations

import difflib
import re
from typing import Callable

from functionals import gga, hybrid, lda
from functionals.functional import Functional, linear_combination

Builder = Callable[[], Functional]


def _mgga(name: str, function_name: str) -> Builder:
    def build() -> Functional:
        from functionals import mgga  # lazy: the meta-GGA module is optional for everything else

        return Functional(name=name, kind="mgga", energy_density=getattr(mgga, function_name),
                          params=None, supports_restricted=True)

    return build


#: Exchange functionals (names valid before the comma).
EXCHANGE: dict[str, Builder] = {
    "SLATER": lda.make_slater_x,
    "LDA": lda.make_slater_x,
    "LDA_X": lda.make_slater_x,
    "B88": gga.make_b88_x,
    "GGA_X_B88": gga.make_b88_x,
    "PBE": gga.make_pbe_x,
    "GGA_X_PBE": gga.make_pbe_x,
    # libxc's default omega for GGA_X_ITYH is 0.2; CAM-B3LYP builds its own with 0.33.
    "ITYH": lambda: gga.make_b88_short_range_x(0.2),
    "GGA_X_ITYH": lambda: gga.make_b88_short_range_x(0.2),
    "R2SCAN": _mgga("r2scan_x", "r2scan_x"),
    "MGGA_X_R2SCAN": _mgga("r2scan_x", "r2scan_x"),
    "SCAN": _mgga("scan_x", "scan_x"),
    "MGGA_X_SCAN": _mgga("scan_x", "scan_x"),
}

#: Correlation functionals (names valid after the comma).
CORRELATION: dict[str, Builder] = {
    "VWN": lda.make_vwn5_c,
    "VWN5": lda.make_vwn5_c,
    "LDA_C_VWN": lda.make_vwn5_c,
    "VWN3": lda.make_vwn_rpa_c,
    "VWNRPA": lda.make_vwn_rpa_c,
    "VWN_RPA": lda.make_vwn_rpa_c,
    "LDA_C_VWN_RPA": lda.make_vwn_rpa_c,
    "PW": lda.make_pw92_c,
    "PW92": lda.make_pw92_c,
    "LDA_C_PW": lda.make_pw92_c,
    "PW_MOD": lambda: lda.make_pw92_c(modified=True),
    "PWMOD": lambda: lda.make_pw92_c(modified=True),
    "LDA_C_PW_MOD": lambda: lda.make_pw92_c(modified=True),
    "PZ": lda.make_pz81_c,
    "PZ81": lda.make_pz81_c,
    "LDA_C_PZ": lda.make_pz81_c,
    "LYP": gga.make_lyp_c,
    "GGA_C_LYP": gga.make_lyp_c,
    "P86": gga.make_p86_c,
    "GGA_C_P86": gga.make_p86_c,
    "PBE": gga.make_pbe_c,
    "GGA_C_PBE": gga.make_pbe_c,
    "R2SCAN": _mgga("r2scan_c", "r2scan_c"),
    "MGGA_C_R2SCAN": _mgga("r2scan_c", "r2scan_c"),
    "SCAN": _mgga("scan_c", "scan_c"),
    "MGGA_C_SCAN": _mgga("scan_c", "scan_c"),
}

#: Exchange-correlation functionals defined as a unit (valid anywhere, scaled as a unit).
COMPOUND: dict[str, Builder] = {
    "B3LYP": hybrid.make_b3lyp,
    "B3LYPG": hybrid.make_b3lyp,
    "HYB_GGA_XC_B3LYP": hybrid.make_b3lyp,
    "B3LYP5": hybrid.make_b3lyp5,
    "PBE0": hybrid.make_pbe0,
    "PBE1PBE": hybrid.make_pbe0,
    "PBEH": hybrid.make_pbe0,
    "HYB_GGA_XC_PBEH": hybrid.make_pbe0,
    "CAMB3LYP": hybrid.make_camb3lyp,
    "CAM_B3LYP": hybrid.make_camb3lyp,
    "HYB_GGA_XC_CAM_B3LYP": hybrid.make_camb3lyp,
}

#: Conventional names for an "exchange, correlation" pair, recognised only without a comma
#: (PySCF's XC_ALIAS).
ALIASES: dict[str, str] = {
    "PBE": "PBE,PBE",
    "BLYP": "B88,LYP",
    "BP86": "B88,P86",
    "SVWN": "SLATER,VWN",
    "SPW92": "SLATER,PW_MOD",
    "HFLYP": "HF,LYP",
    "R2SCAN": "R2SCAN,R2SCAN",
    "SCAN": "SCAN,SCAN",
}

#: Shipped pretrained neural functionals (functionals/models; functionals.neural_xc), recognised
#: by their full name only (not inside linear combinations).
PRETRAINED_MODELS = ("dftjax:nn-mgga", "dftjax:nn-mgga-density", "dftjax:nn-local-hybrid")

#: The DM21 family (Kirkpatrick et al., Science 374, 1385 (2021); functionals.dm21), recognised by
#: their full name only, case-insensitive (``"DM21mc"``); nonlocal: they run in dftjax's own SCF.
DM21_MODELS = ("dm21", "dm21m", "dm21mc", "dm21mu")

# PySCF spells some names with a dash, which the term splitter would read as a minus sign.
_NAMES_WITH_DASH = {"CAM-B3LYP": "CAMB3LYP", "SR-HF": "SR_HF", "LR-HF": "LR_HF"}

_NUMBER = r"(?:\d+\.?\d*|\.\d+)(?:E[+-]?\d+)?"
_NAME = r"[A-Z_][A-Z0-9_]*(?:\(" + _NUMBER + r"\))?"
_TERM = re.compile(rf"([+-]?)(?:({_NUMBER})\*)?({_NAME}|{_NUMBER})(?:\*({_NUMBER}))?")


def available_functionals() -> list[str]:
    """Every name :func:`get_functional` resolves on its own (lower case)."""
    names = set(EXCHANGE) | set(CORRELATION) | set(COMPOUND) | set(ALIASES) | {"HF"}
    return sorted(n.lower() for n in names)


def _unknown(name: str, xc: str, candidates) -> ValueError:
    known = sorted({c.lower() for c in candidates})
    close = difflib.get_close_matches(name.lower(), known, n=5, cutoff=0.5)
    hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    return ValueError(f"unknown functional {name.lower()!r} in {xc!r}{hint} "
                      f"(see functionals.registry.available_functionals())")


class _Parsed:
    """Accumulates components and exact-exchange terms as pyscf.dft.libxc.parse_xc does."""

    def __init__(self):
        self.terms: list[tuple[float, Functional]] = []
        self.hf = 0.0  # short-range (or full) HF coefficient, PySCF's hyb[0]
        self.lr_hf = 0.0  # long-range HF coefficient, hyb[1]
        self.omega = 0.0

    def add_omega(self, omega: float, sr: float, lr: float, xc: str):
        if omega and self.omega and omega != self.omega:
            raise ValueError(f"different range-separation omegas in {xc!r}")
        self.omega = omega or self.omega
        self.hf += sr
        self.lr_hf += lr


def _parse_part(text: str, part: str, parsed: _Parsed, xc: str) -> None:
    """Parse one comma-separated part; ``part`` is 'x', 'c' or 'xc' (no comma in the string)."""
    pos = 0
    while pos < len(text):
        match = _TERM.match(text, pos)
        if match is None or match.end() == pos or (pos > 0 and not match.group(1)):
            raise ValueError(f"cannot parse {text[pos:]!r} in functional {xc!r}")
        pos = match.end()
        sign, pre, name, post = match.groups()
        if re.fullmatch(_NUMBER, name):  # "HF*0.2" style written as "0.2" alone is an error
            raise ValueError(f"number without functional name in {xc!r}")
        coefficient = (-1.0 if sign == "-" else 1.0) * float(pre or 1.0) * float(post or 1.0)
        _add_term(coefficient, name, part, parsed, xc)


def _add_term(coefficient: float, name: str, part: str, parsed: _Parsed, xc: str) -> None:
    if name == "HF":
        parsed.add_omega(0.0, coefficient, coefficient, xc)
        return
    range_match = re.fullmatch(rf"(SR_HF|LR_HF)\(({_NUMBER})\)", name)
    if range_match:
        omega = float(range_match.group(2))
        if range_match.group(1) == "SR_HF":
            parsed.add_omega(omega, coefficient, 0.0, xc)
        else:
            parsed.add_omega(omega, 0.0, coefficient, xc)
        return
    if part == "xc" and name in ALIASES:
        inner = _Parsed()
        x_text, c_text = ALIASES[name].split(",")
        _parse_part(x_text, "x", inner, xc)
        _parse_part(c_text, "c", inner, xc)
        parsed.terms.extend((coefficient * c, f) for c, f in inner.terms)
        parsed.add_omega(inner.omega, coefficient * inner.hf, coefficient * inner.lr_hf, xc)
        return
    registries = {"x": (EXCHANGE, COMPOUND), "c": (CORRELATION, COMPOUND),
                  "xc": (COMPOUND, EXCHANGE, CORRELATION)}[part]
    for registry in registries:
        if name in registry:
            parsed.terms.append((coefficient, registry[name]()))
            return
    candidates = [n for r in registries for n in r] + ["HF"] + (list(ALIASES) if part == "xc" else [])
    raise _unknown(name, xc, candidates)


def get_functional(xc: str) -> Functional:
    """The Functional for a PySCF/libxc-style name or linear combination (case-insensitive).

    Args:
        xc: e.g. ``"lda,vwn"``, ``"pbe"``, ``"b3lyp"``, ``"camb3lyp"``, ``"r2scan"``, ``"hf"``,
            ``".2*HF + .08*LDA + .72*B88, .81*LYP + .19*VWN"``.
    Returns:
        A Functional named ``xc`` (lower case, spaces removed) whose energy density is the
        weighted sum of the components' (params: tuple of theirs) and whose exact-exchange
        coefficients equal PySCF's ``hybrid_coeff``/``rsh_coeff`` for the same string.
    Raises:
        ValueError: unknown name (with close matches) or malformed string.

    >>> get_functional("b3lyp").exact_exchange
    0.2
    >>> get_functional("camb3lyp").rsh_coeff()
    (0.33, 0.65, -0.46)
    """
    if not isinstance(xc, str):
        raise TypeError(f"functional name must be a string; got {type(xc).__name__}")
    if xc.strip().lower() in PRETRAINED_MODELS:
        from functionals import neural_xc  # lazy: flax and the weights only when asked for

        return neural_xc.load_pretrained(xc.strip().lower())
    if xc.strip().lower() in DM21_MODELS:
        from functionals import dm21  # lazy: its weights only when asked for

        return dm21.make_functional(xc.strip().lower())
    text = re.sub(r"\s+", "", xc.upper())
    for dashed, plain in _NAMES_WITH_DASH.items():
        text = text.replace(dashed, plain)
    name = text.lower()
    if text.count(",") > 1:
        raise ValueError(f"at most one comma (exchange, correlation) allowed in {xc!r}")
    parsed = _Parsed()
    if "," in text:
        x_text, c_text = text.split(",")
        _parse_part(x_text, "x", parsed, xc)
        _parse_part(c_text, "c", parsed, xc)
    else:
        if not text:
            raise ValueError("empty functional name")
        _parse_part(text, "xc", parsed, xc)
    if len(parsed.terms) == 1 and parsed.terms[0][0] == 1.0 and not (parsed.hf or parsed.lr_hf):
        return parsed.terms[0][1].replace(name=name)  # a single registered functional as is
    return linear_combination(parsed.terms, name, hf=parsed.hf, lr_hf=parsed.lr_hf,
                              omega=parsed.omega)
