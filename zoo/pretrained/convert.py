"""Putting a weights file's tensors into a zoo model, layer by layer.

Each source's converter (`from_keras`, `from_torchvision`) names, for every
layer of the zoo model, the file's tensors; `Loader` checks each shape in the
source's layout, transposes PyTorch's layouts to Keras' (convolutions
OIHW -> HWIO, dense (out, in) -> (in, out), the first dense layer after a
flatten also from NCHW to NHWC order), folds a convolution's bias into the
BatchNorm after it (BN(conv + b) is BN with moving mean - b), and at the end
checks that every tensor was used and every layer loaded.
"""

import numpy as np


class Loader:
    """Loads `file` (a `files.WeightsFile`) into `model`.

    Args:
        model: the zoo model, built in the source's layout.
        file: the source's tensors.
        torch_layout: PyTorch's tensor layouts (else Keras').
    """

    def __init__(self, model, file, torch_layout):
        self.model, self.file, self.torch = model, file, torch_layout
        self.loaded = set()
        self.new = {}  # layer name: why it keeps its initialization

    def _what(self, name):
        return f"{self.model.name}'s layer {name!r}"

    def has(self, name):
        return any(layer.name == name for layer in self.model.layers)

    def _set(self, name, values):
        layer = self.model.get_layer(name)
        layer.set_weights([np.ascontiguousarray(v, dtype=np.float32) for v in values])
        self.loaded.add(name)

    def conv(self, name, kernel, bias=None, bn=None, reverse_input=False):
        """Convolution `name` (and BatchNorm `name_bn` when the model has it).

        Args:
            kernel, bias: the file's tensor names (bias None: it has none).
            bn: names of the BatchNorm's gamma, beta, moving mean and variance.
            reverse_input: reverse the input channels (BGR weights read RGB).
        """
        layer = self.model.get_layer(name)
        height, width, channels, filters = tuple(layer.kernel.shape)
        shape = (filters, channels, height, width) if self.torch else tuple(layer.kernel.shape)
        w = self.file.take(kernel, shape, self._what(name))
        w = w.transpose(2, 3, 1, 0) if self.torch else w
        if reverse_input:
            w = w[:, :, ::-1, :]
        b = None if bias is None else self.file.take(bias, (filters,), self._what(name))
        norm = f"{name}_bn"
        has_norm = self.has(norm)
        if layer.use_bias:
            if b is None:
                raise self.file.error(f"{self._what(name)} has a bias but the file's "
                                      f"convolution {kernel!r} has none: batch_norm=True?")
            self._set(name, [w, b])
        else:
            self._set(name, [w])
        if has_norm != (bn is not None):
            raise self.file.error(
                f"{self._what(name)} is {'' if has_norm else 'not '}followed by batch norm, the "
                f"file's {kernel!r} is {'not ' if has_norm else ''}: batch_norm={not has_norm}?")
        if has_norm:
            gamma, beta, mean, variance = (self.file.take(k, (filters,), self._what(norm))
                                           for k in bn)
            if b is not None:
                mean = mean - b
            self._set(norm, [gamma, beta, mean, variance])
        elif b is not None and not layer.use_bias:
            raise self.file.error(f"tensor {bias!r}: {self._what(name)} has no bias")

    def dense(self, name, kernel, bias, flattened_nchw=False, head=False):
        """Dense layer `name`.

        Args:
            kernel, bias: the file's tensor names (None for a head the file
                does not have, such as keras.applications' "notop" files).
            flattened_nchw: the layer follows a flatten whose PyTorch input was
                NCHW (its rows are reordered to the zoo's NHWC flatten).
            head: the classifier: a file with another number of classes leaves
                it at its initialization (the transfer case).
        """
        layer = self.model.get_layer(name)
        inputs, units = tuple(layer.kernel.shape)
        shape = (units, inputs) if self.torch else (inputs, units)
        if head and kernel is None:
            self.new[name] = "the file has no classifier"
            return
        if head and kernel in self.file:
            found = tuple(self.file.arrays[kernel].shape)
            classes = found[0 if self.torch else -1] if len(found) == 2 else None
            if len(found) == 2 and classes != units and found[1 if self.torch else 0] == inputs:
                self.file.skip(kernel, bias)
                self.new[name] = f"the file's classifier has {classes} classes, the model {units}"
                return
        w = self.file.take(kernel, shape, self._what(name))
        b = self.file.take(bias, (units,), self._what(name))
        if self.torch and flattened_nchw:
            height, width, channels = self.model.get_layer("flatten").input.shape[1:]
            w = w.reshape(units, channels, height, width).transpose(2, 3, 1, 0)
            w = w.reshape(inputs, units)
        elif self.torch:
            w = w.T
        self._set(name, [w, b])

    def finish(self, ignore=(), may_stay_new=()):
        """Checks that every tensor was used (but `ignore`d prefixes and
        suffixes) and every layer with weights loaded (but those named with a
        prefix in `may_stay_new`, such as auxiliary heads); returns the
        {layer: reason} of the layers left at their initialization."""
        leftover = self.file.leftover(ignore)
        if leftover:
            shown = ", ".join(repr(k) for k in leftover[:4])
            raise self.file.error(f"{len(leftover)} tensors {self.model.name} does not use, such "
                                  f"as {shown}: the weights of another (larger) architecture?")
        for layer in self.model.layers:
            if not layer.weights or layer.name in self.loaded or layer.name in self.new:
                continue
            if any(layer.name.startswith(p) for p in may_stay_new):
                self.new[layer.name] = "not in the weights"
            else:
                raise self.file.error(f"{self._what(layer.name)} has no tensor in the file: an "
                                      "option the weights' architecture does not have?")
        return self.new

