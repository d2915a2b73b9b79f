"""The GPU recipe under KERAS_BACKEND=jax on the CPU (tiny backbone), in child processes.

Keras fixes its backend at import, and this test process runs TensorFlow; so each JAX run is a
child process: ``tests/train/jax_scenarios.py`` (schedule after compile, 1 vs 2 devices, resume)
and ``scripts/gpu_check.sh run`` end to end. Both also show that a JAX run never forks
(no ``os.fork()`` warning on stderr).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("jax", reason="the JAX backend (pip install jax) runs the GPU recipe without TensorFlow")
pytest.importorskip("keras")

from fashion import HEADS  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
FORK_WARNING = "os.fork()"


def _jax_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("KERAS_BACKEND", "XLA_FLAGS")}
    env.update(KERAS_BACKEND="jax", PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="2", **extra)
    return env


@pytest.fixture(scope="module")
def small_split(tmp_path_factory, sample_dir) -> Path:
    """160 sample images: 128 train (4 batches of 32), 32 val."""
    ids = pd.read_csv(sample_dir / "styles.csv", usecols=["id"])["id"].sort_values().to_numpy()
    rng = np.random.default_rng(0)
    picked = np.sort(rng.choice(ids, size=160, replace=False))
    split = np.array(["train"] * 128 + ["val"] * 32)[rng.permutation(160)]
    path = tmp_path_factory.mktemp("jax_split") / "split.csv"
    pd.DataFrame({"id": picked, "split": split}).to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def scenarios(tmp_path_factory, sample_dir, small_split) -> tuple[dict, str]:
    work = tmp_path_factory.mktemp("jax_scenarios")
    result = subprocess.run(
        [sys.executable, "-m", "tests.train.jax_scenarios", str(sample_dir), str(small_split), str(work)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=900,
        env=_jax_env(XLA_FLAGS="--xla_force_host_platform_device_count=2", FASHION_JAX_CACHE=str(work / "jax_cache")),
    )  # runs share compilations
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads(result.stdout.strip().splitlines()[-1]), result.stderr


def test_the_schedule_starts_after_a_slow_compile(scenarios):
    """The first step sleeps 3 s (a slow compile) in a 1 s window: training still starts at the warm-up rate."""
    out, _ = scenarios
    assert out["backend"] == "jax"
    rates, warmup_start = out["warmup"]["first_rates"], 0.1 * 3e-4
    assert rates[0] == pytest.approx(warmup_start), "the compiling step runs at the warm-up start value"
    assert rates[1] == pytest.approx(warmup_start, rel=0.5), "so does the first step after it, not the floor"
    assert out["warmup"]["steps"] > 2, "the window was not spent before training began"
    assert out["warmup"]["compile_seconds"] >= 3.0, "the sleep is measured as compile time"


def test_two_devices_follow_the_one_device_loss_trajectory(scenarios):
    out, _ = scenarios
    assert out["devices"]["two_devices"] == 2
    np.testing.assert_allclose(out["devices"]["two"], out["devices"]["one"], rtol=1e-3)


def test_an_interrupted_run_resumes_with_its_optimizer_state(scenarios):
    out, _ = scenarios
    assert out["resume_interrupted"] is True
    resume = out["resume"]
    assert resume["epochs_done_before"] == 1
    assert resume["resumed_from"] == {"epoch": 1, "optimizer_step": resume["steps_per_epoch"]}
    assert len(resume["losses"]) == 2, "the log continues: epoch 1 from before, epoch 2 after the resume"
    np.testing.assert_allclose(resume["losses"], resume["uninterrupted"], rtol=2e-3)
    assert set(resume["val_accuracy"]) == set(HEADS)


def test_a_jax_run_does_not_fork(scenarios):
    _, stderr = scenarios
    assert FORK_WARNING not in stderr


def test_gpu_check_script_runs_end_to_end_on_the_cpu(tmp_path, sample_dir):
    check_dir = tmp_path / "check"
    prepared = subprocess.run(
        [
            sys.executable,
            "-m",
            "fashion.train.gpu_check",
            "prepare",
            "--source",
            str(sample_dir),
            "--dest",
            str(check_dir / "data"),
            "--images",
            "96",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
        env=_jax_env(),
    )
    assert prepared.returncode == 0, prepared.stderr[-3000:]
    subset = json.loads((check_dir / "data" / "subset.json").read_text())
    assert subset["images"] == 96 and subset["train"] + subset["val"] == 96 and subset["val"] > 0
    out = tmp_path / "gpu-check.json"
    env = _jax_env(
        CHECK_DIR=str(check_dir),
        WORK_DIR=str(tmp_path / "run"),
        PYTHON=sys.executable,
        SIZES="32x24 48x36",
        EPOCHS="2",
        BATCH="16",
        BACKBONE="tiny",
        LIMIT="600",
    )
    result = subprocess.run(
        ["bash", str(ROOT / "scripts" / "gpu_check.sh"), "run", str(out)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=900,
        env=env,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert FORK_WARNING not in result.stderr
    report = json.loads(out.read_text())
    assert report["facts"]["backend"] == "jax" and report["backbone"] == "tiny"
    assert list(report["sizes"]) == ["32x24", "48x36"]
    for size in report["sizes"].values():
        assert size["compile_seconds"] >= 0 and size["steady_img_per_s"] > 0
        assert size["first_epoch_seconds"] > 0 and size["steady_epoch_seconds"] > 0
        assert len(size["per_epoch"]) == 2
        assert set(size["per_epoch"][-1]["val_accuracy"]) == set(HEADS)
        assert "peak_memory_bytes" in size  # None on a CPU
