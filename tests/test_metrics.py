"""The local evaluate metric module against scikit-learn / scipy, computed independently."""
from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pytest
from clitools import run_python
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

from bench.data.metrics import MODULE_DIR, compute_metrics, load_metric_module

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("seed", range(5))
def test_classification_metrics_match_sklearn(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(20, 3000))
    ref = rng.integers(0, 2, n)
    pred = np.where(rng.random(n) < 0.7, ref, rng.integers(0, 2, n))
    out = compute_metrics(["accuracy", "f1", "matthews_correlation"], pred, ref)
    assert out["accuracy"] == pytest.approx(accuracy_score(ref, pred), abs=1e-9)
    assert out["f1"] == pytest.approx(f1_score(ref, pred), abs=1e-9)
    assert out["matthews_correlation"] == pytest.approx(matthews_corrcoef(ref, pred), abs=1e-9)
    ref3, pred3 = rng.integers(0, 3, n), rng.integers(0, 3, n)  # MNLI-sized label set
    out3 = compute_metrics(["accuracy", "matthews_correlation"], pred3, ref3)
    assert out3["accuracy"] == pytest.approx(accuracy_score(ref3, pred3), abs=1e-9)
    assert out3["matthews_correlation"] == pytest.approx(matthews_corrcoef(ref3, pred3), abs=1e-9)


@pytest.mark.parametrize("seed", range(5))
def test_correlations_match_scipy(seed):
    rng = np.random.default_rng(100 + seed)
    n = int(rng.integers(10, 2000))
    ref = np.round(rng.uniform(0, 5, n), 1)  # STS-B-like scores, with ties
    pred = ref + rng.normal(0, 1.5, n)
    out = compute_metrics(["pearson", "spearmanr"], pred, ref)
    assert out["pearson"] == pytest.approx(pearsonr(pred, ref)[0], abs=1e-9)
    assert out["spearmanr"] == pytest.approx(spearmanr(pred, ref)[0], abs=1e-9)
    tied = np.round(pred)  # heavy ties in predictions too
    assert compute_metrics(["spearmanr"], tied, ref)["spearmanr"] == pytest.approx(spearmanr(tied, ref)[0], abs=1e-9)


def test_edge_cases():
    ref = [0, 1, 0, 1, 1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn/scipy warn on exactly these cases
        constant = compute_metrics(["matthews_correlation", "f1", "accuracy"], [0] * 5, ref)
        assert constant == {"matthews_correlation": 0.0, "f1": 0.0, "accuracy": 0.4}
        assert matthews_corrcoef(ref, [0] * 5) == 0.0 and f1_score(ref, [0] * 5) == 0.0
        assert compute_metrics(["f1"], [0, 0], [0, 0])["f1"] == f1_score([0, 0], [0, 0]) == 0.0
        assert math.isnan(pearsonr([2.0] * 5, [1.0, 2, 3, 4, 5])[0])
    # Documented choice: constant predictions give correlation 0.0 (scipy: nan), non-finite give nan.
    assert compute_metrics(["pearson", "spearmanr"], [2.0] * 5, [1, 2, 3, 4, 5]) == {"pearson": 0.0, "spearmanr": 0.0}
    diverged = compute_metrics(["pearson", "spearmanr"], [1.0, float("nan"), 3, 4, 5], [1, 2, 3, 4, 5])
    assert math.isnan(diverged["pearson"]) and math.isnan(diverged["spearmanr"])
    perfect = compute_metrics(["accuracy", "f1", "matthews_correlation", "pearson", "spearmanr"], ref, ref)
    assert perfect == {"accuracy": 1.0, "f1": 1.0, "matthews_correlation": 1.0, "pearson": 1.0, "spearmanr": 1.0}
    assert all(type(v) is float for v in perfect.values())
    assert compute_metrics(["pearson"], [5.0, 4, 3], [1, 2, 3])["pearson"] == pytest.approx(-1.0)


@pytest.mark.parametrize(("names", "pred", "ref"), [
    (["acc"], [1], [1]),
    ([], [1], [1]),
    (["accuracy"], [1, 0], [1]),
    (["accuracy"], [], []),
    (["accuracy"], [[0.1, 0.9]], [1]),  # logits instead of class indices
])
def test_bad_input_is_rejected(names, pred, ref):
    with pytest.raises(ValueError):
        compute_metrics(names, pred, ref)


def test_module_is_the_local_evaluate_module():
    import evaluate

    module = load_metric_module()
    assert isinstance(module, evaluate.Metric) and load_metric_module() is module  # cached
    assert (MODULE_DIR / "glue_metric.py").is_file()
    assert type(module).__module__.endswith(".glue_metric") and "GLUE" in module.description


def test_loads_offline_with_an_empty_cache(tmp_path):
    """A fresh HF_HOME and offline flags: the module must come from the repo, never the hub."""
    code = ("from bench.data.metrics import compute_metrics; "
            "print(compute_metrics(['accuracy', 'f1'], [1, 0, 1, 1], [1, 0, 0, 1]))")
    proc = run_python(["-c", code], cwd=tmp_path, timeout=120,
                      extra_env={"HF_HOME": tmp_path / "hf", "HF_EVALUATE_OFFLINE": "1", "PYTHONPATH": REPO})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "{'accuracy': 0.75, 'f1': 0.8}" in proc.stdout
