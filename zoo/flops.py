"""Counting the multiply-adds of a model, the "FLOPs" of the CNN papers
(He et al. 2015 give ResNet-50 3.8 billion "FLOPs (multiply-adds)")."""

import math

import keras

from zoo.layers import Maxout


def count_macs(model):
    """Multiply-adds of one forward pass at the model's input shape, batch 1.

    Counts convolutions, dense layers and maxout units, which dominate; layers
    named `aux*` (GoogLeNet's training-only classifiers) are left out.
    """
    total = 0
    for layer in model.layers:
        if layer.name.startswith("aux"):
            continue
        if isinstance(layer, keras.layers.Conv2D):
            out_h, out_w, out_c = layer.output.shape[1:]
            k_h, k_w = layer.kernel_size
            in_c = layer.input.shape[-1] // layer.groups
            total += out_h * out_w * out_c * k_h * k_w * in_c
        elif isinstance(layer, (keras.layers.Dense, Maxout)):
            positions = math.prod(layer.output.shape[1:-1])
            total += positions * math.prod(layer.kernel.shape)
    return total
