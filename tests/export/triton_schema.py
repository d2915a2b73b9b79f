"""Triton's own model-config schema for the tests that parse generated ``config.pbtxt`` files."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest


def triton_model_config_module():
    """tritonclient's generated model_config_pb2 (the real schema), loaded without tritonclient.grpc's
    package import, which would also need the gRPC client stack and an older protobuf."""
    spec = importlib.util.find_spec("tritonclient")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("tritonclient is not installed (dev extra): cannot load Triton's model_config schema")
    path = Path(list(spec.submodule_search_locations)[0]) / "grpc" / "model_config_pb2.py"
    module_spec = importlib.util.spec_from_file_location("triton_model_config_pb2", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


def parse_config(path: Path):
    """Parse ``path`` as a Triton ModelConfig; return (config, schema module)."""
    from google.protobuf import text_format

    schema = triton_model_config_module()
    return text_format.Parse(path.read_text(), schema.ModelConfig()), schema
