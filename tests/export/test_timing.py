"""Timing facts: tagged with the CPU, replacing only this host's earlier timing."""

from __future__ import annotations

from dataclasses import replace

from fashion.export.timing import cpu_facts, merge_timings, timing_fact
from fashion.runtime.host import REPORTED_FLAGS
from fashion.runtime.manifest import Timing

X86 = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu sse2 avx2 fma avx512f avx512_vnni amx_tile amx_int8
processor\t: 1
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu sse2 avx2 fma avx512f avx512_vnni amx_tile amx_int8
"""
ARM = """processor\t: 0
BogoMIPS\t: 50.00
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics asimddp
CPU implementer\t: 0x41
"""


def test_cpu_facts_read_model_and_the_isa_flags_that_matter(tmp_path):
    (tmp_path / "x86").write_text(X86)
    facts = cpu_facts(tmp_path / "x86")
    assert facts == {
        "cpu": "Intel(R) Xeon(R) Platinum 8480+",
        "flags": ["avx2", "fma", "avx512f", "avx512_vnni", "amx_tile", "amx_int8"],
    }
    (tmp_path / "arm").write_text(ARM)
    assert cpu_facts(tmp_path / "arm")["flags"] == ["asimd", "asimddp"]
    here = cpu_facts()
    assert here["cpu"] and set(here["flags"]) <= set(REPORTED_FLAGS)


def test_a_new_timing_replaces_only_the_same_host_and_setting():
    other_cpu = Timing(cpu="Another CPU", flags=("avx2",), threads=2, batch=1, p50_ms=5.0)
    fact = timing_fact(3.21, threads=2, batch=1, images=50)
    assert fact.p50_ms == 3.21 and fact.measured_at and fact.measured_at.endswith("Z")
    assert fact.cpu == cpu_facts()["cpu"] and Timing.from_dict(fact.to_dict()) == fact  # as bundle.json holds it
    other_threads = replace(fact, threads=1, p50_ms=4.0)
    merged = merge_timings([other_cpu, other_threads, replace(fact, p50_ms=9.9)], fact)
    assert merged == [other_cpu, other_threads, fact]
    assert merge_timings(None, fact) == [fact]
