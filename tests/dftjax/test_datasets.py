"""Reaction data sets (dftjax.datasets), fields in run_scf, and `dftjax bench reactions`."""

import json
import os

import numpy as np
import pytest
from pyscf import dft, gto

from basis.molecule import make_molecule
from dftjax import cli
from dftjax.bench import reactions
from dftjax.datasets import HARTREE_TO_KCAL, load_reactions
from dftjax.scf import SCFOptions, run_scf

GSCDB = os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "data", "gscdb138")
needs_gscdb = pytest.mark.skipif(not os.path.isdir(GSCDB), reason="the whole GSCDB138 is not next to the repository")
# G21IP and three Dip146 pairs, copied line for line (CC BY 4.0; see its README): always present
EXCERPT = os.path.join(os.path.dirname(__file__), "data", "gscdb138_excerpt")

TOY_REFERENCES = """reaction,set,reference_hartree,stoichiometry
H2_TAE,TOY,0.1744746,"-1,h2,2,h"
H2_HALF,TOY2,0.0872373,"-0.5,h2,1,h_copy"
"""
TOY_XYZ = """2
name=h2 charge=0 multiplicity=1
H 0 0 0
H 0 0 0.7414
1
name=h charge=0 multiplicity=2
H 0 0 0
1
name=h_copy charge=0 multiplicity=2
H 0.0 0.0 0.0
"""


def write_set(directory, references=TOY_REFERENCES, xyz=TOY_XYZ):
    directory.mkdir(exist_ok=True)
    (directory / "references.csv").write_text(references)
    (directory / "molecules.xyz").write_text(xyz)
    return str(directory)


@needs_gscdb
def test_gscdb138_loads_whole_and_by_set():
    data = load_reactions(GSCDB)
    assert (len(data.reactions), len(data.molecules), len(data.sets)) == (8331, 13857, 136)
    w4 = data.subset(["TAE_W4-17nonMR"])
    assert len(w4.reactions) == 183 and set(w4.sets) == {"TAE_W4-17nonMR"}
    assert set(w4.molecules) == {m for r in w4.reactions for m in r.molecules}
    # atomization energies: atoms minus molecule, positive references, open-shell atoms
    reaction = w4.reactions[0]
    assert all(r.reference > 0 for r in w4.reactions)
    assert sum(c for c, _ in reaction.terms if c > 0) > 1
    assert w4.molecules["W4-17_c"].multiplicity == 3 and w4.molecules["W4-17_h"].spin == 1
    assert w4.published_mae["TAE_W4-17nonMR"]["B3LYP"] == pytest.approx(4.96, abs=0.01)
    assert load_reactions(GSCDB, sets=["G21IP"]).reactions == data.subset(["G21IP"]).reactions
    with pytest.raises(ValueError, match="unknown set 'W4-17'.*did you mean.*TAE_W4-17"):
        load_reactions(GSCDB, sets=["W4-17"])


def test_the_excerpt_reads_like_the_whole_set():
    data = load_reactions(EXCERPT)
    assert (len(data.reactions), len(data.molecules), tuple(data.sets)) == (39, 77, ("Dip146", "G21IP"))
    g21 = data.subset(["G21IP"])
    assert len(g21.reactions) == 36 and all(r.reference > 0 for r in g21.reactions)  # ionisation: cation - neutral
    assert g21.published_mae["G21IP"]["PBE0"] == pytest.approx(3.69, abs=0.01)
    assert g21.sets["G21IP"].type == "Thermochemistry"
    cation = next(m for m in g21.molecules.values() if m.charge == 1)
    assert cation.multiplicity >= 1 and cation.field is None
    if os.path.isdir(GSCDB):  # the same molecules and reactions as the full file
        whole = load_reactions(GSCDB, sets=["G21IP"])
        assert [(r.name, r.terms, r.reference) for r in whole.reactions] == [(r.name, r.terms, r.reference) for r in g21.reactions]


def test_fields_are_stored_in_dftjax_convention_checked_with_pyscf_dipoles():
    """Dip146's references are E(+F) - E(-F) with the file's field F: -2 mu.F in dftjax's sign.
    HF/def2-SVP dipoles (PySCF) give the same signs, and magnitudes within a factor 2, on three molecules."""
    data = load_reactions(EXCERPT, sets=["Dip146"])
    for name in ("AlF2", "BF2", "ClF2"):
        reaction = next(r for r in data.reactions if r.terms[0][1] == f"Dip146_{name}+")
        plus = data.molecules[f"Dip146_{name}+"]
        minus = data.molecules[f"Dip146_{name}-"]
        assert np.allclose(plus.field, -np.asarray(minus.field)) and plus.fingerprint() != minus.fingerprint()
        mol = gto.M(atom=list(zip(plus.symbols, plus.coords.tolist())), basis="def2-svp", verbose=0)
        mf = dft.RKS(mol, xc="hf").run()
        mu = mf.dip_moment(unit="au", verbose=0)
        predicted = -2.0 * mu @ np.asarray(plus.field)  # E(+F) - E(-F), dftjax convention
        assert np.sign(predicted) == np.sign(reaction.reference)
        assert 0.5 < predicted / reaction.reference < 2.0  # HF dipoles: measured ratios 0.79, 1.19, 1.70


@pytest.mark.parametrize("references, xyz, message", [
    (TOY_REFERENCES, TOY_XYZ.replace("2\nname=h2", "two\nname=h2"), r"molecules.xyz line 1: expected the number of atoms"),
    (TOY_REFERENCES, TOY_XYZ.replace("H 0 0 0.7414", "Xx 0 0 0.7414"), r"line 4: unknown element 'Xx' in 'h2'"),
    (TOY_REFERENCES, TOY_XYZ.replace("H 0 0 0.7414", "H 0 zero 0.7414"), r"line 4: coordinates .* are not numbers"),
    (TOY_REFERENCES, TOY_XYZ.replace("multiplicity=2", "multiplicity=1"), r"line 6: multiplicity 1 is impossible for 1 electrons"),
    (TOY_REFERENCES, TOY_XYZ.replace("charge=0 multiplicity=2", "charge=one multiplicity=2"), r"line 6: charge='one'"),
    (TOY_REFERENCES, TOY_XYZ.replace("name=h charge", "name=h2 charge"), r"line 6: molecule 'h2' already defined on line 2"),
    (TOY_REFERENCES, TOY_XYZ + "3\nname=x\nH 0 0 0\n", r"frame of 3 atoms runs past the end"),
    (TOY_REFERENCES.replace("-1,h2,2,h", "-1,h2,2,hh"), TOY_XYZ, r"references.csv line 2: reaction 'H2_TAE' uses molecule 'hh'"),
    (TOY_REFERENCES.replace("-1,h2,2,h", "-1,h2,two,h"), TOY_XYZ, r"references.csv line 2: stoichiometric coefficient 'two'"),
    (TOY_REFERENCES.replace("-1,h2,2,h", "-1,h2,2"), TOY_XYZ, r"line 2: stoichiometry .* must be pairs"),
    (TOY_REFERENCES.replace("0.1744746", "big"), TOY_XYZ, r"line 2: reference_hartree 'big' is not a number"),
    (TOY_REFERENCES.replace("H2_HALF", "H2_TAE"), TOY_XYZ, r"line 3: reaction 'H2_TAE' already defined on line 2"),
    ("name,set\n", TOY_XYZ, r"line 1: expected the header"),
])
def test_bad_files_name_the_line(tmp_path, references, xyz, message):
    directory = write_set(tmp_path / "bad", references, xyz)
    with pytest.raises(ValueError, match=message):
        load_reactions(directory)


def test_missing_directory_or_file_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="not found"):
        load_reactions(tmp_path / "nowhere")
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "references.csv").write_text(TOY_REFERENCES)
    with pytest.raises(ValueError, match="has no molecules.xyz"):
        load_reactions(tmp_path / "half")


def test_run_scf_in_a_field_matches_pyscf_and_its_energy_derivative_is_minus_the_dipole():
    water = make_molecule("O 0 0 0.1173; H 0 0.7572 -0.4692; H 0 -0.7572 -0.4692")
    field = np.array([0.004, -0.002, 0.01])
    options = SCFOptions(xc="pbe")
    result = run_scf(water, options, field=field)

    mol = water.to_pyscf(basis="def2-svp")
    mf = dft.RKS(mol, xc="pbe")
    mf.conv_tol = 1e-11
    h = mf.get_hcore() + np.einsum("x,xij->ij", field, mol.intor("int1e_r"))
    mf.get_hcore = lambda *args: h
    e_nuc = mol.energy_nuc() - field @ (mol.atom_charges() @ mol.atom_coords())
    mf.energy_nuc = lambda *args: e_nuc
    assert result.converged
    assert abs(result.energy - mf.kernel()) < 1e-8  # measured 0.0 on 2026-12-07 (dftjax's grid equals PySCF's)

    step = 1e-4
    zero = run_scf(water, options)
    plus = run_scf(water, options, field=[0.0, 0.0, step])
    minus = run_scf(water, options, field=[0.0, 0.0, -step])
    assert abs((plus.energy - minus.energy) / (2 * step) + zero.dipole[2]) < 1e-6
    with pytest.raises(ValueError, match="field .* must be three finite numbers"):
        run_scf(water, options, field=[0.0, np.nan, 0.0])


def test_bench_reactions_computes_once_resumes_and_reports(tmp_path):
    directory = write_set(tmp_path / "toy")
    store = str(tmp_path / "energies.jsonl")
    run = dict(sets=None, xc="lda", basis="sto-3g", store_path=store, workers=1)
    first = reactions.main(directory, **run)
    # three molecules, two calculations: h_copy is h under another name (same fingerprint)
    assert first["molecules"]["computed"] == 2 and first["molecules"]["total"] == 3 and not first["failed_molecules"]

    records = [json.loads(line) for line in open(store)]
    energy = {r["molecule"]: r["energy"] for r in records}
    for name, reference in (("H2_TAE", 0.1744746), ("H2_HALF", 0.0872373)):
        coefficient = 1.0 if name == "H2_TAE" else 0.5
        expected = (coefficient * (2 * energy["h"] - energy["h2"]) - reference) * HARTREE_TO_KCAL
        reaction = next(r for r in first["reactions"] if r["name"] == name)
        assert reaction["error"] == pytest.approx(expected, abs=1e-9)
        assert first["sets"][reaction["set"]]["mae_kcal_mol"] == pytest.approx(abs(expected), abs=1e-9)
    assert first["mae_kcal_mol"] == pytest.approx(np.mean([abs(r["error"]) for r in first["reactions"]]))

    again = reactions.main(directory, **run)
    assert again["molecules"]["computed"] == 0 and again["reactions"] == first["reactions"]

    # an interruption that cut the last record: only that molecule is computed again
    text = open(store).read().splitlines()
    with open(store, "w") as f:
        f.write("\n".join(text[:-1]) + "\n" + text[-1][:20])
    resumed = reactions.main(directory, **run)
    assert resumed["molecules"]["computed"] == 1
    assert [r["error"] for r in resumed["reactions"]] == pytest.approx([r["error"] for r in first["reactions"]], abs=1e-8)


def test_bench_reactions_reports_failures_and_other_functionals(tmp_path):
    xyz = TOY_XYZ + "2\nname=hrn charge=1 multiplicity=1\nH 0 0 0\nRn 0 0 2.0\n1\nname=rn charge=0 multiplicity=1\nRn 0 0 0\n"
    references = TOY_REFERENCES + 'HRN,TOY,0.01,"-1,hrn,1,h,1,rn"\n'
    directory = write_set(tmp_path / "toy", references, xyz)
    store = str(tmp_path / "energies.jsonl")
    run = dict(sets=["TOY"], xc="lda", basis="sto-3g", store_path=store, workers=1)
    result = reactions.main(directory, **run)
    assert result["sets"]["TOY"]["reactions"] == 2 and result["sets"]["TOY"]["failed"] == 1
    assert {f["molecule"] for f in result["failed_molecules"]} == {"hrn", "rn"}
    assert all("not available for elements" in f["reason"] for f in result["failed_molecules"])
    assert [r["name"] for r in result["reactions"]] == ["H2_TAE"]
    assert "failed: hrn" in result["table"]

    # another functional already in the store (here: made-up energies) is reported over the same reactions
    with open(store) as f:
        records = [json.loads(line) for line in f]
    shift = {"h": -0.001, "h2": 0.002}
    with open(store, "a") as f:
        for r in records:
            if r["molecule"] in shift:
                other = dict(r, settings="other/sto-3g/grid3", key=r["key"].split("|")[0] + "|other/sto-3g/grid3",
                             energy=r["energy"] + shift[r["molecule"]])
                f.write(json.dumps(other) + "\n")
    again = reactions.main(directory, **run)
    assert again["molecules"]["computed"] == 0
    lda_error = again["reactions"][0]["error"]
    expected = abs(lda_error + (2 * shift["h"] - shift["h2"]) * HARTREE_TO_KCAL)
    assert again["sets"]["TOY"]["other_mae_kcal_mol"] == {"other/sto-3g/grid3": pytest.approx(expected, abs=1e-9)}


def test_bench_reactions_bad_input_exits_2_before_any_work(tmp_path, capsys):
    directory = write_set(tmp_path / "toy")
    cases = [
        (["bench", "reactions", "--xc", "pbe"], "needs --data"),
        (["bench", "reactions", "--data", directory, "--xc", "pbe,b3lyp"], "one functional per run"),
        (["bench", "reactions", "--data", directory, "--xc", "pbee"], "unknown functional"),
        (["bench", "reactions", "--data", directory, "--xc", "pbe", "--sets", "TOYS"], "unknown set 'TOYS'"),
        (["bench", "reactions", "--data", str(tmp_path / "none"), "--xc", "pbe"], "not found"),
        (["bench", "scf", "--data", directory], "options of 'dftjax bench reactions' only"),
    ]
    for argv, message in cases:
        assert cli.main(argv) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err


@pytest.mark.slow
def test_bench_reactions_in_two_worker_processes_equals_one(tmp_path):
    directory = write_set(tmp_path / "toy")
    one = reactions.main(directory, sets=None, xc="lda", basis="sto-3g", store_path=str(tmp_path / "a.jsonl"), workers=1)
    two = reactions.main(directory, sets=None, xc="lda", basis="sto-3g", store_path=str(tmp_path / "b.jsonl"), workers=2)
    assert two["molecules"]["workers"] == 2 and two["molecules"]["computed"] == 2
    assert [r["error"] for r in two["reactions"]] == pytest.approx([r["error"] for r in one["reactions"]], abs=1e-9)


def test_a_shipped_neural_functional_defaults_to_its_training_basis():
    assert reactions.default_basis("dftjax:nn-mgga") == "6-31g"  # the model file's metadata
    assert reactions.default_basis("PBE") == "def2-svp"
