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


def test_dev_extra_declares_the_grpc_client_loadgen_imports():
    """fashion/serve/loadgen.py imports tritonclient.grpc: [dev] must declare it, not rely on TensorFlow's grpcio."""
    import tomllib

    dev = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["dev"]
    [client] = [d for d in dev if d.startswith("tritonclient[")]
    assert {"http", "grpc"} <= set(client.split("[")[1].split("]")[0].split(","))
    assert "tritonclient.grpc" in (ROOT / "fashion" / "serve" / "loadgen.py").read_text()


def test_serving_doc_documents_exit_5():
    from fashion.runtime.errors import EXIT_CODES, EXIT_SERVER_FAILED

    text = (ROOT / "docs" / "SERVING.md").read_text(encoding="utf-8")
    assert EXIT_SERVER_FAILED in EXIT_CODES and "| 5 |" in text
    assert "`5` a server" in (ROOT / "README.md").read_text(encoding="utf-8")
