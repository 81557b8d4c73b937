"""Orbital-free DFT in the 1D box: data generator, KRR and neural functionals, the OF solver."""
import dataclasses
import functools
import pickle

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dftjax.ofdft import box, data1d, krr, neural, solver
from functionals import kinetic

KCAL = data1d.HARTREE_TO_KCAL_PER_MOL


@pytest.fixture(scope="module")
def paper_n1():
    return data1d.paper_training_set(1)


def test_paper_potentials_columns_are_reordered():
    wells = data1d.load_paper_potentials()
    assert wells.shape == (100, 3, 3)
    # the README's example: "1.18 0.0720 0.530" is depth 1.18, width 0.072, centre 0.530
    np.testing.assert_allclose(wells[0, 0], [1.180270056381577, 0.5299345325943254, 0.07195101071267996])
    assert np.all((wells[..., 1] >= 0.4) & (wells[..., 1] <= 0.6))
    assert np.all((wells[..., 2] >= 0.03) & (wells[..., 2] <= 0.1))
    assert np.all((wells[..., 0] >= 1.0) & (wells[..., 0] <= 10.0))


@pytest.mark.parametrize("n_electrons", [1, 2, 4])
def test_particle_in_a_box(n_electrons):
    data = data1d.generate(np.zeros((1, 1, 3)) + [0.0, 0.5, 0.1], n_electrons)
    exact = sum(np.pi**2 * k**2 / 2 for k in range(1, n_electrons + 1))
    # 8th-order stencil with odd-reflection walls on 498 interior points: relative error < 1e-10
    np.testing.assert_allclose(data.kinetic_energies[0], exact, rtol=1e-10)
    np.testing.assert_allclose(data.energies[0], exact, rtol=1e-10)
    x = data.grid
    density = sum(2 * np.sin(k * np.pi * x) ** 2 for k in range(1, n_electrons + 1))
    np.testing.assert_allclose(data.densities[0], density, atol=1e-9)


def test_converged_in_grid_size():
    wells = data1d.load_paper_potentials()[:4]
    coarse = data1d.generate(wells, 2, n_points=250)
    fine = data1d.generate(wells, 2)
    # kinetic energies of 10-50 Ha agree to < 1e-8 Ha (1e-5 kcal/mol) between 250 and 500 points
    np.testing.assert_allclose(coarse.kinetic_energies, fine.kinetic_energies, atol=1e-8)
    np.testing.assert_allclose(fine.densities.sum(1) * fine.dx, 2.0, atol=1e-12)


def test_random_wells_distribution_and_seed():
    a = data1d.random_wells(500, seed=3)
    np.testing.assert_array_equal(a, data1d.random_wells(500, seed=3))
    assert a[..., 0].min() >= 1 and a[..., 0].max() <= 10 and a[..., 1].min() >= 0.4
    assert a[..., 1].max() <= 0.6 and a[..., 2].min() >= 0.03 and a[..., 2].max() <= 0.1
    assert abs(a[..., 0].mean() - 5.5) < 0.3    # U[1, 10] mean 5.5, std/sqrt(1500) = 0.07


def test_von_weizsaecker_exact_for_one_particle(paper_n1):
    # vW is exact for N = 1: to grid accuracy in both the Laplacian (feature) form and the operator form
    for i in range(5):
        n = jnp.asarray(paper_n1.densities[i])
        laplacian_form = box.kinetic_energy(kinetic.von_weizsaecker_laplacian, None, n, paper_n1.dx)
        operator_form = box.von_weizsaecker_energy(n, paper_n1.dx)
        amplitude_form = box.trapezoid(0.5 * box.amplitude_gradient(n, paper_n1.dx) ** 2, paper_n1.dx)
        assert abs(float(laplacian_form) - paper_n1.kinetic_energies[i]) < 1e-8   # 8th-order stencils
        assert abs(float(operator_form) - paper_n1.kinetic_energies[i]) < 1e-9    # same operator as eigh
        assert abs(float(amplitude_form) - paper_n1.kinetic_energies[i]) < 1e-8   # 1/2 |sqrt(n)'|^2


def test_thomas_fermi_von_weizsaecker_bounds_for_many_particles():
    # vW is a lower bound of T_s for any N; TF + vW is above it for these densities (measured
    # 63 / 69 / 90 Ha for TF / exact / TF+vW at N = 3)
    data = data1d.generate(data1d.load_paper_potentials()[:3], 3)
    for i in range(3):
        n = jnp.asarray(data.densities[i])
        vw = float(box.von_weizsaecker_energy(n, data.dx))
        tfvw = float(box.kinetic_energy(kinetic.thomas_fermi_von_weizsaecker_1d, None, n, data.dx))
        assert vw < data.kinetic_energies[i] < tfvw


def test_krr_reproduces_training_points_and_derivative_matches_finite_differences(paper_n1):
    train = paper_n1.take(slice(0, 20))
    model = krr.fit(train.densities, train.kinetic_energies, train.dx, length_scale=0.5, regularization=1e-12)
    predicted = jax.vmap(lambda n: krr.predict(model, n))(jnp.asarray(train.densities))
    # lambda = 1e-12 interpolates: residual lambda |alpha| ~ 1e-9 Ha
    np.testing.assert_allclose(predicted, train.kinetic_energies, atol=1e-6)

    n = jnp.asarray(paper_n1.densities[50])
    derivative = krr.functional_derivative(model, n)
    direction = jnp.asarray(paper_n1.densities[51] - paper_n1.densities[50])
    h = 1e-4
    fd = (krr.predict(model, n + h * direction) - krr.predict(model, n - h * direction)) / (2 * h)
    analytic = jnp.sum(derivative * direction) * train.dx
    np.testing.assert_allclose(analytic, fd, rtol=1e-6)   # O(h^2) truncation on a Gaussian kernel


@pytest.mark.slow  # default-suite budget (2026-11-28); the physics is covered by cheaper default tests
def test_krr_cross_validated_small_benchmark(paper_n1):
    # M = 50 paper densities, tested on 100 fresh ones: the paper's KRR reaches 1.3 kcal/mol MAE
    # and 7.3 max (Brockherde et al. 2017, Table I); we measure 0.7 / 5.8 (1.5 / 8 allows for the
    # smaller test set and a different M = 50 subset).
    train = paper_n1.take(slice(0, 50))
    test = data1d.random_set(100, 1, seed=11)
    model = krr.fit_cross_validated(train.densities, train.kinetic_energies, train.dx)
    predicted = jax.vmap(lambda n: krr.predict(model, n))(jnp.asarray(test.densities))
    errors = np.abs(np.asarray(predicted) - test.kinetic_energies) * KCAL
    assert errors.mean() < 1.5
    assert errors.max() < 10.0


def test_krr_save_load_roundtrip(tmp_path, paper_n1):
    train = paper_n1.take(slice(0, 10))
    model = krr.fit(train.densities, train.kinetic_energies, train.dx, 0.5, 1e-8)
    krr.save(model, tmp_path / "m.npz", n_electrons=1)
    loaded, meta = krr.load(tmp_path / "m.npz")
    assert meta["n_electrons"] == 1
    n = jnp.asarray(paper_n1.densities[30])
    assert float(krr.predict(loaded, n)) == float(krr.predict(model, n))


def test_of_solver_with_von_weizsaecker_recovers_exact_ground_state(paper_n1):
    dx = paper_n1.dx
    kinetic_fn = functools.partial(box.von_weizsaecker_energy, dx=dx)
    start = jnp.asarray(2.0 * np.sin(np.pi * paper_n1.grid) ** 2)
    solve = jax.jit(jax.vmap(lambda v: solver.minimize_sqrt(
        kinetic_fn, v, start, 1.0, dx, tolerance=1e-9, preconditioner=solver.default_preconditioner(500))))
    result = solve(jnp.asarray(paper_n1.potentials[:3]))
    # same discrete Hamiltonian as the eigensolver: agreement to the L-BFGS tolerance
    np.testing.assert_allclose(result.energy, paper_n1.energies[:3], atol=1e-8)
    np.testing.assert_allclose(result.kinetic_energy, paper_n1.kinetic_energies[:3], atol=1e-7)
    np.testing.assert_allclose(result.density, paper_n1.densities[:3], atol=1e-6)
    assert np.all(np.asarray(result.iterations) < 100)
    np.testing.assert_allclose(jnp.sum(result.density, axis=1) * dx, 1.0, atol=1e-12)


def test_sine_preconditioner_is_the_dense_one_and_solves_von_weizsaecker(paper_n1):
    dx = paper_n1.dx
    size = len(paper_n1.grid) - 2
    x = jnp.asarray(np.random.default_rng(0).normal(size=size))
    np.testing.assert_allclose(solver.dst1(solver.dst1(x)), x, atol=1e-12)   # orthonormal DST-I
    # the box's hard-wall kinetic matrix is diagonal in the sine basis: same eigenvalues, same
    # (T + 10)^-1/2 as the dense eigendecomposition, to rounding (|T| ~ 1e6 Ha on this grid)
    t_matrix = np.asarray(box.interior_kinetic_matrix(len(paper_n1.grid)))
    np.testing.assert_allclose(solver.sine_kinetic_eigenvalues(size, dx), np.linalg.eigvalsh(t_matrix),
                               rtol=1e-10, atol=1e-6)
    apply, inverse = solver.sine_preconditioner(size, dx)
    dense, dense_inverse = solver.default_preconditioner(len(paper_n1.grid))
    np.testing.assert_allclose(apply(x), dense @ x, atol=1e-10)
    np.testing.assert_allclose(inverse(x), dense_inverse @ x, rtol=1e-9, atol=1e-7)
    np.testing.assert_allclose(inverse(apply(x)), x, atol=1e-10)
    kinetic_fn = functools.partial(box.von_weizsaecker_energy, dx=dx)
    start = jnp.asarray(2.0 * np.sin(np.pi * paper_n1.grid) ** 2)
    result = jax.jit(lambda v: solver.minimize_sqrt(kinetic_fn, v, start, 1.0, dx, tolerance=1e-9,
                                                    preconditioner=(apply, inverse)))(jnp.asarray(paper_n1.potentials[0]))
    # vW is exact for N = 1: the same energy as the dense-preconditioned test above, to the tolerance
    np.testing.assert_allclose(result.energy, paper_n1.energies[0], atol=1e-8)
    assert int(result.iterations) < 100


def test_of_solver_unpreconditioned_agrees(paper_n1):
    dx = paper_n1.dx
    kinetic_fn = functools.partial(box.von_weizsaecker_energy, dx=dx)
    start = jnp.asarray(2.0 * np.sin(np.pi * paper_n1.grid) ** 2)
    result = jax.jit(lambda v: solver.minimize_sqrt(kinetic_fn, v, start, 1.0, dx, max_iterations=3000,
                                                    tolerance=1e-8))(jnp.asarray(paper_n1.potentials[7]))
    assert abs(float(result.energy) - paper_n1.energies[7]) < 1e-7


def _ofdft_cli(argv):
    import argparse

    from dftjax.ofdft import cli

    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_solve_von_weizsaecker_matches_exact_for_one_particle():
    out = _ofdft_cli(["ofdft", "solve", "--potential", "5,0.5,0.05;3,0.45,0.08;2,0.6,0.04",
                      "--electrons", "1", "--model", "vw", "--json"])
    assert len(out["density"]) == 500
    assert abs(out["energy"] - out["exact_energy"]) < 1e-8      # vW is exact for N = 1
    assert abs(out["kinetic_energy"] - out["exact_kinetic_energy"]) < 1e-6
    assert "table" in out
    exact = _ofdft_cli(["ofdft", "solve", "--potential", "0,0.5,0.1", "--electrons", "2", "--model", "exact"])
    assert abs(exact["energy"] - 5 * np.pi**2 / 2) < 1e-8        # (1 + 4) pi^2 / 2


@pytest.mark.parametrize("argv", [
    ["--potential", "5,0.5", "--model", "vw"],
    ["--potential", "5,0.5,0.0", "--model", "vw"],
    ["--potential", "5,0.5,0.1", "--model", "no-such-model"],
    ["--potential", "5,0.5,0.1", "--electrons", "0", "--model", "vw"],
])
def test_cli_solve_rejects_bad_input(argv):
    with pytest.raises(ValueError):
        _ofdft_cli(["ofdft", "solve", *argv])


@pytest.mark.parametrize("argv", [
    ["--model", "nn-wide"],
    ["--model", "nn-local", "--channels", "8,x"],
    ["--model", "nn-local", "--steps", "0"],
    ["--model", "nn-global", "--modes", "0"],
    ["--model", "nn-global-lda"],
    ["--model", "krr", "--size", "1"],
])
def test_cli_train_rejects_bad_input_before_generating_data(argv, monkeypatch):
    from dftjax.ofdft import benchmark

    def no_data(*args, **kwargs):
        raise AssertionError("data generated before the input was checked")
    monkeypatch.setattr(benchmark, "training_set", no_data)
    with pytest.raises(ValueError):
        _ofdft_cli(["ofdft", "train", *argv])


def test_cli_train_resumes_from_its_checkpoint_directory(tmp_path):
    # the wiring of neural.train's checkpoint (its exact resumption is tested below): a rerun with
    # the same arguments finds the finished state and ends with the same model
    argv = ["ofdft", "train", "--electrons", "1", "--size", "3", "--test", "2", "--model", "nn-local-vw",
            "--channels", "4", "--steps", "3", "--checkpoint-dir", str(tmp_path), "--json"]
    first = _ofdft_cli(argv)
    assert first["resumed_from_step"] == 0 and (tmp_path / "nn-local-vw_n1_m3.state.pkl").exists()
    second = _ofdft_cli(argv)
    assert second["resumed_from_step"] == 3
    assert second["kinetic_mae_kcal_per_mol"] == first["kinetic_mae_kcal_per_mol"]


@pytest.mark.slow  # default-suite budget (2026-11-28); the physics is covered by cheaper default tests
def test_neural_derivative_matches_finite_differences_and_roundtrips(tmp_path, paper_n1):
    train = paper_n1.take(slice(0, 8))
    options = neural.NeuralOptions(channels=(8, 8), kernel_size=3, steps=30, learning_rate=1e-2)
    losses = []
    model = neural.train(train.densities, train.kinetic_energies, train.kinetic_derivatives, train.dx, 1,
                         options, callback=lambda step, m: losses.append(float(neural._loss(
                             m.params, m.module, None, train.dx, jnp.asarray(train.densities),
                             jnp.asarray(train.kinetic_energies), jnp.asarray(train.kinetic_derivatives),
                             1.0)[0])))
    assert losses[-1] < 0.5 * losses[0]          # Adam on energies + derivatives makes progress
    n = jnp.asarray(paper_n1.densities[40])
    direction = jnp.asarray(paper_n1.densities[41] - paper_n1.densities[40])
    grad = jax.grad(functools.partial(neural.kinetic_energy, model))(n)
    h = 1e-4
    fd = (neural.kinetic_energy(model, n + h * direction) - neural.kinetic_energy(model, n - h * direction)) / (2 * h)
    np.testing.assert_allclose(jnp.sum(grad * direction), fd, rtol=1e-6)   # O(h^2), smooth softplus net
    neural.save(model, tmp_path / "nn.npz", n_electrons=1)
    loaded, meta = neural.load(tmp_path / "nn.npz")
    assert meta["n_electrons"] == 1
    assert float(neural.kinetic_energy(loaded, n)) == float(neural.kinetic_energy(model, n))


def test_krr_self_consistent_projected_descent(paper_n1):
    # M = 100 (the paper's potentials), 10 fresh test systems, local PCA m = 20, q = 4 (chosen on
    # a separate validation set by the benchmark). Measured: MAE 0.12, max 0.30 kcal/mol on these
    # 10 (0.36 MAE on the 50 validation systems); 1.5 allows 4x the validation MAE and is still
    # below the paper's M = 50 result (1.6 kcal/mol).
    from dftjax.ofdft import benchmark

    model = krr.fit_cross_validated(paper_n1.densities, paper_n1.kinetic_energies, paper_n1.dx)
    test = data1d.random_set(10, 1, seed=31)
    result = benchmark.krr_solve(model, test.potentials, 20, 4)
    errors = np.abs(np.asarray(result.energy) - test.energies) * KCAL
    assert errors.mean() < 1.5
    np.testing.assert_allclose(np.sum(result.density, axis=1) * paper_n1.dx, 1.0, atol=1e-10)  # N kept


@pytest.mark.slow
def test_krr_benchmark_beats_brockherde_at_m100():
    # The issue's goal: self-consistent MAE below Brockherde et al.'s 0.74 kcal/mol at M = 100,
    # N = 1. Measured on the benchmark's 1000 test systems: 0.49 kcal/mol (T on exact densities
    # 0.28); here on the first 200 of them (a few minutes on 2 cores).
    from dftjax.ofdft import benchmark

    train = benchmark.training_set(1, 100)
    model = krr.fit_cross_validated(train.densities, train.kinetic_energies, train.dx)
    test = data1d.random_set(1000, 1, benchmark.TEST_SEED).take(slice(0, 200))
    result = benchmark.krr_solve(model, test.potentials, 20, 4)
    mae, _ = benchmark.errors(result.energy, test.energies)
    assert mae < 0.74


# Central finite-difference weights at offsets -m..m, typed from Fornberg, Math. Comp. 51, 699
# (1988), Table 1 (derivative order 1 and 2; accuracy = order of the truncation error).
FORNBERG_CENTRAL = {
    (1, 2): (-1 / 2, 0, 1 / 2),
    (1, 4): (1 / 12, -2 / 3, 0, 2 / 3, -1 / 12),
    (1, 6): (-1 / 60, 3 / 20, -3 / 4, 0, 3 / 4, -3 / 20, 1 / 60),
    (1, 8): (1 / 280, -4 / 105, 1 / 5, -4 / 5, 0, 4 / 5, -1 / 5, 4 / 105, -1 / 280),
    (2, 2): (1, -2, 1),
    (2, 4): (-1 / 12, 4 / 3, -5 / 2, 4 / 3, -1 / 12),
    (2, 6): (1 / 90, -3 / 20, 3 / 2, -49 / 18, 3 / 2, -3 / 20, 1 / 90),
    (2, 8): (-1 / 560, 8 / 315, -1 / 5, 8 / 5, -205 / 72, 8 / 5, -1 / 5, 8 / 315, -1 / 560),
}


@pytest.mark.parametrize("parity", [1.0, -1.0])
@pytest.mark.parametrize("order,accuracy", sorted(FORNBERG_CENTRAL))
def test_box_stencils_are_fornbergs_central_differences(order, accuracy, parity):
    # rows whose stencil reaches no further than the wall points (index -1 and n, where the
    # function is 0) hold the published weights; the mirror images only change the other rows
    n = 23
    weights = np.asarray(FORNBERG_CENTRAL[order, accuracy])
    half = len(weights) // 2
    matrix = box._even_derivative(n, order, accuracy, parity)
    for row in range(half - 1, n - half + 1):
        expected = np.zeros(n + 2)  # columns -1 .. n
        expected[row - half + 1:row + half + 2] = weights
        np.testing.assert_allclose(matrix[row], expected[1:-1], rtol=1e-15, atol=0, err_msg=f"row {row}")


def _wall_functions(order, parity, x):
    """Functions that vanish at the walls x = 0, 1 and are even (parity 1) or odd (-1) about both,
    with their exact derivative of ``order``."""
    for m in (1, 2, 3):
        if parity > 0:  # 1 - cos(2 pi m x)
            k = 2 * np.pi * m
            yield 1 - np.cos(k * x), (k * np.sin(k * x) if order == 1 else k**2 * np.cos(k * x))
        else:  # sin(pi m x)
            k = np.pi * m
            yield np.sin(k * x), (k * np.cos(k * x) if order == 1 else -(k**2) * np.sin(k * x))


@pytest.mark.parametrize("parity", [1.0, -1.0])
@pytest.mark.parametrize("order,accuracy", sorted(FORNBERG_CENTRAL))
def test_box_stencils_converge_at_their_order_up_to_the_walls(order, accuracy, parity):
    # Walls at x = 0 and 1, one spacing outside the first and last of the n points. The largest error
    # over every point (the rows next to the walls included) falls by 2^accuracy when the spacing
    # halves: measured rates are within 0.07 of the order (lowest 7.93: order 1, accuracy 8, even).
    # A wrong weight, mirror sign or mirror index breaks the rate (checked by perturbing box.py and
    # basis.oned: -1/280 -> -1/281, the ghost sign, the mirror index off by one).
    errors = []
    for intervals in (40, 80):
        dx = 1.0 / intervals
        x = dx * np.arange(1, intervals)
        matrix = box._even_derivative(intervals - 1, order, accuracy, parity) / dx**order
        errors.append(max(np.max(np.abs(matrix @ f - exact)) for f, exact in _wall_functions(order, parity, x)))
    rate = np.log2(errors[0] / errors[1])
    assert abs(rate - accuracy) < 0.25, (errors, rate)


def test_box_derivatives_of_a_wall_even_density():
    # n = 2 sin^2(pi x) = 1 - cos(2 pi x): n' = 2 pi sin(2 pi x), n'' = 4 pi^2 cos(2 pi x)
    x = np.asarray(box.box_grid())
    dx = x[1] - x[0]
    n = jnp.asarray(2 * np.sin(np.pi * x) ** 2)
    inner = slice(1, -1)
    # 8th-order stencils on dx = 2e-3 with exact mirror images: errors ~ dx^8 f^(10) ~ 1e-9
    np.testing.assert_allclose(box.density_gradient(n, dx)[inner], (2 * np.pi * np.sin(2 * np.pi * x))[inner], atol=1e-8)
    np.testing.assert_allclose(box.density_laplacian(n, dx)[inner], (4 * np.pi**2 * np.cos(2 * np.pi * x))[inner],
                               atol=1e-6)


def test_minimize_lbfgs_on_a_quadratic():
    a = jnp.asarray(np.diag([1.0, 10.0, 100.0]))
    b = jnp.asarray([1.0, -2.0, 3.0])
    x, grad_norm, iterations = jax.jit(lambda x0: solver.minimize_lbfgs(
        lambda x: 0.5 * x @ a @ x - b @ x, x0, 100, 1e-10))(jnp.zeros(3))
    np.testing.assert_allclose(x, [1.0, -0.2, 0.03], atol=1e-9)   # A x = b; stops at |g| < 1e-10
    assert float(grad_norm) <= 1e-10 and int(iterations) < 100


def test_bench_chain_row_and_records():
    import json

    from dftjax.bench import ofdft as bench

    rows = bench._chain_rows((2,), 16, 1, progress=False)
    (row,) = rows
    assert row.kind == "chain" and row.n_electrons == 2 and row.grid_points == 33
    # TF + vW is not exact for two fermions: a finite, nonzero error against the exact eigh energy
    assert np.isfinite(row.energy_mae_kcal) and row.energy_mae_kcal > 1.0
    assert row.density_error < 2.0          # integral |n_OF - n_exact| of two electrons
    records = bench.as_records(rows)
    json.dumps(records)
    assert records[0]["time_ratio_of_over_reference"] == row.of_s / row.reference_s
    assert "chain" in bench.format_table(rows)


@pytest.mark.parametrize("kernel_size,reach", [(1, 4), (3, 6)])
def test_neural_functional_reach_and_derivative(paper_n1, kernel_size, reach):
    # t(x_i) sees sqrt(n) and its 8th-order derivative (4 points either side); each convolution
    # layer of width k adds (k - 1) / 2 points: local net 4, two k = 3 layers 4 + 2 = 6 points
    module = neural.KineticNet(channels=(4, 4), kernel_size=kernel_size)
    n = jnp.asarray(paper_n1.densities[3])
    dx = paper_n1.dx
    params = module.init(jax.random.PRNGKey(1), n, dx)
    i = 250
    row = jax.jit(jax.grad(lambda d: module.apply(params, d, dx)[i]))(n)     # (G,) dt_i / dn_j
    touched = np.flatnonzero(np.abs(np.asarray(row)) > 0)
    assert touched.min() == i - reach and touched.max() == i + reach
    model = neural.NeuralModel(params, module, "vw", dx)
    direction = jnp.asarray(paper_n1.densities[4] - paper_n1.densities[3])
    energy = jax.jit(functools.partial(neural.kinetic_energy, model))
    grad = jax.jit(jax.grad(energy))(n)
    h = 1e-4
    fd = (energy(n + h * direction) - energy(n - h * direction)) / (2 * h)
    np.testing.assert_allclose(jnp.sum(grad * direction), fd, rtol=1e-6)   # O(h^2) central difference


def test_neural_training_resumes_exactly_from_a_checkpoint(tmp_path, paper_n1):
    # the convolutional functional, trained on energies and derivatives; an interruption right
    # after the checkpoint of step 5 (of 12), then a second call with the same file, must end with
    # the parameters of an uninterrupted run, bit for bit (same jit-compiled step on the same data)
    # every 5th point of 6 densities (G = 101): the training machinery, not the physics, is tested
    train = paper_n1.take(slice(0, 6))
    data = (train.densities[:, ::5], train.kinetic_energies, train.kinetic_derivatives[:, ::5], 5 * train.dx, 1)
    options = neural.NeuralOptions(channels=(4, 4), kernel_size=3, steps=12, learning_rate=1e-2, base="vw")
    reference = neural.train(*data, options, checkpoint_every=4)

    class Interrupted(Exception):
        pass

    def interrupt(step, model):
        if step == 4:
            raise Interrupted

    path = tmp_path / "state.pkl"
    with pytest.raises(Interrupted):
        neural.train(*data, options, callback=interrupt, checkpoint_path=path, checkpoint_every=4)
    assert pickle.loads(path.read_bytes()).step == 5
    resumed = neural.train(*data, options, checkpoint_path=path, checkpoint_every=4)
    for a, b in zip(jax.tree_util.tree_leaves(reference.params), jax.tree_util.tree_leaves(resumed.params)):
        np.testing.assert_array_equal(a, b)
    # a checkpoint of another run (other options) is refused, not silently continued
    with pytest.raises(ValueError, match="another training run"):
        neural.train(*data, dataclasses.replace(options, seed=1), checkpoint_path=path)


def test_global_functional_derivative_lives_in_the_cosine_modes(paper_n1):
    # the global functional (an MLP of K cosine coefficients of the density, on a vW base): its
    # derivative matches central finite differences and is vW's plus a sum of cos(k pi x), k <= K
    train = paper_n1.take(slice(0, 6))
    dx = train.dx
    options = neural.NeuralOptions(n_modes=6, channels=(5,), steps=2, base="vw")
    model = neural.train(train.densities, train.kinetic_energies, train.kinetic_derivatives, dx, 1, options)
    assert isinstance(model.module, neural.ProjectedKineticNet)
    n = jnp.asarray(paper_n1.densities[40])
    direction = jnp.asarray(paper_n1.densities[41] - paper_n1.densities[40])
    energy = jax.jit(functools.partial(neural.kinetic_energy, model))
    grad = jax.jit(jax.grad(energy))(n)
    h = 1e-4
    fd = (energy(n + h * direction) - energy(n - h * direction)) / (2 * h)
    np.testing.assert_allclose(jnp.sum(grad * direction), fd, rtol=1e-6)
    learned = np.asarray(grad - jax.grad(lambda d: box.von_weizsaecker_energy(d, dx))(n)) / dx
    modes = neural.cosine_modes(len(n), 6)
    weights = np.full(len(n), dx)
    weights[[0, -1]] *= 0.5                          # the trapezoid rule of the coefficients
    coefficients, *_ = np.linalg.lstsq(modes.T, learned / weights, rcond=None)
    np.testing.assert_allclose(modes.T @ coefficients, learned / weights, atol=1e-10 * np.abs(learned / weights).max())
    assert neural.kinetic_energy_density(model, n) is None


def test_global_functional_saves_loads_and_resumes(tmp_path, paper_n1):
    train = paper_n1.take(slice(0, 6))
    data = (train.densities, train.kinetic_energies, train.kinetic_derivatives, train.dx, 1)
    options = neural.NeuralOptions(n_modes=5, channels=(4,), steps=6, learning_rate=1e-2, base="vw")
    reference = neural.train(*data, options, checkpoint_every=2)
    path = tmp_path / "state.pkl"

    def interrupt(step, model):
        if step == 2:
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        neural.train(*data, options, callback=interrupt, checkpoint_path=path, checkpoint_every=2)
    resumed = neural.train(*data, options, checkpoint_path=path, checkpoint_every=2)
    for a, b in zip(jax.tree_util.tree_leaves(reference.params), jax.tree_util.tree_leaves(resumed.params)):
        np.testing.assert_array_equal(a, b)
    neural.save(resumed, tmp_path / "global.npz", n_electrons=1)
    loaded, meta = neural.load(tmp_path / "global.npz")
    assert meta["n_electrons"] == 1 and loaded.module == resumed.module
    n = jnp.asarray(paper_n1.densities[50])
    assert float(neural.kinetic_energy(loaded, n)) == float(neural.kinetic_energy(resumed, n))


@pytest.mark.parametrize("n_electrons", [
    pytest.param(1, marks=pytest.mark.slow), 2, pytest.param(3, marks=pytest.mark.slow),
    pytest.param(4, marks=pytest.mark.slow)])
def test_shipped_global_models_solve_a_fresh_potential(n_electrons):
    # the first of the benchmark's fresh test potentials (seed 2017), solved self-consistently
    # with the shipped nn-global model (M = 100) through the CLI
    wells = data1d.random_wells(1, seed=2017)[0]
    text = ";".join(",".join(f"{x:.12g}" for x in well) for well in wells)
    out = _ofdft_cli(["ofdft", "solve", "--potential", text, "--electrons", str(n_electrons),
                      "--model", "nn-global", "--json"])
    assert np.isfinite(out["energy"]) and len(out["density"]) == 500
    assert "global" in out["method"]
    # measured self-consistent error max over the 1000 test potentials: 6e-4 (N = 1), 10 (N = 2),
    # 16 (N = 3), 33 (N = 4) kcal/mol; MAE 5e-5, 0.98, 1.15, 1.35
    assert abs(out["energy_error_kcal_per_mol"]) < 10.0
