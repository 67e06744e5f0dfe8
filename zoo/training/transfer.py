"""Transfer learning: a new head on a trained zoo model, a frozen backbone, and
optional fine-tuning of the top blocks at a lower learning rate.

CS231n's transfer-learning advice (after Yosinski et al., "How transferable are
features in deep neural networks?", 2014):

| | similar data | different data |
| --- | --- | --- |
| little data | train the head only | train the head (features from earlier layers may do better) |
| lots of data | fine-tune the top blocks | fine-tune more, or all, of the network |

BatchNorm layers stay frozen, in inference mode, throughout (their moving
statistics were learned on far more data than a small fine-tuning set; Keras
runs a BatchNormalization layer with `trainable=False` in inference mode).
"""

import re

import keras
import numpy as np

from zoo import resolve
from zoo.base import output_dtype
from zoo.contract import Classifier, contract_of
from zoo.training import optim

HEAD = "predictions"


def block_of(layer_name):
    """The block a layer belongs to: `stage2_block1` for `stage2_block1_conv1_bn`,
    `block3` for VGG's `block3_conv2`, `inception_4a`, `conv1`, `fc6`, `c3`, ..."""
    parts = layer_name.split("_")
    if (re.fullmatch(r"stage\d+", parts[0]) or parts[0] == "inception") and len(parts) > 1:
        return "_".join(parts[:2])
    return parts[0]


def backbone_blocks(model):
    """The blocks of the layers with weights (head excluded), input to output."""
    blocks = []
    for layer in model.layers:
        if layer.weights and layer.name != HEAD:
            block = block_of(layer.name)
            if block not in blocks:
                blocks.append(block)
    return blocks


def replace_head(model, num_classes, head_name=HEAD, seed=None):
    """A new model: `model`'s layers up to its classifier, then a fresh softmax
    Dense classifier of `num_classes` units named `predictions`.

    Auxiliary heads (GoogLeNet) are dropped. The layers are shared with `model`
    (`finetune` works on a copy).
    """
    resolve.check_positive_int("num_classes", num_classes)
    try:
        features = model.get_layer(head_name).input
    except ValueError:
        raise ValueError(f"head_name={head_name!r} is not accepted; expected the name of the "
                         "model's classifier layer (zoo models: 'predictions')") from None
    init = keras.initializers.GlorotUniform(seed=seed)
    outputs = keras.layers.Dense(num_classes, activation="softmax", name=HEAD,
                                 kernel_initializer=init, dtype=output_dtype())(features)
    return keras.Model(model.inputs, outputs, name=f"{model.name}_transfer")


def freeze(model, unfreeze="none"):
    """Freezes the backbone and leaves the head trainable.

    Args:
        model: a model from `replace_head`.
        unfreeze: "none" (head only), an int k (also the top k blocks of
            `backbone_blocks`), or "all". BatchNorm layers stay frozen.

    Returns:
        The names of the trainable blocks besides the head.
    """
    blocks = backbone_blocks(model)
    if unfreeze == "all":
        open_blocks = set(blocks)
    elif unfreeze in ("none", 0, None):
        open_blocks = set()
    elif isinstance(unfreeze, int) and not isinstance(unfreeze, bool) and unfreeze > 0:
        open_blocks = set(blocks[-unfreeze:])
    else:
        raise resolve.bad_option("unfreeze", unfreeze, "'none', 'all' or an integer k >= 1 "
                                 f"(top k of {len(blocks)} blocks)")
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False
        elif layer.name == HEAD:
            layer.trainable = True
        else:
            layer.trainable = block_of(layer.name) in open_blocks
    return [b for b in blocks if b in open_blocks]


def parse_unfreeze(text):
    """`--unfreeze` values: none, all, or a number of top blocks."""
    text = str(text).strip().lower()
    if text in ("none", "all"):
        return text
    if text.isdigit():
        return int(text) or "none"
    raise ValueError(f"unfreeze={text!r} is not accepted; expected none, all or a number of "
                     "top blocks such as 2")


def finetune(model, x, y, x_test=None, y_test=None, num_classes=None, head_epochs=10,
             finetune_epochs=0, unfreeze="none", lr=1e-3, finetune_lr=1e-4, batch_size=32,
             optimizer="adam", seed=0, verbose=0, contract=None):
    """Replaces the head, trains it on a frozen backbone, then optionally
    fine-tunes the top blocks at `finetune_lr`.

    Args:
        model: a trained model (its classifier layer named `predictions`): a
            `zoo.contract.Classifier` taking raw images, or a bare network.
        x, y: training images (raw for a Classifier, else normalized as the
            source model's) and one-hot labels.
        x_test, y_test: optional evaluation split.
        num_classes: new number of classes (default: y's width).
        head_epochs: epochs of head-only training.
        finetune_epochs: epochs with `unfreeze` blocks trainable (0: none).
        unfreeze: see `freeze`; used in the second phase.
        lr, finetune_lr: learning rates of the two phases (Adam by default).
        batch_size, optimizer, seed, verbose: as for `fit`.
        contract: the new model's `InputContract` (a Classifier's source
            keeps its normalization and fit rule; default: the source's, for
            images the size of `x`, without class names).

    Returns:
        (the new model, dict with per-phase histories and test accuracy); the
        given model is left unchanged.
    """
    keras.utils.set_random_seed(seed)
    source = contract_of(model)
    network = model.network if isinstance(model, Classifier) else model
    copy = keras.models.clone_model(network)  # `model` itself stays untouched
    copy.set_weights(network.get_weights())
    head = replace_head(copy, num_classes or y.shape[-1], seed=seed)
    freeze(head, "none")
    new = head
    if source is not None:
        contract = contract or source.replace(image_shape=tuple(x.shape[1:]), class_names=None)
        new = Classifier(head, contract, name=head.name)

    def compile_(rate):
        new.compile(optimizer=optim.optimizer_by_name(optimizer, rate),
                    loss="categorical_crossentropy", metrics=["accuracy"])

    report = {"trainable_params_head": _trainable_count(new)}
    compile_(lr)
    hist = new.fit(x, y, batch_size=batch_size, epochs=head_epochs, verbose=verbose)
    report["head_history"] = {k: [float(v) for v in vals] for k, vals in hist.history.items()}
    if finetune_epochs:
        report["unfrozen_blocks"] = freeze(head, unfreeze)
        report["trainable_params_finetune"] = _trainable_count(new)
        compile_(finetune_lr)
        hist = new.fit(x, y, batch_size=batch_size, epochs=finetune_epochs, verbose=verbose)
        report["finetune_history"] = {k: [float(v) for v in vals]
                                      for k, vals in hist.history.items()}
    if x_test is not None:
        loss, acc = new.evaluate(x_test, y_test, batch_size=256, verbose=0)
        report.update(test_loss=float(loss), test_accuracy=float(acc))
    return new, report


def _trainable_count(model):
    return int(sum(np.prod(v.shape) for v in model.trainable_weights))
