"""`mmer data synth` / `mmer data check`: what they print and which problems they name."""

from __future__ import annotations

import torch

from mmer.cli import main
from mmer.data.dataset import DatasetBundle, SplitData, spec_from_splits
from mmer.data.npz_format import write_npz_dir


def test_synth_quiet_prints_only_the_output_folder(tmp_path, capsys):
    out = tmp_path / "d"
    assert main(["data", "synth", "--preset", "synth-dyadic", "--size", "tiny", "--quiet", "--out", str(out)]) == 0
    assert capsys.readouterr().out == f"{out}\n"
    loud = tmp_path / "e"
    assert main(["data", "synth", "--preset", "synth-dyadic", "--size", "tiny", "--out", str(loud)]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith(f"wrote synth-dyadic (tiny) to {loud}\ndataset synth-dyadic") and "ceiling:" in printed


def test_check_takes_dataset_options_only(capsys):
    assert main(["data", "check", "--dataset", "synth-dyadic", "--set", "data.batch_size=3"]) == 2
    assert "--set data.batch_size=3: `mmer data check` takes dataset options only (data.options.KEY=VALUE)" in capsys.readouterr().err


def _toy_bundle(last_clip_index: int) -> DatasetBundle:
    splits = {}
    for name, n in (("train", 4), ("valid", 3), ("test", 3)):
        mask = torch.ones(n, 2, dtype=torch.bool)
        clip_index = torch.arange(n)
        if name == "valid":
            clip_index[-1] = last_clip_index
        splits[name] = SplitData({"text": torch.ones(n, 2, 3)}, {"text": mask}, torch.eye(2)[torch.arange(n) % 2], [f"{name}{i}" for i in range(n)], clip_index)
    return DatasetBundle(spec_from_splits("mine", ("x", "y"), splits), splits, "test")


def test_check_names_a_sample_pointing_past_the_last_clip(tmp_path, capsys):
    root = tmp_path / "bad"
    write_npz_dir(_toy_bundle(last_clip_index=3), root)  # 3 clips in valid: rows 0..2
    assert main(["data", "check", "--dataset", "npz", "--root", str(root)]) == 2
    err = capsys.readouterr().err
    assert "split 'valid': field 'clip_index' points outside the 3 clips" in err and str(root) in err
    good = tmp_path / "good"
    write_npz_dir(_toy_bundle(last_clip_index=2), good)
    assert main(["data", "check", "--dataset", "npz", "--root", str(good)]) == 0
    assert capsys.readouterr().out.rstrip().endswith("OK: every split, field and shape is sound")
