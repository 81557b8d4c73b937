"""Functional names: resolution, exact-exchange coefficients against PySCF, errors."""
import numpy as np
import pytest
from pyscf.dft import libxc

from functionals import Functional, available_functionals, get_functional

NAMES = ["lda,vwn", "lda", "slater", "pbe", "pbe,pbe", "blyp", "b88,lyp", "bp86", "b3lyp", "pbe0",
         "r2scan", "scan", "camb3lyp", "hf", ".2*HF + .08*LDA + .72*B88, .81*LYP + .19*VWN"]
MORE = ["b3lyp5", "b3lypg", "cam-b3lyp", "0.5*b3lyp", "hf,lyp", "0.25*HF + 0.75*PBE, PBE",
        "SR_HF(0.3)*0.2 + LR_HF(0.3)*0.5 + b88, lyp", "0.5*camb3lyp", "svwn", ",vwn", "b88,",
        "lda,vwn_rpa", "slater,pw", "b88 - 0.5*slater, p86", "HF*0.3 + 0.7*b88,lyp", "PBE1PBE"]

KIND = {"LDA": "lda", "GGA": "gga", "MGGA": "mgga", "HF": "hf"}


@pytest.mark.parametrize("name", NAMES + MORE)
def test_name_resolves_with_pyscf_coefficients_and_type(name):
    f = get_functional(name)
    assert isinstance(f, Functional)
    assert f.kind == KIND[libxc.xc_type(name)]
    np.testing.assert_allclose(f.exact_exchange, libxc.hybrid_coeff(name), rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(f.rsh_coeff(), libxc.rsh_coeff(name), rtol=1e-14, atol=1e-15)


@pytest.mark.parametrize("name", ["lda,vwn", "b88,lyp", "b3lyp", "pbe0", "camb3lyp", "bp86",
                                  ".2*HF + .08*LDA + .72*B88, .81*LYP + .19*VWN", "0.5*b3lyp",
                                  "b88 - 0.5*slater, p86"])
def test_components_are_pyscf_parse(name):
    """Same libxc components with the same weights as pyscf.dft.libxc.parse_xc."""
    libxc_name = {"slater": 1, "vwn5": 7, "vwn_rpa": 8, "b88": 106, "pbe_x": 101, "pbe_c": 130,
                  "lyp": 131, "p86": 132, "b88_sr": 529}
    compound = {"b3lyp": 402, "pbe0": 406, "camb3lyp": 433}

    def leaves(f, c=1.0):
        if f.components:
            return [t for ci, fi in f.components for t in leaves(fi, c * ci)]
        return [(libxc_name[f.name], c)]

    ours = {}
    for xid, c in leaves(get_functional(name)):
        ours[xid] = ours.get(xid, 0.0) + c
    ref = {}
    for xid, c in libxc.parse_xc(name)[1]:
        if xid in compound.values():  # expand libxc's own mixtures to compare like with like
            inner = {v: k for k, v in compound.items()}[xid]
            for xid2, c2 in leaves(get_functional(inner)):
                ref[xid2] = ref.get(xid2, 0.0) + c * c2
        else:
            ref[int(xid)] = ref.get(int(xid), 0.0) + c
    assert ours.keys() == ref.keys()
    for k in ours:
        np.testing.assert_allclose(ours[k], ref[k], rtol=1e-14)


def test_b3lyp_uses_vwn_rpa_like_pyscf_and_b3lyp5_vwn5():
    leaves = {f.name: c for c, f in get_functional("b3lyp").components}
    assert leaves == pytest.approx({"slater": 0.08, "b88": 0.72, "lyp": 0.81, "vwn_rpa": 0.19})
    leaves5 = {f.name: c for c, f in get_functional("b3lyp5").components}
    assert "vwn5" in leaves5 and "vwn_rpa" not in leaves5
    # the explicit string means VWN5, as in PySCF
    explicit = get_functional(".2*HF + .08*LDA + .72*B88, .81*LYP + .19*VWN")
    assert "vwn5" in {f.name for _, f in explicit.components}


def test_position_decides_exchange_or_correlation():
    assert get_functional("pbe,").name == "pbe," and get_functional("pbe,").params.keys() >= {"kappa"}
    assert get_functional(",pbe").params.keys() >= {"beta", "gamma"}
    assert {f.name for _, f in get_functional("pbe").components} == {"pbe_x", "pbe_c"}
    assert get_functional("lda").name == "lda" and not get_functional("lda").components


@pytest.mark.parametrize("bad, suggestion", [("b3lpy", "b3lyp"), ("pbe1", "pbe0"),
                                             ("b88,lpy", "lyp"), ("camb3lypp", "camb3lyp")])
def test_unknown_name_suggests_close_matches(bad, suggestion):
    with pytest.raises(ValueError, match=f"unknown functional.*'{suggestion}'"):
        get_functional(bad)


@pytest.mark.parametrize("bad", ["", "b3lyp,,lyp", "0.5*", "b88+*lyp", "1.2", "foo,lyp"])
def test_malformed_or_unknown_raise_value_error(bad):
    with pytest.raises(ValueError):
        get_functional(bad)


def test_available_functionals_all_resolve():
    for name in available_functionals():
        try:
            get_functional(name)
        except ImportError:  # meta-GGAs need functionals.mgga
            pass


def test_functional_is_a_valid_static_jit_argument():
    import jax
    import jax.numpy as jnp

    from functionals import restricted_features

    @jax.jit
    def energy(rho):
        return jnp.sum(xc(restricted_features(rho)))

    xc = get_functional("lda")
    e = jax.jit(lambda f, r: jnp.sum(f(restricted_features(r))), static_argnums=0)(xc, jnp.ones(3))
    np.testing.assert_allclose(e, energy(jnp.ones(3)))
    np.testing.assert_allclose(e, 3 * -0.75 * (3 / np.pi) ** (1 / 3), rtol=1e-14)
