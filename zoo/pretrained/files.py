"""Reading weights files with the standard readers (no pickled code), and
downloading the published ones.

- keras.applications' HDF5 files (the Keras 2 `save_weights` layout Keras 3
  still loads: root attribute `layer_names`, one group per layer whose
  `weight_names` attribute lists its datasets in order), with h5py.
- PyTorch state dicts (.pth/.pt) with `torch.load(weights_only=True)`, which
  unpickles tensors and containers only; PyTorch is needed for these alone.
- .safetensors with the `safetensors` package's numpy API (no PyTorch).
"""

import hashlib
import os
from pathlib import Path

import numpy as np

from zoo import resolve

TORCH_SUFFIXES = (".pth", ".pt")
SAFETENSORS_SUFFIXES = (".safetensors",)
HDF5_SUFFIXES = (".h5", ".hdf5")


class WeightsFile:
    """The float32 tensors of one weights file by name.

    Each tensor is taken once; `leftover()` names those nothing took (the
    tensors of another, larger architecture). `groups` is the layer -> tensor
    names index of a Keras HDF5 file.
    """

    def __init__(self, path, arrays, groups=None):
        self.path = Path(path)
        self.arrays = arrays
        self.groups = groups or {}
        self.taken = set()

    def __contains__(self, key):
        return key in self.arrays

    def error(self, message):
        return ValueError(f"weights file {self.path.name!r}: {message}")

    def take(self, key, shape, what):
        """The tensor `key`, checked to have `shape` (the source's layout)."""
        if key not in self.arrays:
            named = [k for k in self.arrays if not k.endswith("num_batches_tracked")]
            examples = ", ".join(repr(k) for k in named[:3])
            raise self.error(f"tensor {key!r} is missing ({what} needs shape {tuple(shape)}); "
                             f"the file has {len(self.arrays)} tensors such as {examples}: "
                             "is it the weights of another architecture?")
        array = self.arrays[key]
        if tuple(array.shape) != tuple(shape):
            raise self.error(f"tensor {key!r} has shape {tuple(array.shape)}; {what} needs "
                             f"{tuple(shape)}: the weights of another architecture or width?")
        self.taken.add(key)
        return array

    def group(self, layer, count, what):
        """The tensor names of layer `layer` of a Keras HDF5 file (`count` of them)."""
        if layer not in self.groups:
            raise self.error(f"layer {layer!r} is missing ({what} needs it); the file has "
                             f"{len(self.groups)} layers such as "
                             + ", ".join(repr(k) for k in list(self.groups)[:3])
                             + ": is it the weights of another architecture?")
        keys = self.groups[layer]
        if len(keys) != count:
            raise self.error(f"layer {layer!r} has {len(keys)} tensors; {what} needs {count}")
        return keys

    def skip(self, *keys):
        """Marks tensors as used without loading them (a replaced head)."""
        self.taken.update(k for k in keys if k in self.arrays)

    def leftover(self, ignore=()):
        return [k for k in self.arrays if k not in self.taken
                and not any(k.startswith(p) or k.endswith(p) for p in ignore)]


class WeightsFileError(ValueError):
    """A weights file that is not what its suffix says (damaged, another format)."""


def read(path):
    """The `WeightsFile` at `path`, by its suffix."""
    path = Path(path)
    suffix = path.suffix.lower()
    try:
        if suffix in HDF5_SUFFIXES:
            return _read_hdf5(path)
        if suffix in SAFETENSORS_SUFFIXES:
            from safetensors.numpy import load_file

            return WeightsFile(path, {k: _float32(v) for k, v in load_file(str(path)).items()})
        if suffix in TORCH_SUFFIXES:
            return WeightsFile(path, _read_torch(path))
    except WeightsFileError:
        raise
    except Exception as err:  # h5py's, torch's and safetensors' errors on a damaged file
        raise WeightsFileError(f"weights file {path.name!r} cannot be read ({first_line(err)}): "
                               "is it damaged or truncated?") from None
    raise resolve.bad_option("weights", str(path), "a file ending in " + ", ".join(
        HDF5_SUFFIXES + TORCH_SUFFIXES + SAFETENSORS_SUFFIXES))


def _float32(array):
    array = np.asarray(array)
    return array.astype(np.float32) if array.dtype.kind == "f" else array


def _read_hdf5(path):
    import h5py

    arrays, groups = {}, {}
    with h5py.File(path, "r") as f:
        root = f["model_weights"] if "layer_names" not in f.attrs and "model_weights" in f else f
        if "layer_names" not in root.attrs:
            raise WeightsFileError(
                f"weights file {path.name!r} is not a Keras HDF5 weights file (no 'layer_names' "
                "attribute): keras.applications' .h5 files are")
        for layer in root.attrs["layer_names"]:
            layer = _text(layer)
            names = [_text(n) for n in root[layer].attrs.get("weight_names", [])]
            groups[layer] = [f"{layer}/{name}" for name in names]
            for name, key in zip(names, groups[layer]):
                arrays[key] = _float32(root[layer][name][()])
    return WeightsFile(path, arrays, groups)


def _text(value):
    return value.decode("utf8") if isinstance(value, bytes) else str(value)


def _read_torch(path):
    try:
        import torch
    except ImportError:
        raise WeightsFileError(
            f"weights file {path.name!r}: reading a PyTorch .pth needs PyTorch (pip install "
            "torch); without it, save the same tensors as .safetensors "
            "(safetensors.torch.save_file(torch.load(f, weights_only=True), 'x.safetensors'))"
        ) from None
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]  # a training checkpoint around the state dict
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise WeightsFileError(f"weights file {path.name!r} holds a {type(state).__name__}, not a "
                               "state dict (tensor names to tensors)")
    return {k: _float32(v.detach().cpu().float().numpy() if v.is_floating_point()
                        else v.detach().cpu().numpy()) for k, v in state.items()}


def fetch(checkpoint):
    """The cached or downloaded file of `checkpoint` (`keras.utils.get_file`,
    cached under the Keras cache dir's models/), checked against its hash."""
    import keras

    full_hash = len(checkpoint.file_hash) in (32, 64)  # md5 or sha256, as get_file checks
    try:
        path = keras.utils.get_file(checkpoint.file, checkpoint.url, cache_subdir="models",
                                    file_hash=checkpoint.file_hash if full_hash else None)
    except Exception as err:  # no network, a proxy, an HTTP error
        raise ValueError(f"weights: cannot download {checkpoint.url} ({first_line(err)}); "
                         "offline, pass the path of a downloaded copy as weights=") from None
    if not full_hash:  # torchvision: a sha256 prefix in the file name, as torch.hub checks
        digest = _sha256(path)
        if not digest.startswith(checkpoint.file_hash):
            os.remove(path)
            raise ValueError(f"weights: {checkpoint.file} has sha256 {digest[:16]}..., not "
                             f"{checkpoint.file_hash}...: removed; a broken download?")
    return path


def first_line(err):
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0][:200]}" if text else type(err).__name__


def _sha256(path, chunk=1 << 20):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()
