"""Test configuration: float64 everywhere and strict rank promotion, as the SCF needs.

A pytest worker runs hundreds of tests in one process, and every compiled program stays mapped
until its function is freed. dftjax drops its own size-class programs when the process nears the
Linux memory-map limit (``dftjax.exported.MAP_BUDGET``); after each test this hook also clears
JAX's caches of everything else (per-molecule closures, test-local jits) when the worker is over
that budget, so a long slow-tier run never meets ``vm.max_map_count``.
"""
import jax
import pytest

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item):
    from dftjax import exported

    if exported._over_budget()[0]:
        exported.drop_programs()
        jax.clear_caches()
