"""Load time and peak memory of the `mosei-aligned` reader on a full-size file.

Writes a file shaped like the real processed CMU-MOSEI `train_valid_test.pt` (16326 / 1871 / 4659 samples of
text [60, 300], visual [60, 35], audio [60, 74], float64, left zero padding, some -inf audio; legacy torch.save
container, pickle protocol 2 - byte for byte what `torch.save(..., _use_new_zipfile_serialization=False)` writes,
produced array by array so the writer itself needs little memory), then loads it with `load_dataset` in fresh
processes and reports wall time and peak RSS (`resource.getrusage`).

    python benchmarks/mosei_reader.py [--dir DIR] [--keep] [--repeats 3]
"""

from __future__ import annotations

import argparse
import codecs
import io
import json
import os
import pickle
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

SIZES = {"train": 16326, "valid": 1871, "test": 4659}
DIMS = {"src-text": 300, "src-visual": 35, "src-audio": 74}
LENGTH = 60
TORCH_MAGIC, TORCH_PROTOCOL = 0x1950A86A20F9469CFC6C, 1001
CHUNK_ROWS = 256  # samples per streamed chunk


class LazyArray:
    """A float64 feature array generated only when it is pickled (and freed right after)."""

    def __init__(self, split: str, key: str, n: int, dim: int, seed: int):
        self.split, self.key, self.n, self.dim, self.seed = split, key, n, dim, seed

    def build(self) -> np.ndarray:
        rng = np.random.default_rng(self.seed)
        x = rng.standard_normal((self.n, LENGTH, self.dim))  # float64, like the real file
        real = np.random.default_rng(self.seed // 10).integers(5, LENGTH + 1, size=self.n)  # same per split
        x *= (np.arange(LENGTH)[None, :] >= (LENGTH - real)[:, None])[:, :, None]  # left zero padding
        if self.key == "src-audio":
            x[:: 97, -1, :4] = -np.inf
        return x


class LatinPayload:
    """An array's bytes, to be written as the latin-1 text that protocol 2 uses for numpy data."""

    def __init__(self, array: np.ndarray):
        self.array = array


class StreamingPickler(pickle._Pickler):
    """pickle protocol 2, writing large numpy arrays chunk by chunk (same bytes as the standard pickler)."""

    dispatch = dict(pickle._Pickler.dispatch)

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, LazyArray):
            array = obj.build()
            print(f"  writing {obj.split}/{obj.key} {array.shape}", flush=True)
            state = (1, array.shape, array.dtype, False, LatinPayload(array))
            return (np.ndarray.__reduce__(array)[0], (np.ndarray, (0,), b"b"), state)
        return NotImplemented

    def save_latin_payload(self, payload: LatinPayload) -> None:
        # what save_bytes does under protocol 2: codecs.encode(text, 'latin1'), text written as BINUNICODE
        flat = payload.array.reshape(len(payload.array), -1)
        view = flat.view(np.uint8)
        utf8_size = view.size + int(sum(np.count_nonzero(view[i : i + CHUNK_ROWS] >= 0x80) for i in range(0, len(view), CHUNK_ROWS)))
        self.save(codecs.encode)
        self.write(pickle.BINUNICODE + utf8_size.to_bytes(4, "little"))
        for i in range(0, len(flat), CHUNK_ROWS):
            self.write(flat[i : i + CHUNK_ROWS].tobytes().decode("latin-1").encode("utf-8"))
        self.memoize(payload)  # the standard pickler memoizes the text string,
        self.save("latin1")
        self.write(pickle.TUPLE2)
        self.memoize((payload, "latin1"))  # the argument tuple
        self.write(pickle.REDUCE)
        self.memoize(payload.array)  # and the bytes object

    dispatch[LatinPayload] = save_latin_payload


def content(seed: int = 0) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    data: dict[str, Any] = {}
    for s, (split, n) in enumerate(SIZES.items()):
        part: dict[str, Any] = {key: LazyArray(split, key, n, dim, seed * 1000 + s * 10 + k) for k, (key, dim) in enumerate(DIMS.items())}
        part["tgt"] = [[2, *sorted(set(rng.integers(4, 10, size=rng.integers(0, 4)).tolist())), 3] for _ in range(n)]
        data[split] = part
    data["dict"] = {"src": {"<blank>": 0, "<unk>": 1}, "tgt": {"<blank>": 0, "<unk>": 1, "<s>": 2, "</s>": 3, "happy": 4,
                                                                "sad": 5, "anger": 6, "surprise": 7, "disgust": 8, "fear": 9}}
    data["settings"] = argparse.Namespace(max_seq_len=LENGTH, seed=seed)
    return data


def write_legacy_pt(path: Path, obj: Any) -> None:
    """The legacy torch.save container: magic, protocol version, sys_info, the object, storage keys, (storages)."""
    sys_info = {"protocol_version": TORCH_PROTOCOL, "little_endian": sys.byteorder == "little",
                "type_sizes": {"short": 2, "int": 4, "long": 4}}
    with open(path, "wb") as fh:
        for header in (TORCH_MAGIC, TORCH_PROTOCOL, sys_info):
            pickle.dump(header, fh, protocol=2)
        StreamingPickler(fh, protocol=2).dump(obj)
        pickle.dump([], fh, protocol=2)


def check_writer_matches_torch() -> None:
    """The streaming writer must produce exactly torch.save's bytes (on a small object)."""
    import torch

    small = {"a": LazyArray("train", "src-audio", 7, 5, 1), "b": [[2, 4, 3]], "s": argparse.Namespace(x=1)}
    mine, theirs = io.BytesIO(), io.BytesIO()
    with tempfile.TemporaryDirectory() as tmp:
        write_legacy_pt(Path(tmp) / "x.pt", small)
        mine.write((Path(tmp) / "x.pt").read_bytes())
    torch.save({"a": small["a"].build(), "b": small["b"], "s": small["s"]}, theirs, _use_new_zipfile_serialization=False)
    ours_main, torch_main = mine.getvalue(), theirs.getvalue()
    # torch's sys_info differs in content order only by version; compare everything after the three headers
    def body(data: bytes) -> bytes:
        stream = io.BytesIO(data)
        for _ in range(3):
            pickle.load(stream)
        return stream.read()
    if body(ours_main) != body(torch_main):
        raise SystemExit("streaming writer does not match torch.save; benchmark file would not be realistic")


def measure(path: Path) -> dict[str, float]:
    """Load in a fresh process. Both writing and loading run in children: Linux carries a parent's peak RSS
    (ru_maxrss) over fork+exec, so the measuring process must never have been large itself."""
    code = (
        "import resource, time, sys, json, re\n"
        "t0 = time.perf_counter()\n"
        "from mmer.data.load import load_dataset\n"
        "from mmer.data.readers.mosei import MoseiAlignedOptions\n"
        "base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "t1 = time.perf_counter()\n"
        "u = resource.getrusage(resource.RUSAGE_SELF); c1 = u.ru_utime + u.ru_stime\n"
        f"b = load_dataset('mosei-aligned', {str(path.parent)!r}, MoseiAlignedOptions(file={path.name!r}))\n"
        "t2 = time.perf_counter()\n"
        "u = resource.getrusage(resource.RUSAGE_SELF); c2 = u.ru_utime + u.ru_stime\n"
        "n = {s: len(v) for s, v in b.splits.items()}\n"
        "f32 = sum(x.numel() * 4 for v in b.splits.values() for x in v.features.values())\n"
        "hwm = int(re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1))\n"
        "print(json.dumps({'import_s': t1 - t0, 'load_s': t2 - t1, 'cpu_s': c2 - c1, 'peak_gb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,"
        " 'hwm_gb': hwm / 2**20, 'import_peak_gb': base / 2**20, 'float32_gb': f32 / 2**30, 'sizes': n}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", default=None, help="folder for train_valid_test.pt (default: a temporary folder)")
    parser.add_argument("--keep", action="store_true", help="keep the written file")
    parser.add_argument("--repeats", type=int, default=1, help="fresh-process loads to time")
    parser.add_argument("--write-only", metavar="PATH", help=argparse.SUPPRESS)  # internal: the writer child
    args = parser.parse_args()
    if args.write_only:
        write_legacy_pt(Path(args.write_only), content())
        return
    check_writer_matches_torch()
    folder = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="mosei-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "train_valid_test.pt"
    try:
        if not path.exists():
            t = time.perf_counter()
            subprocess.run([sys.executable, __file__, "--write-only", str(path)], check=True)
            print(f"wrote {path} ({path.stat().st_size / 2**30:.2f} GiB) in {time.perf_counter() - t:.0f} s")
        for i in range(args.repeats):
            load_avg = os.getloadavg()
            result = measure(path)
            print(f"run {i + 1}: load {result['load_s']:.1f} s wall, {result['cpu_s']:.1f} s CPU (+{result['import_s']:.1f} s imports), peak RSS "
                  f"{result['peak_gb']:.2f} GiB (VmHWM {result['hwm_gb']:.2f}; after imports {result['import_peak_gb']:.2f}), float32 features "
                  f"{result['float32_gb']:.2f} GiB, samples {result['sizes']}, load average before {load_avg[0]:.1f}")
    finally:
        if not args.keep and not args.dir:
            path.unlink(missing_ok=True)
            folder.rmdir()


if __name__ == "__main__":
    main()
