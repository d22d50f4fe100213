"""A plugin from another package: built as a wheel, installed with uv, found by entry point."""

from __future__ import annotations

import base64
import hashlib
import importlib
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from models_py.fitting import fit_and_evaluate
from models_py.plugins import available, get_plugin
from models_py.spec import ModelSpec

PLUGIN_SOURCE = '''
"""A third-party featurestack plugin: a shrunken class prior per sign of the first feature."""
from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel, Field

from models_py.plugins.base import ModelPlugin


class SignPriorParams(BaseModel):
    shrink: float = Field(0.5, ge=0, le=1)


class _SignPrior:
    def __init__(self, shrink: float) -> None:
        self.shrink = shrink

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> "_SignPrior":
        base = y.mean()
        pos = X[:, 0] > 0
        self.rates_ = [
            (1 - self.shrink) * (y[m].mean() if m.any() else base) + self.shrink * base
            for m in (~pos, pos)
        ]
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        p = np.where(X[:, 0] > 0, self.rates_[1], self.rates_[0])
        return np.column_stack([1 - p, p])


class SignPriorModel(ModelPlugin):
    name: ClassVar[str] = "sign_prior"
    tasks: ClassVar[frozenset[str]] = frozenset({"binary"})
    Params: ClassVar[type[BaseModel]] = SignPriorParams

    def _build(self, n_classes: int | None) -> Any:
        return _SignPrior(self.shrink)
'''


def _record_line(path: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{path},sha256={digest},{len(data)}"


def build_wheel(folder: Path) -> Path:
    """A minimal, valid pure-Python wheel declaring a `featurestack.models` entry point."""
    info = "fs_sign_prior-0.1.0.dist-info"
    files = {
        "fs_sign_prior/__init__.py": PLUGIN_SOURCE.encode(),
        f"{info}/METADATA": b"Metadata-Version: 2.1\nName: fs-sign-prior\nVersion: 0.1.0\n",
        f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\n"
        b"Tag: py3-none-any\n",
        f"{info}/entry_points.txt": b"[featurestack.models]\n"
        b"sign_prior = fs_sign_prior:SignPriorModel\n",
    }
    record = [_record_line(p, d) for p, d in files.items()] + [f"{info}/RECORD,,"]
    wheel = folder / "fs_sign_prior-0.1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for path, data in files.items():
            zf.writestr(path, data)
        zf.writestr(f"{info}/RECORD", "\n".join(record) + "\n")
    return wheel


def uv_command() -> list[str]:
    """uv as the Makefile finds it: on PATH, or as `python3 -m uv`."""
    for command in (["uv"], ["python3", "-m", "uv"]):
        if (
            shutil.which(command[0])
            and subprocess.run([*command, "--version"], capture_output=True, check=False).returncode
            == 0
        ):
            return command
    pytest.fail("uv is not installed (`make setup` installs it with pip)", pytrace=False)


def test_a_plugin_installed_from_another_package_is_found_and_trains(tmp_path: Path) -> None:
    target = tmp_path / "site"
    wheel = build_wheel(tmp_path)
    subprocess.run(
        [
            *uv_command(),
            "pip",
            "install",
            "--no-index",
            "--no-deps",
            "--target",
            str(target),
            "--python",
            sys.executable,
            str(wheel),
        ],
        check=True,
        capture_output=True,
    )
    assert "sign_prior" not in available()
    sys.path.insert(0, str(target))
    importlib.invalidate_caches()
    try:
        assert "sign_prior" in available()
        plugin = get_plugin("sign_prior")
        assert plugin.__module__ == "fs_sign_prior"

        rng = np.random.default_rng(0)

        def segment(n: int) -> pd.DataFrame:
            x = rng.normal(size=n)
            up = (rng.uniform(size=n) < np.where(x > 0, 0.8, 0.2)).astype(int)
            return pd.DataFrame({"f": x, "g": rng.normal(size=n), "next_day_up": up})

        segments = {"train": segment(2000), "validation": segment(500), "holdout": segment(500)}
        spec = ModelSpec(
            name="tiny",
            feature_service="any",
            label={"model": "lbl", "target": "next_day_up"},
            task="binary",
            plugin="sign_prior",
            params={"shrink": 0.1},
        )
        model, metrics = fit_and_evaluate(spec, plugin, segments, ["f", "g"])
        assert model.get_params()["shrink"] == 0.1
        assert metrics["holdout_roc_auc"] > 0.75  # it learned the sign rule
    finally:
        sys.path.remove(str(target))
        sys.modules.pop("fs_sign_prior", None)
        importlib.invalidate_caches()
