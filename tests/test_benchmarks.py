"""The benchmark scripts still run, at tiny sizes (their figures are not checked:
timings belong in benchmarks/RESULTS.md, not in tests)."""

import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"

pytestmark = pytest.mark.slow

FIXTURES = BENCHMARKS.parent / "tests" / "fixtures"

MLP_RUN = str(FIXTURES / "mlp-0.1.0")

# Where a benchmark would train a run of its own, it is given a fixture run folder:
# training is tested elsewhere, and these cases only check that the scripts work.
CASES = {
    "bench_idx.py": (["--repeats", "1", "--tutorial-count", "500"], "ratio: digitlab is"),
    "bench_train.py": (["--epochs", "1"], "x the arithmetic floor"),
    "bench_scaling.py": (["--quick", "--epochs", "2", "--out", "{tmp}"], "ratio: overhead"),
    "bench_cnn.py": (["--quick", "--models", "cnn-fast,keras-io"], "final accuracy: cnn-fast"),
    "bench_predict.py": (
        ["--calls", "30", "--images", "2048", "--run", MLP_RUN],
        "ratio: batch 1024, cnn-fast",
    ),
    "bench_compare.py": (["--quick", "--models", "mlp,logreg", "--out", "{tmp}"], "logreg"),
    "bench_photos.py": (["--count", "20", "--run", MLP_RUN], "gap:"),
    "bench_cli.py": (
        [
            "--repeats",
            "1",
            "--mlp",
            MLP_RUN,
            "--cnn",
            str(FIXTURES / "cnn-fast-0.1.0"),
        ],
        "result:",
    ),
    "bench_asgi.py": (
        ["--run", MLP_RUN, "--requests", "50", "--repeats", "1"],
        "ratio FastAPI / lane",
    ),
    "bench_ood.py": (
        [
            MLP_RUN,
            "--digits",
            "10",
            "--per-family",
            "4",
        ],
        "goal 1: non-digit photos",
    ),
    "bench_report.py": ([MLP_RUN, "--images", "300", "--repeats", "1"], "report figures:"),
    "bench_engines.py": (
        [
            "--train-images",
            "1500",
            "--test-images",
            "500",
            "--keras-epochs",
            "1",
            "--torch-epochs",
            "1",
            "--repeats",
            "1",
        ],
        "ratio: training time",
    ),
    "bench_http.py": (
        ["--seconds", "0.5", "--clients", "1,4", "--run", MLP_RUN],
        "JSON pixels    4 clients",
    ),
}


#: Scripts that compare with PyTorch (the torch extra; CI installs it).
NEEDS_TORCH = {"bench_engines.py"}


@pytest.mark.parametrize("script", sorted(CASES))
def test_benchmark_runs(script, tmp_path):
    if script in NEEDS_TORCH:
        pytest.importorskip("torch", reason="digitlab[torch] is not installed")
    arguments, expected = CASES[script]
    out = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), *(a.format(tmp=tmp_path) for a in arguments)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=600,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert expected in out.stdout, out.stdout[-3000:]


def test_bf16_benchmark_runs_or_says_it_needs_pytorch(tmp_path):
    """PyTorch is an optional extra: without it the script says so in one line
    (exit 2); with it, it compares on the stored cnn-fast run, and a
    scikit-learn run is a usage error."""
    script = str(BENCHMARKS / "bench_bf16.py")

    def bench(*arguments):
        return subprocess.run(
            [sys.executable, script, *arguments],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            timeout=600,
            check=False,
        )

    out = bench(str(FIXTURES / "cnn-fast-0.1.0"), "--images", "300", "--repeats", "1")
    try:
        import torch  # noqa: F401
    except ImportError:
        assert out.returncode == 2
        assert out.stderr.strip() == (
            "bench_bf16.py: needs PyTorch, which is not installed: pip install 'digitlab[torch]'"
        )
        return
    assert out.returncode == 0, out.stderr[-3000:]
    assert "ratio: torch bfloat16 / native" in out.stdout
    sklearn = bench(str(FIXTURES / "gnb-0.1.0"), "--images", "100", "--repeats", "1")
    assert sklearn.returncode == 2
    assert "--runtime torch runs Keras networks" in sklearn.stderr.splitlines()[-1]
