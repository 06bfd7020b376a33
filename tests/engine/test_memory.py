"""`release_freed_memory`: freed tensors go back to the operating system (fresh processes: malloc is per process)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from mmer.cli import main
from mmer.engine import memory

PROBE = textwrap.dedent(
    """
    import sys
    import torch
    from mmer.engine.memory import release_freed_memory

    def rss_mib():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * 4096 / 2**20

    took = release_freed_memory() if sys.argv[1] == "release" else False
    big = torch.ones(4 << 20)  # a 16 MiB block, freed: glibc's moving threshold would rise to 16 MiB
    del big
    held = [torch.ones(1 << 19) for _ in range(150)]  # 150 x 2 MiB, touched
    peak = rss_mib()
    del held
    print(took, peak - rss_mib())
    """
)


def _freed_mib(mode: str) -> tuple[bool, float]:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True).stdout.split()
    return out[0] == "True", float(out[1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc (Linux) only")
def test_freed_tensors_are_returned_to_the_system():
    took, freed = _freed_mib("release")
    assert took
    assert freed > 250  # the 300 MiB of 2 MiB tensors leave the resident set when they are freed
    _, kept = _freed_mib("default")
    assert kept < 50  # without it, glibc keeps them in the heap (the reason the trainer calls it)


@pytest.mark.parametrize("flag", [False, True])
def test_trainer_releases_memory_only_when_asked(tmp_path, monkeypatch, flag):
    calls = []
    monkeypatch.setattr(memory, "release_freed_memory", lambda: calls.append(1))
    args = ["train", "--model", "baseline", "--dataset", "engine-toy", "--quiet", "--epochs", "1", "--out", str(tmp_path / "r")]
    assert main([*args, "--set", f"train.release_memory={str(flag).lower()}"]) == 0
    assert calls == ([1] if flag else [])
