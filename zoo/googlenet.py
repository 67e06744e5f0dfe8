"""GoogLeNet (Inception v1): Szegedy et al. 2014, "Going Deeper with Convolutions".

Each Inception module has four branches concatenated on channels: a 1x1
convolution; a 1x1 reduction then a 3x3; a 1x1 reduction then a real 5x5; and a
3x3/1 max pool followed by a 1x1 pool projection (Table 1 of the paper gives
the widths below). Two auxiliary classifiers (5x5/3 average pool, 1x1 conv
128, FC 1024, dropout 0.7) sit on inception 4a and 4d; their losses count
with weight 0.3 in training only, and inference returns the main output alone.
The CIFAR geometry (as in common CIFAR reimplementations) replaces the stem by
a 3x3 convolution with 192 channels and keeps the modules, downsampling twice.

torchvision's GoogLeNet is TF-slim's Inception v1: batch norm (epsilon 1e-3),
a 3x3 convolution in the "5x5" branch (`branch5_kernel=3`; the layers keep
their `_5x5` names), a 2x2 max pool before inception 5a (`pool_4e_size=2`),
and with `padding="symmetric"` PyTorch's arithmetic: conv1 pads 3 on every side
and the stride-2 pools round their output size up (`ceil_mode`).
"""

import keras
from keras import layers

from zoo import resolve
from zoo.base import (
    ZooModel,
    auxiliary_loss,
    common_arguments,
    register_serializable,
    split_options,
)
from zoo.layers import LocalResponseNormalization
from zoo.registry import register_family, register_model

# name: (1x1, 3x3 reduce, 3x3, 5x5 reduce, 5x5, pool projection), Table 1.
MODULES = {
    "3a": (64, 96, 128, 16, 32, 32),
    "3b": (128, 128, 192, 32, 96, 64),
    "4a": (192, 96, 208, 16, 48, 64),
    "4b": (160, 112, 224, 24, 64, 64),
    "4c": (128, 128, 256, 24, 64, 64),
    "4d": (112, 144, 288, 32, 64, 64),
    "4e": (256, 160, 320, 32, 128, 128),
    "5a": (256, 160, 320, 32, 128, 128),
    "5b": (384, 192, 384, 48, 128, 128),
}
POOL_AFTER = ("3b", "4e")  # a 3x3/2 max pool closes stages 3 and 4
AUX_AFTER = ("4a", "4d")
AUX_POOL, AUX_STRIDE, AUX_CONV, AUX_UNITS, AUX_DROPOUT = 5, 3, 128, 1024, 0.7
STEM_STRIDES = {"imagenet": 8, "cifar": 1}  # downsampling before inception 3a


def scaled(channels, width_scale):
    return max(1, int(round(channels * width_scale)))


def inception_module(b, x, widths, name, width_scale=1.0, branch5_kernel=5):
    """One Inception module with 1x1 reductions before the 3x3 and 5x5 branches."""
    c1, c3r, c3, c5r, c5, pp = [scaled(w, width_scale) for w in widths]
    branch1 = b.conv_norm_act(x, c1, 1, f"{name}_1x1")
    branch3 = b.conv_norm_act(x, c3r, 1, f"{name}_3x3_reduce")
    branch3 = b.conv_norm_act(branch3, c3, 3, f"{name}_3x3")
    branch5 = b.conv_norm_act(x, c5r, 1, f"{name}_5x5_reduce")
    branch5 = b.conv_norm_act(branch5, c5, branch5_kernel, f"{name}_5x5")
    branch_pool = layers.MaxPooling2D(3, 1, padding="same", name=f"{name}_pool")(x)
    branch_pool = b.conv_norm_act(branch_pool, pp, 1, f"{name}_pool_proj")
    return layers.Concatenate(name=f"{name}_concat")([branch1, branch3, branch5, branch_pool])


def auxiliary_head(b, x, num_classes, name, width_scale=1.0):
    x = layers.AveragePooling2D(AUX_POOL, AUX_STRIDE, name=f"{name}_pool")(x)
    x = b.conv_norm_act(x, scaled(AUX_CONV, width_scale), 1, f"{name}_conv")
    x = layers.Flatten(name=f"{name}_flatten")(x)
    x = b.dense(x, scaled(AUX_UNITS, width_scale), f"{name}_fc")
    x = b.act(x, f"{name}_fc_act")
    x = b.dropout_layer(x, f"{name}_dropout", rate=AUX_DROPOUT)
    return b.classifier(x, num_classes, name=f"{name}_predictions")


@register_serializable
class GoogLeNet(ZooModel):
    """GoogLeNet / Inception v1.

    Args:
        num_classes: output classes.
        input_shape: (height, width, channels); at least 32 (ImageNet stem) or
            4 (CIFAR stem) on a side, 80 or 10 with auxiliary classifiers.
        stem: "imagenet" (7x7/2 conv, pools, 3x3 conv) or "cifar" (3x3 conv 192).
        aux_logits: add the two auxiliary classifiers (training only).
        aux_weight: weight of each auxiliary loss (0.3 in the paper).
        lrn: local response normalization in the ImageNet stem, as in the paper.
        width_scale: multiplies every channel count (1.0 is the paper).
        branch5_kernel: kernel of the "5x5" branch: 5 (the paper) or 3
            (TF-slim's Inception v1, torchvision's GoogLeNet).
        pool_4e_size: the max pool before inception 5a: 3 (the paper) or 2
            (TF-slim, torchvision).
        dropout: before the classifier (0.4 in the paper).
        **options: the shared options (see `zoo.base.LayerBuilder`).
    """

    def __init__(self, num_classes=1000, input_shape=(224, 224, 3), stem="imagenet",
                 aux_logits=True, aux_weight=0.3, lrn=False, width_scale=1.0, branch5_kernel=5,
                 pool_4e_size=3, dropout=0.4, name="googlenet", **options):
        resolve.check_choice("stem", stem, tuple(STEM_STRIDES))
        if isinstance(width_scale, bool) or not isinstance(width_scale, (int, float)) \
                or width_scale <= 0:
            raise resolve.bad_option("width_scale", width_scale, "a number > 0")
        if isinstance(aux_weight, bool) or not isinstance(aux_weight, (int,
                                                                       float)) or aux_weight < 0:
            raise resolve.bad_option("aux_weight", aux_weight, "a number >= 0")
        resolve.check_choice("branch5_kernel", branch5_kernel, (5, 3))
        resolve.check_choice("pool_4e_size", pool_4e_size, (3, 2))
        stride_at_4a = STEM_STRIDES[stem] * 2
        min_size = stride_at_4a * AUX_POOL if aux_logits else stride_at_4a * 2
        b, keras_kwargs = split_options({"dropout": dropout, **options})
        shape = common_arguments(num_classes, input_shape, min_size, name)

        def width(channels):
            return scaled(channels, width_scale)

        inputs = keras.Input(shape)
        if stem == "imagenet":
            x = b.conv_norm_act(inputs, width(64), 7, "conv1", strides=2)
            x = b.max_pool(x, 3, 2, "pool1", ceil_mode=True)
            if lrn:
                x = LocalResponseNormalization(name="pool1_lrn")(x)
            x = b.conv_norm_act(x, width(64), 1, "conv2_reduce")
            x = b.conv_norm_act(x, width(192), 3, "conv2")
            if lrn:
                x = LocalResponseNormalization(name="conv2_lrn")(x)
            x = b.max_pool(x, 3, 2, "pool2", ceil_mode=True)
        else:
            x = b.conv_norm_act(inputs, width(192), 3, "conv1")
        aux_outputs = []
        for module, widths in MODULES.items():
            x = inception_module(b, x, widths, f"inception_{module}", width_scale, branch5_kernel)
            if aux_logits and module in AUX_AFTER:
                aux_outputs.append(auxiliary_head(
                    b, x, num_classes, f"aux{len(aux_outputs) + 1}", width_scale
                ))
            if module in POOL_AFTER:
                size = pool_4e_size if module == "4e" else 3
                x = b.max_pool(x, size, 2, f"pool_{module}", ceil_mode=True)
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
        x = b.dropout_layer(x, "dropout")
        outputs = b.classifier(x, num_classes)

        config = {
            "num_classes": num_classes, "input_shape": list(shape), "stem": stem,
            "aux_logits": aux_logits, "aux_weight": float(aux_weight), "lrn": lrn,
            "width_scale": float(width_scale), "branch5_kernel": branch5_kernel,
            "pool_4e_size": pool_4e_size, **b.config(),
        }
        self._finish(inputs, [outputs] + aux_outputs if aux_outputs else outputs, name, config,
                     keras_kwargs)
        self.aux_logits = bool(aux_outputs)
        self.aux_weight = float(aux_weight)

    # The auxiliary outputs exist only while training: inference (predict,
    # evaluate, calling the model, symbolic calls) sees the main output alone.
    def call(self, inputs, training=None, mask=None):
        outputs = super().call(inputs, training=training, mask=mask)
        return outputs if (self.aux_logits and training) else self._main(outputs)

    def compute_output_spec(self, inputs, training=None, mask=None):
        outputs = super().compute_output_spec(inputs, training=training, mask=mask)
        return outputs if (self.aux_logits and training) else self._main(outputs)

    def _main(self, outputs):
        return outputs[0] if self.aux_logits else outputs

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        if not isinstance(y_pred, (list, tuple)):
            return super().compute_loss(x, y, y_pred, sample_weight, training)
        main, *aux = y_pred
        loss = super().compute_loss(x, y, main, sample_weight, training)
        for aux_pred in aux:
            loss = loss + self.aux_weight * auxiliary_loss(self.loss, y, aux_pred, sample_weight)
        return loss

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        if isinstance(y_pred, (list, tuple)):
            y_pred = y_pred[0]
        return super().compute_metrics(x, y, y_pred, sample_weight)


@register_model
def googlenet(**kwargs):
    """GoogLeNet (Inception v1), ImageNet geometry, with auxiliary classifiers."""
    return GoogLeNet(**{"name": "googlenet", **kwargs})


@register_model
def googlenet_cifar(**kwargs):
    """GoogLeNet for 32x32 images (3x3 stem), no auxiliary classifiers by default."""
    return GoogLeNet(**{
        "name": "googlenet_cifar", "stem": "cifar", "aux_logits": False,
        "input_shape": (32, 32, 3), "num_classes": 10, **kwargs,
    })


@register_model
def test_googlenet(**kwargs):
    """A tiny GoogLeNet (CIFAR stem, channels / 32) with auxiliary heads, for fast tests."""
    return GoogLeNet(**{
        "name": "test_googlenet", "stem": "cifar", "aux_logits": True, "width_scale": 1 / 32,
        "input_shape": (16, 16, 1), "num_classes": 10, **kwargs,
    })


# === Recipe and search space (plain data for zoo.cli and zoo.search) ===

# Szegedy et al. 2014: SGD momentum 0.9, lr decreased by 4% every 8 epochs;
# the paper gives no weight decay (l2 1e-4 here), dropout 0.4.
RECIPE = dict(model="googlenet_cifar", dataset="cifar10", epochs=100, batch_size=128,
              optimizer="momentum", lr=0.01, schedule="exponential", lr_gamma=0.96,
              lr_decay_epochs=8, l2=1e-4, augment="standard", train_transform="inception",
              eval_transform="center")
SEARCH_SPACE = {
    "full": {"width": [0.25, 0.5, 1.0], "aux_logits": [True, False]},
    "tiny": {"width": [0.03125, 0.0625], "aux_logits": [True, False]},
}


def search_model(scale, values):
    """googlenet_cifar (test_googlenet when tiny) with the sampled width and aux heads."""
    return ("googlenet_cifar" if scale == "full" else "test_googlenet"), {
        "width_scale": values["width"], "aux_logits": values["aux_logits"]}


register_family("googlenet", RECIPE, SEARCH_SPACE, search_model, paper="Szegedy et al. 2014")
