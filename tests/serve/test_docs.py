"""docs/SERVING.md: the KServe manifest is valid YAML for an InferenceService on the v2 protocol."""

from __future__ import annotations

import re

import pytest

from tests.conftest import ROOT


def test_kserve_manifest_is_a_v2_triton_inference_service():
    yaml = pytest.importorskip("yaml")
    text = (ROOT / "docs" / "SERVING.md").read_text(encoding="utf-8")
    [block] = re.findall(r"```yaml\n(.*?)```", text, flags=re.S)
    manifest = yaml.safe_load(block)
    assert manifest["apiVersion"] == "serving.kserve.io/v1beta1" and manifest["kind"] == "InferenceService"
    model = manifest["spec"]["predictor"]["model"]
    assert model["protocolVersion"] == "v2" and model["modelFormat"]["name"] == "triton"
    assert "--model-repository=/models" in text and "fashion-export" in text
