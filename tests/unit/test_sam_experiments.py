"""The sam.fig* experiment functions: registration, tidy output, params validation, seeds, small runs."""
from __future__ import annotations

import numpy as np
import pytest

from reprise.experiments import get_experiment, run_experiment
from reprise.io import ReproError
from reprise.sam.experiments import COLUMNS


def test_all_figures_are_registered():
    for k in range(1, 6):
        assert callable(get_experiment(f"sam.fig{k}"))


@pytest.mark.parametrize("name,params,key", [
    ("sam.fig1", {"nope": 1}, "nope"),
    ("sam.fig1", {"n": 2.5}, r"params\['n'\]=2.5 must be an integer"),
    ("sam.fig1", {"sigma": -1}, r"params\['sigma'\]=-1 must be a finite number ≥ 0"),
    ("sam.fig1", {"design": "weird"}, "'design'"),
    ("sam.fig2", {"normalise_kernel": "yes"}, "normalise_kernel"),
    ("sam.fig3", {"problem": "tree"}, "'problem'"),
    ("sam.fig3", {"batch_size": 500}, "batch_size"),
    ("sam.fig4", {"rhos": ["x"]}, r"rhos'\]\[0\]"),
    ("sam.fig5", {"dataset": "cifar10"}, "'dataset'"),
])
def test_bad_params_name_the_key(name, params, key):
    with pytest.raises(ReproError, match=key):
        run_experiment(name, params, 0)


def test_fig3_minibatch_rows_and_seeds():
    params = {"replicates": 5, "iterations": 40, "grid_points": 8, "n": 60, "p": 20, "batch_size": 10}
    a = run_experiment("sam.fig3", params, 1)
    assert list(a.columns) == COLUMNS
    mc = a[a.source == "monte_carlo"]
    assert set(mc.batch_size) == {10} and set(a[a.source == "closed_form"].batch_size) == {60}
    assert set(mc.method) == {"gd", "sam", "sam_normalised"}
    assert a.iteration.max() == 40 and a.iteration.nunique() <= 8
    assert np.isfinite(a.value).all()
    b = run_experiment("sam.fig3", params, 1)
    assert a.equals(b)  # a rerun is bitwise identical
    c = run_experiment("sam.fig3", params, 2)
    assert not np.array_equal(mc.value.to_numpy(), c[c.source == "monte_carlo"].value.to_numpy())
    k = run_experiment("sam.fig3", {"problem": "kernel", "n": 40, "n_test": 20, "replicates": 4, "iterations": 20,
                                    "batch_size": 8}, 0)
    assert set(k.risk) == {"in_sample", "out_of_sample"} and np.isfinite(k.value).all()


def test_fig4_teacher_student_small():
    frame = run_experiment("sam.fig4", {"n": 100, "n_test": 200, "steps": 60, "width": 10, "rhos": [0, 0.1],
                                        "power_iters": 30, "grid_points": 6}, 0)
    assert list(frame.columns) == COLUMNS
    sharp = frame[frame.component == "sharpness"]
    assert len(sharp) == 2 and (sharp.value > 0).all() and set(sharp.iteration) == {60}
    test = frame[frame.component == "test_mse"].pivot_table(index="iteration", columns="method", values="value")
    assert (test.iloc[0, 0] == test.iloc[0]).all()  # the same init for both methods of one seed
    assert (test.iloc[-1] < test.iloc[0]).all()  # both learn


def test_fig5_digits_small_is_labelled_a_substitute():
    frame = run_experiment("sam.fig5", {"epochs": 2, "hidden": 16}, 0)
    acc = frame[frame.component == "test_accuracy"]
    assert set(acc.method) == {"sgd", "sam_normalised"} and set(acc.iteration) == {0, 1, 2}
    assert set(frame.unit) == {"epoch"}
    assert (acc[acc.iteration == 2].value > 0.5).all()
    assert frame.note.str.contains("substitute").all()


def test_experiments_leave_the_global_rngs_alone():
    import torch

    np_state = np.random.get_state()[1].copy()
    torch_state = torch.random.get_rng_state().clone()
    run_experiment("sam.fig3", {"replicates": 3, "iterations": 5, "n": 30, "p": 10, "batch_size": 5}, 0)
    run_experiment("sam.fig4", {"n": 30, "n_test": 10, "steps": 3, "width": 4, "power_iters": 3}, 0)
    run_experiment("sam.fig5", {"epochs": 1, "hidden": 8}, 0)
    assert np.array_equal(np.random.get_state()[1], np_state)
    assert torch.equal(torch.random.get_rng_state(), torch_state)
