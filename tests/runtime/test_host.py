"""Host facts: ISA flags from real-format /proc/cpuinfo texts, usable cores under cgroup quotas, the choice cache."""

from __future__ import annotations

import json
import os

import pytest

from fashion.runtime.host import (
    cgroup_cpu_limit,
    cpu_facts,
    parse_cpuinfo,
    read_choices,
    split_threads,
    usable_cores,
    write_choice,
)

XEON_VNNI = """processor\t: 0
vendor_id\t: GenuineIntel
cpu family\t: 6
model\t\t: 143
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu vme sse sse2 ssse3 sse4_1 sse4_2 avx avx2 fma avx512f avx512bw avx512_vnni avx_vnni amx_tile amx_int8

processor\t: 1
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu vme sse sse2
"""

EPYC_AVX2 = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 23
model name\t: AMD EPYC 7B12
flags\t\t: fpu vme de pse tsc msr sse sse2 ssse3 sse4_1 sse4_2 avx avx2 fma bmi2
"""

GRAVITON2 = """processor\t: 0
BogoMIPS\t: 243.75
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp ssbs
CPU implementer\t: 0x41
CPU architecture: 8
CPU part\t: 0xd0c
"""

CORTEX_A72 = """processor\t: 0
Features\t: fp asimd evtstrm crc32 cpuid
CPU implementer\t: 0x41
CPU part\t: 0xd08
"""


def test_x86_with_vnni_and_amx():
    facts = parse_cpuinfo(XEON_VNNI)
    assert facts.model == "Intel(R) Xeon(R) Platinum 8480+" and facts.arch == "x86_64" and not facts.is_arm
    assert facts.int8_flags == ["avx512_vnni", "avx_vnni", "amx_int8"]
    assert {"avx2", "avx512f", "amx_tile"} <= set(facts.reported_flags)
    assert "sse2" not in facts.reported_flags  # only the flags that decide speed are recorded


def test_x86_avx2_only_has_no_int8_flags():
    facts = parse_cpuinfo(EPYC_AVX2)
    assert facts.model == "AMD EPYC 7B12" and facts.int8_flags == []
    assert facts.reported_flags == ["avx2", "fma"]
    assert facts.fingerprint != parse_cpuinfo(XEON_VNNI).fingerprint


def test_arm_dot_product_and_without():
    graviton = parse_cpuinfo(GRAVITON2)
    assert graviton.is_arm and graviton.arch == "aarch64"
    assert graviton.int8_flags == ["asimddp"]
    assert "0xd0c" in graviton.model  # no "model name" on Arm: implementer/part identify the core
    assert parse_cpuinfo(CORTEX_A72).int8_flags == []


def test_this_host_is_described():
    facts = cpu_facts()
    assert facts.model and facts.arch
    assert json.loads(json.dumps(facts.to_dict()))["model"] == facts.model


def test_cgroup_quota(tmp_path):
    cpu_max = tmp_path / "cpu.max"
    cpu_max.write_text("150000 100000\n")
    assert cgroup_cpu_limit(cpu_max, tmp_path / "none", tmp_path / "none") == 1.5
    cpu_max.write_text("max 100000\n")
    assert cgroup_cpu_limit(cpu_max, tmp_path / "none", tmp_path / "none") is None
    quota, period = tmp_path / "quota", tmp_path / "period"
    quota.write_text("200000\n")
    period.write_text("100000\n")
    assert cgroup_cpu_limit(tmp_path / "missing", quota, period) == 2.0
    quota.write_text("-1\n")
    assert cgroup_cpu_limit(tmp_path / "missing", quota, period) is None


def test_usable_cores_respects_affinity_and_quota(tmp_path):
    affinity = len(os.sched_getaffinity(0))
    cpu_max = tmp_path / "cpu.max"
    cpu_max.write_text("max 100000\n")
    assert usable_cores(cpu_max) == affinity
    cpu_max.write_text("50000 100000\n")  # half a core is still one thread
    assert usable_cores(cpu_max) == 1
    cpu_max.write_text(f"{(affinity + 8) * 100000} 100000\n")  # a quota above the mask does not add cores
    assert usable_cores(cpu_max) == affinity


@pytest.mark.parametrize(
    ("model_threads", "cores", "expected"),
    [(2, 2, (2, False)), (1, 2, (1, True)), (4, 16, (12, True)), (8, 4, (4, False))],
)
def test_decode_and_model_threads_never_exceed_the_cores(model_threads, cores, expected):
    decode, overlap = split_threads(model_threads, cores)
    assert (decode, overlap) == expected
    assert decode + (model_threads if overlap else 0) <= cores


def test_choice_cache_is_json_and_survives_garbage(tmp_path):
    path = tmp_path / "fashion-edge" / "choices.json"
    assert read_choices(path) == {}
    write_choice("a|cpu|flags|threads=2", {"artifact": "onnx_int8"}, path)
    write_choice("b|cpu|flags|threads=1", {"artifact": "onnx_fp32"}, path)
    data = json.loads(path.read_text())
    assert data["choices"]["a|cpu|flags|threads=2"]["artifact"] == "onnx_int8" and len(data["choices"]) == 2
    assert not list(path.parent.glob(".*.tmp"))  # the temporary file was renamed into place
    path.write_text("{not json")
    assert read_choices(path) == {}
    write_choice("c", {"artifact": "onnx_fp32"}, path)
    assert list(read_choices(path)) == ["c"]
