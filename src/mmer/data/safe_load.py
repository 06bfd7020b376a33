"""Read pickled data files (`.pkl`, and `.pt` written by `torch.save`) without ever running code from them.

Pickle can call any importable function while loading, so a data file from the internet could run code. Every
global a file asks for is checked against an allowlist of exactly what numpy arrays, builtin containers/scalars
and the benchmark files need; anything else is refused with a DataError that says "unsafe" and names the global.

Why not plain `torch.load(weights_only=True)` for the big `.pt` files: it keeps every array's text-encoded bytes
alive until the load ends (pickle protocol 2 stores a numpy array as a latin-1 string, then bytes, then the
array), about 4x the float64 size in peak memory - 19 GB for the aligned CMU-MOSEI file. The reader here streams
the pickle, decodes large array payloads chunk by chunk straight into one buffer, hands each finished array to
an `array_hook` (e.g. "convert to float32") and frees the raw buffer at once. Files holding torch tensors
(persistent storages) and the per-clip tensor files of MEmoR go through `torch.load(weights_only=True)` with
the same allowlist (`torch.serialization.safe_globals`).
"""

from __future__ import annotations

import _compat_pickle
import argparse
import codecs
import collections
import pickle
import re
import struct
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmer.errors import DataError

ArrayHook = Callable[[np.ndarray], Any]

TORCH_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C  # first object of a legacy (non-zip) torch.save file

_NP_CORE = getattr(np, "_core", None) or np.core  # numpy 2.x / 1.x
_RECONSTRUCT = _NP_CORE.multiarray._reconstruct
_SCALAR = _NP_CORE.multiarray.scalar
_LATIN1 = {"latin1", "latin-1", "iso-8859-1", "iso8859-1", "l1"}
_STREAM_MIN = 8 << 20  # text payloads at least this long (UTF-8 bytes) are decoded chunk by chunk
_RELEASE_MIN = 1024  # raw array payloads at least this long are dropped from the memo once used
_CHUNK = 32 << 20


def require_file(root: Path | None, name: str, dataset: str, holds: str) -> Path:
    """`root / name`, or a DataError saying that dataset `dataset` needs `--root` holding `holds`."""
    if root is None:
        raise DataError(f"dataset '{dataset}' needs --root: a folder that holds {holds}")
    if not root.is_dir():
        raise DataError(f"{root}: --root of dataset '{dataset}' is not a folder (it must hold {holds})")
    path = root / name
    if not path.is_file():
        raise DataError(f"{path}: file is missing (dataset '{dataset}' expects {holds} under --root)")
    return path


def skip_float_arrays(array: np.ndarray) -> np.ndarray | None:
    """Array hook: drop floating arrays at once (for reading only the labels of a feature file)."""
    return None if array.dtype.kind == "f" else array


def float32_arrays(array: np.ndarray) -> np.ndarray:
    """Array hook: floating arrays become float32 (a new array, so the float64 original can be freed)."""
    if array.dtype.kind == "f" and array.dtype != np.float32:
        return array.astype(np.float32)
    return array


def load_data_file(path: str | Path, array_hook: ArrayHook | None = None) -> Any:
    """Load a plain pickle or a `torch.save` file (zip or legacy container) holding numpy arrays and containers.

    `array_hook` is applied to every numpy array as soon as it is rebuilt (the result takes its place).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file is missing")
    try:
        with open(path, "rb") as fh:
            head = fh.read(4)
        if head == b"PK\x03\x04":
            return _load_torch_zip(path, array_hook)
        with open(path, "rb") as fh:
            first = _SafeUnpickler(fh, array_hook).load()
            if not (isinstance(first, int) and first == TORCH_LEGACY_MAGIC):
                return first  # a plain pickle: its first object is the content
            _SafeUnpickler(fh, None).load()  # torch's protocol version
            _SafeUnpickler(fh, None).load()  # torch's sys_info
            return _SafeUnpickler(fh, array_hook, torch_file=True).load()
    except _NeedsTorchLoad:
        return load_tensor_file(path)
    except _UnsafeGlobal as exc:
        raise _unsafe(path, exc.reason) from None
    except DataError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, KeyError, IndexError, AttributeError,
            struct.error, UnicodeError, zipfile.BadZipFile, OverflowError, MemoryError) as exc:
        detail = str(exc) or "the file ends too early"
        raise DataError(f"{path}: corrupt or truncated file, cannot be unpickled ({type(exc).__name__}: {detail})") from None


def load_tensor_file(path: str | Path) -> Any:
    """`torch.load(weights_only=True)` with the explicit allowlist; errors become DataError."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file is missing")
    try:
        with torch.serialization.safe_globals(_torch_allowlist()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        offending = _offending_global(str(exc))
        if offending is not None:
            raise _unsafe(path, _needs_global(offending)) from None
        raise DataError(f"{path}: corrupt or unsafe torch file ({_last_line(str(exc))})") from None
    except (RuntimeError, EOFError, ValueError, OSError, KeyError, struct.error, zipfile.BadZipFile) as exc:
        raise DataError(f"{path}: corrupt or truncated torch file ({type(exc).__name__}: {_last_line(str(exc))})") from None


def _unsafe(path: Path, reason: str) -> DataError:
    return DataError(f"{path}: refusing to load unsafe file: {reason} (loading it could run code)")


def _needs_global(qualified_name: str) -> str:
    return f"it needs the global '{qualified_name}', which is not one of the allowed numpy-array/builtin globals"


# ------------------------------------------------------------------------------------------- torch containers


class _NeedsTorchLoad(Exception):
    """The pickle holds torch storages; torch's own weights-only loader must read it."""


def _load_torch_zip(path: Path, array_hook: ArrayHook | None) -> Any:
    with zipfile.ZipFile(path) as zf:
        records = [n for n in zf.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
        if len(records) != 1:
            raise DataError(f"{path}: zip file without a single '<archive>/data.pkl' record; not a torch.save file")
        with zf.open(records[0]) as fh:
            return _SafeUnpickler(fh, array_hook, torch_file=True).load()


def _torch_allowlist() -> list[Any]:
    """Exactly the globals the benchmark files need, under their numpy 1.x and 2.x names."""
    dtype_classes = {type(np.dtype(t)) for t in (np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16,
                                                 np.uint32, np.uint64, np.float16, np.float32, np.float64)}
    return [
        (_RECONSTRUCT, "numpy.core.multiarray._reconstruct"),
        (_RECONSTRUCT, "numpy._core.multiarray._reconstruct"),
        (_SCALAR, "numpy.core.multiarray.scalar"),
        (_SCALAR, "numpy._core.multiarray.scalar"),
        np.ndarray,
        np.dtype,
        *sorted(dtype_classes - {np.dtype}, key=lambda c: c.__name__),
        argparse.Namespace,
        codecs.encode,
        collections.OrderedDict,
    ]


def _offending_global(message: str) -> str | None:
    for pattern in (r"GLOBAL ([\w.]+)", r"but got <class '([^']+)'>"):
        found = re.search(pattern, message)
        if found:
            return found.group(1)
    return None


def _last_line(message: str) -> str:
    """The informative line of torch's multi-line messages (not the generic advice around it)."""
    lines = [line.strip() for line in message.strip().splitlines() if line.strip()]
    lines = [line for line in lines if not line.startswith(("Check the documentation", "Weights only load failed", "(1)", "(2)"))]
    return lines[-1] if lines else message.strip()


# ------------------------------------------------------------------------------------------- the unpickler


def _is_payload(obj: Any) -> bool:
    return isinstance(obj, _LatinText) or (isinstance(obj, (str, bytes, bytearray, np.ndarray)) and len(obj) >= _RELEASE_MIN)


def _writeable(array: np.ndarray) -> np.ndarray:
    """Arrays built on immutable bytes are read-only; those are small here (large payloads are bytearrays)."""
    return array if array.flags.writeable else array.copy()


class _UnsafeGlobal(pickle.UnpicklingError):
    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class _Released:
    """Memo slot of a raw array payload that was consumed (freed) after its array was built."""


_RELEASED = _Released()


class _LatinText:
    """A long pickled text string kept as its latin-1 bytes (how numpy stores array data under protocol 2)."""

    def __init__(self, buffer: np.ndarray):
        self.buffer = buffer  # uint8 [n]

    def __len__(self) -> int:
        return len(self.buffer)

    def text(self) -> str:
        return self.buffer.tobytes().decode("latin-1")


class _PendingArray:
    """What `_reconstruct` returns; BUILD replaces it with the finished array."""


class _SafeUnpickler(pickle._Unpickler):  # the Python unpickler, so single opcodes can be overridden
    dispatch = dict(pickle._Unpickler.dispatch)

    def __init__(self, file: Any, array_hook: ArrayHook | None, torch_file: bool = False):
        super().__init__(file, encoding="latin1")  # latin1: Python-2 pickles of numpy arrays load correctly
        self._torch_file = torch_file  # torch.* globals (tensors) are left to torch's weights-only loader
        self._hook = array_hook
        self._keys: dict[int, list[Any]] = {}  # id(memoized payload or pending array) -> its memo keys
        self._latin_open = 0  # _LatinText objects not consumed by `_codecs.encode` yet
        self._allowed: dict[tuple[str, str], Any] = {
            ("numpy.core.multiarray", "_reconstruct"): self._reconstruct,
            ("numpy._core.multiarray", "_reconstruct"): self._reconstruct,
            ("numpy.core.multiarray", "scalar"): _SCALAR,
            ("numpy._core.multiarray", "scalar"): _SCALAR,
            ("numpy.core.numeric", "_frombuffer"): self._frombuffer,
            ("numpy._core.numeric", "_frombuffer"): self._frombuffer,
            ("numpy", "ndarray"): np.ndarray,
            ("numpy", "dtype"): np.dtype,
            ("_codecs", "encode"): self._encode,
            ("collections", "OrderedDict"): collections.OrderedDict,
            ("argparse", "Namespace"): argparse.Namespace,
            ("builtins", "set"): set,
            ("builtins", "frozenset"): frozenset,
            ("builtins", "bytearray"): self._bytearray,
            ("builtins", "bytes"): bytes,  # protocol 2 writes empty bytes (an empty array's data) as bytes()
        }

    # ---- globals and persistent ids

    def find_class(self, module: str, name: str) -> Any:
        if self.proto < 3 and self.fix_imports:  # Python-2 names (e.g. __builtin__.set)
            if (module, name) in _compat_pickle.NAME_MAPPING:
                module, name = _compat_pickle.NAME_MAPPING[(module, name)]
            elif module in _compat_pickle.IMPORT_MAPPING:
                module = _compat_pickle.IMPORT_MAPPING[module]
        if (module, name) not in self._allowed:
            if self._torch_file and (module == "torch" or module.startswith("torch.")):
                raise _NeedsTorchLoad()
            raise _UnsafeGlobal(_needs_global(f"{module}.{name}"))
        return self._allowed[(module, name)]

    def persistent_load(self, pid: Any) -> Any:
        if self._torch_file:
            raise _NeedsTorchLoad()
        raise pickle.UnpicklingError("a plain pickle with persistent ids (external objects) cannot be read")

    # ---- allowlisted callables that need the unpickler

    def _reconstruct(self, cls: Any, shape: Any, dtype_code: Any) -> _PendingArray:
        if cls is not np.ndarray:
            raise pickle.UnpicklingError(f"array rebuild of an unsupported class {cls!r}")
        return _PendingArray()

    def _frombuffer(self, buffer: Any, dtype: np.dtype, shape: tuple[int, ...], order: str) -> Any:
        array = _writeable(np.frombuffer(buffer, dtype=dtype).reshape(shape, order=order))
        self._release(buffer)
        return self._hook(array) if self._hook else array

    def _encode(self, obj: Any, encoding: str = "utf-8", errors: str = "strict") -> Any:
        if isinstance(obj, _LatinText):
            self._latin_open -= 1
            self._release(obj)
            if encoding.lower() in _LATIN1:
                return obj.buffer
            obj = obj.text()
        if not (isinstance(obj, str) and len(obj) >= _RELEASE_MIN):
            return codecs.encode(obj, encoding, errors)
        self._release(obj)
        if encoding.lower() in _LATIN1:  # array data: mutable, so the array built on it is writeable
            return bytearray(obj, "latin-1", errors)
        return codecs.encode(obj, encoding, errors)

    def _bytearray(self, *args: Any) -> bytearray:
        if args and isinstance(args[0], _LatinText):
            self._latin_open -= 1
            return bytearray(args[0].buffer.tobytes())
        return bytearray(*args)

    # ---- memo bookkeeping: consumed payloads are dropped so their memory is freed during the load

    def _remember(self, key: Any) -> None:
        """Note memo slots that hold a payload, or a tuple with one (the encode arguments, the array state)."""
        obj = self.stack[-1]
        if isinstance(obj, _PendingArray) or _is_payload(obj):
            self._keys.setdefault(id(obj), []).append(key)
        elif isinstance(obj, tuple):
            for item in obj:
                if _is_payload(item):
                    self._keys.setdefault(id(item), []).append(key)

    def _release(self, obj: Any) -> None:
        for key in self._keys.pop(id(obj), ()):
            self.memo[key] = _RELEASED

    def _put(self, key: Any) -> None:
        if isinstance(key, int) and key < 0:
            raise ValueError("negative memo index")
        self.memo[key] = self.stack[-1]
        self._remember(key)

    def _get(self, key: Any) -> None:
        if key not in self.memo:
            raise pickle.UnpicklingError(f"memo value not found at index {key}")
        value = self.memo[key]
        if value is _RELEASED:
            raise pickle.UnpicklingError("the file re-uses a raw array payload after its array was built")
        self.append(value)

    # ---- large text payloads: decode chunk by chunk into one latin-1 buffer

    def _load_text(self, size: int) -> None:
        if size < _STREAM_MIN:
            self.append(str(self._read_exact(size), "utf-8", "surrogatepass"))
            return
        decoder = codecs.getincrementaldecoder("utf-8")("surrogatepass")
        out = np.empty(size, dtype=np.uint8)  # latin-1 text is never longer than its UTF-8 form
        filled, left = 0, size
        while left:
            text = decoder.decode(self._read_exact(min(_CHUNK, left)), final=left <= _CHUNK)
            left -= min(_CHUNK, left)
            try:
                raw = text.encode("latin-1")
            except UnicodeEncodeError:  # real text, not array data: finish it as an ordinary string
                rest = [decoder.decode(self._read_exact(min(_CHUNK, left - i)), final=left - i <= _CHUNK)
                        for i in range(0, left, _CHUNK)]
                self.append(out[:filled].tobytes().decode("latin-1") + text + "".join(rest))
                return
            out[filled : filled + len(raw)] = np.frombuffer(raw, dtype=np.uint8)
            filled += len(raw)
        self._latin_open += 1
        self.append(_LatinText(out[:filled]))

    def _load_bytes(self, size: int) -> None:
        """Large byte strings (array data under protocol 3+) are read into a bytearray: no copy, and writeable."""
        if size < _RELEASE_MIN:
            self.append(self._read_exact(size))
            return
        data = bytearray(size)
        view, filled = memoryview(data), 0
        while filled < size:
            got = self.readinto(view[filled:])
            if not got:
                raise EOFError(f"file ends inside a {size}-byte string")
            filled += got
        self.append(data)

    def _read_exact(self, size: int) -> bytes:
        data = self.read(size)
        if len(data) != size:
            raise EOFError(f"file ends inside a {size}-byte string")
        return data

    # ---- arrays and the end of the stream

    def _op_build(self) -> None:
        inst = self.stack[-2] if len(self.stack) >= 2 else None
        if isinstance(inst, _PendingArray):
            state = self.stack.pop()
            array = self._build_array(state)
            self.stack[-1] = array
            for key in self._keys.pop(id(inst), ()):
                self.memo[key] = array
            return
        if isinstance(inst, type):
            raise _UnsafeGlobal(f"it sets attributes of the class '{inst.__module__}.{inst.__qualname__}'")
        pickle._Unpickler.load_build(self)

    def _build_array(self, state: Any) -> Any:
        if not isinstance(state, tuple) or len(state) not in (4, 5):
            raise pickle.UnpicklingError("malformed numpy array state")
        shape, dtype, fortran, raw = state[-4:]
        dtype = np.dtype(dtype)
        order = "F" if fortran else "C"
        if dtype.hasobject:  # a list of already-unpickled objects: numpy's own setstate is safe here
            array = _RECONSTRUCT(np.ndarray, (0,), b"b")
            array.__setstate__(state)
        else:
            data = raw.encode("latin-1") if isinstance(raw, str) else raw
            count = int(np.prod(shape, dtype=np.int64))
            if len(memoryview(data).cast("B")) != count * dtype.itemsize:
                raise pickle.UnpicklingError(f"array data has the wrong size for shape {tuple(shape)} and dtype {dtype}")
            array = _writeable(np.frombuffer(data, dtype=dtype, count=count).reshape(shape, order=order))
            self._release(raw)
        return self._hook(array) if self._hook else array

    def _op_stop(self) -> None:
        if self._latin_open:
            raise pickle.UnpicklingError("the file holds a text string over 8 MB that is not array data (unsupported)")
        pickle._Unpickler.load_stop(self)


def _line_int(u: _SafeUnpickler) -> int:
    return int(u.readline()[:-1])


def _uint8(u: _SafeUnpickler) -> int:
    return u.read(1)[0]


def _uint32(u: _SafeUnpickler) -> int:
    return struct.unpack("<I", u.read(4))[0]


def _uint64(u: _SafeUnpickler) -> int:
    return struct.unpack("<Q", u.read(8))[0]


_OPS: dict[bytes, Callable[[_SafeUnpickler], None]] = {
    pickle.PUT: lambda u: u._put(_line_int(u)),
    pickle.BINPUT: lambda u: u._put(_uint8(u)),
    pickle.LONG_BINPUT: lambda u: u._put(_uint32(u)),
    pickle.MEMOIZE: lambda u: u._put(len(u.memo)),
    pickle.GET: lambda u: u._get(_line_int(u)),
    pickle.BINGET: lambda u: u._get(_uint8(u)),
    pickle.LONG_BINGET: lambda u: u._get(_uint32(u)),
    pickle.BINUNICODE: lambda u: u._load_text(_uint32(u)),
    pickle.BINUNICODE8: lambda u: u._load_text(_uint64(u)),
    pickle.BINBYTES: lambda u: u._load_bytes(_uint32(u)),
    pickle.BINBYTES8: lambda u: u._load_bytes(_uint64(u)),
    pickle.BUILD: _SafeUnpickler._op_build,
    pickle.STOP: _SafeUnpickler._op_stop,
}
_SafeUnpickler.dispatch.update({op[0]: fn for op, fn in _OPS.items()})
