"""Import of the XINC paper's released checkpoints without running code from the file.

The release is a PyTorch Lightning ``.ckpt`` (a torch zip archive) that pickles OmegaConf
objects and a ``defaultdict`` beside the state dict, so ``torch.load(weights_only=True)``
refuses it. :class:`_TensorOnlyUnpickler` reads the archive with an allow-list: tensors, their
storages and plain containers are rebuilt; every other global becomes an inert placeholder
whose constructor, ``__setstate__`` and item setters do nothing. No callable named by the file
is ever invoked.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from ..errors import XincError

_STORAGE_DTYPES = {
    "FloatStorage": torch.float32,
    "DoubleStorage": torch.float64,
    "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16,
    "LongStorage": torch.int64,
    "IntStorage": torch.int32,
    "ShortStorage": torch.int16,
    "CharStorage": torch.int8,
    "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
}


class _Inert:
    """Stands for any object the allow-list does not admit; absorbs every pickle operation."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __call__(self, *args: Any, **kwargs: Any) -> "_Inert":
        return _Inert()

    def __setstate__(self, state: Any) -> None:
        pass

    def __setitem__(self, key: Any, value: Any) -> None:
        pass

    def append(self, value: Any) -> None:
        pass

    def extend(self, values: Any) -> None:
        pass


class _Dict(dict):
    """A plain dict that ignores pickled attributes (``OrderedDict._metadata`` of state dicts)."""

    def __setstate__(self, state: Any) -> None:
        pass


def _rebuild_tensor(storage: torch.Tensor, offset: int, size: tuple, stride: tuple, *_: Any) -> torch.Tensor:
    return storage.as_strided(size, stride, offset).clone()


def _rebuild_parameter(tensor: torch.Tensor, *_: Any) -> torch.Tensor:
    return tensor


class _TensorOnlyUnpickler(pickle.Unpickler):
    """Unpickler that rebuilds tensors and containers and neutralises everything else."""

    _ALLOWED = {
        ("collections", "OrderedDict"): _Dict,
        ("builtins", "dict"): _Dict,
        ("__builtin__", "dict"): _Dict,
        ("builtins", "list"): list,
        ("__builtin__", "list"): list,
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
        ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    }

    def __init__(self, file: Any, archive: zipfile.ZipFile, prefix: str) -> None:
        super().__init__(file)
        self._archive = archive
        self._prefix = prefix

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self._ALLOWED:
            return self._ALLOWED[(module, name)]
        if module == "torch" and name in _STORAGE_DTYPES:
            return _STORAGE_DTYPES[name]
        return _Inert

    def persistent_load(self, pid: Any) -> torch.Tensor:
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unsupported persistent id {pid!r}")
        dtype, key = pid[1], pid[2]
        if not isinstance(dtype, torch.dtype):
            raise pickle.UnpicklingError(f"unsupported storage type in {pid!r}")
        data = self._archive.read(f"{self._prefix}/data/{key}")
        return torch.frombuffer(bytearray(data), dtype=dtype) if data else torch.empty(0, dtype=dtype)


def read_release_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The ``state_dict`` tensors of a released Lightning checkpoint, on the CPU.

    Raises:
        XincError: the file is not a readable torch zip checkpoint or has no state dict.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            pickles = [n for n in archive.namelist() if n.endswith("/data.pkl")]
            if not pickles:
                raise XincError(f"{path} is not a PyTorch checkpoint archive (no data.pkl inside)")
            prefix = pickles[0][: -len("/data.pkl")]
            with archive.open(pickles[0]) as handle:
                payload = _TensorOnlyUnpickler(handle, archive, prefix).load()
    except XincError:
        raise
    except (zipfile.BadZipFile, pickle.UnpicklingError, EOFError, KeyError, ValueError, RuntimeError, TypeError, AttributeError) as exc:
        raise XincError(f"cannot read checkpoint {path}: the file is corrupt or truncated ({exc})") from exc
    state = payload.get("state_dict") if isinstance(payload, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise XincError(f"checkpoint {path} holds no state_dict of tensors; is it an XINC release checkpoint?")
    return dict(state)


_FFN_KEYS = {
    "model.positional_encoding.B": "encoding.B",
    "model.net.0.linear.weight": "linears.0.weight",
    "model.net.0.linear.bias": "linears.0.bias",
    "model.net.1.linear.weight": "linears.1.weight",
    "model.net.1.linear.bias": "linears.1.bias",
    "model.net.2.linear.weight": "linears.2.weight",
    "model.net.2.linear.bias": "linears.2.bias",
}


def ffn_from_release_state(state: dict[str, torch.Tensor], path: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Map a released FFN state dict to ``ffn-paper`` arguments and its state dict.

    Width and mapping size are read from the tensor shapes; inconsistent shapes raise XincError.
    """
    missing = sorted(set(_FFN_KEYS) - set(state))
    if missing:
        raise XincError(
            f"checkpoint {path} is not a released FFN: missing tensors {missing}; "
            "only the paper's FFN release format is supported"
        )
    mapping_size, in_dim = state["model.positional_encoding.B"].shape
    hidden = state["model.net.0.linear.weight"].shape[0]
    expected = {
        "model.positional_encoding.B": (mapping_size, 2),
        "model.net.0.linear.weight": (hidden, 2 * mapping_size),
        "model.net.0.linear.bias": (hidden,),
        "model.net.1.linear.weight": (hidden, hidden),
        "model.net.1.linear.bias": (hidden,),
        "model.net.2.linear.weight": (3, hidden),
        "model.net.2.linear.bias": (3,),
    }
    for key, shape in expected.items():
        if tuple(state[key].shape) != shape:
            raise XincError(
                f"checkpoint {path}: tensor {key} has shape {tuple(state[key].shape)}, expected {shape} "
                f"for an FFN with mapping size {mapping_size} and width {hidden}; the file does not fit the FFN layout"
            )
    config = {"mapping_size": int(mapping_size), "hidden_width": int(hidden)}
    return config, {ours: state[theirs].float() for theirs, ours in _FFN_KEYS.items()}
