"""ResNet: He, Zhang, Ren & Sun 2015, "Deep Residual Learning for Image
Recognition"; pre-activation blocks from He et al. 2016, "Identity Mappings in
Deep Residual Networks".

Basic blocks (two 3x3 convolutions) and bottleneck blocks (1x1, 3x3, 1x1 with
4x expansion, stride on the 3x3 as in torchvision, or on the first 1x1 as in
the paper with `stride_in_1x1=True`). A 1x1 projection shortcut
where the shape changes (option B of the paper). ImageNet geometry: 7x7/2 stem
and 3x3/2 max pool, four stages. CIFAR geometry (section 4.2): 3x3 stem with
16 channels, three stages of 16/32/64, depth 6n+2 (basic) or 9n+2 (bottleneck).

Training tricks:
- `zero_init_residual` starts the last BN gamma of each residual branch at 0
  (Goyal et al. 2017), or the last convolution when the branch has no BN after it.
- `stochastic_depth` drops whole residual branches per sample with a rate that
  grows linearly with depth up to the given value (Huang et al. 2016).
"""

import keras
from keras import layers

from zoo import resolve
from zoo.base import ZooModel, common_arguments, register_serializable, split_options
from zoo.layers import StochasticDepth
from zoo.registry import register_family, register_variant

EXPANSION = {"basic": 1, "bottleneck": 4}


def residual_block(b, x, width, stride, name, block, preact, zero_init, drop_rate,
                   stride_in_1x1=False):
    """One residual block; returns its output tensor."""
    out_channels = width * EXPANSION[block]
    needs_projection = stride != 1 or x.shape[-1] != out_channels
    last_conv_zero = zero_init and (preact or not b.batch_norm)

    if preact:
        y = b.act(b.norm(x, f"{name}_preact_bn"), f"{name}_preact_act")
        shortcut_source = y  # projection from the pre-activated input (He et al. 2016)
    else:
        y = shortcut_source = x

    def conv_then_norm_act(t, filters, kernel, suffix, strides=1):
        t = b.conv(t, filters, kernel, f"{name}_{suffix}", strides=strides)
        return b.act(b.norm(t, f"{name}_{suffix}_bn"), f"{name}_{suffix}_act")

    if block == "basic":
        y = conv_then_norm_act(y, width, 3, "conv1", strides=stride)
        y = b.conv(y, out_channels, 3, f"{name}_conv2", zero_init=last_conv_zero)
        last = "conv2"
    else:
        y = conv_then_norm_act(y, width, 1, "conv1", strides=stride if stride_in_1x1 else 1)
        y = conv_then_norm_act(y, width, 3, "conv2", strides=1 if stride_in_1x1 else stride)
        y = b.conv(y, out_channels, 1, f"{name}_conv3", zero_init=last_conv_zero)
        last = "conv3"
    if not preact:
        y = b.norm(y, f"{name}_{last}_bn", zero_init=zero_init)
    if drop_rate > 0:
        y = StochasticDepth(drop_rate, name=f"{name}_drop_path")(y)

    if needs_projection:
        shortcut = b.conv(shortcut_source, out_channels, 1, f"{name}_proj", strides=stride)
        if not preact:
            shortcut = b.norm(shortcut, f"{name}_proj_bn")
    else:
        shortcut = x
    out = layers.Add(name=f"{name}_add")([shortcut, y])
    return out if preact else b.act(out, f"{name}_out_act")


@register_serializable
class ResNet(ZooModel):
    """ResNet with basic or bottleneck blocks, post- or pre-activation.

    Args:
        num_classes: output classes.
        input_shape: (height, width, channels); at least 32 (ImageNet stem) or
            2**(stages - 1) (CIFAR stem) on a side.
        block: "basic" or "bottleneck".
        depths: blocks per stage.
        widths: base channels per stage (bottlenecks output 4x this).
        stem: "imagenet" (7x7/2 conv + 3x3/2 max pool) or "cifar" (3x3 conv).
        preact: pre-activation blocks (BN -> act -> conv), He et al. 2016.
        stride_in_1x1: bottlenecks downsample in their first 1x1 convolution, as
            in the paper and keras.applications (v1), instead of the 3x3 (v1.5,
            torchvision's default: more accurate, 6% more multiply-adds).
        zero_init_residual: start each residual branch at zero.
        stochastic_depth: drop rate of the deepest block, in [0, 1).
        dropout: before the classifier.
        **options: the shared options (see `zoo.base.LayerBuilder`).
    """

    def __init__(self, num_classes=1000, input_shape=(224, 224, 3), block="basic",
                 depths=(2, 2, 2, 2), widths=(64, 128, 256, 512), stem="imagenet", preact=False,
                 stride_in_1x1=False, zero_init_residual=False, stochastic_depth=0.0, dropout=0.0,
                 name="resnet18",
                 **options):
        resolve.check_choice("block", block, tuple(EXPANSION))
        resolve.check_choice("stem", stem, ("imagenet", "cifar"))
        depths = resolve.check_int_list("depths", depths)
        widths = resolve.check_int_list("widths", widths)
        if not depths or len(widths) != len(depths):
            raise resolve.bad_option("widths", widths, f"{len(depths)} values, one per stage")
        stochastic_depth = resolve.check_rate("stochastic_depth", stochastic_depth)
        stem_stride = 4 if stem == "imagenet" else 1
        b, keras_kwargs = split_options({"dropout": dropout, **options})
        shape = common_arguments(num_classes, input_shape, stem_stride * 2 ** (len(depths) - 1),
                                 name)

        inputs = keras.Input(shape)
        if stem == "imagenet":
            x = b.conv_norm_act(inputs, widths[0], 7, "conv1", strides=2)
            x = b.max_pool(x, 3, 2, "pool1")
        elif preact:
            x = b.conv(inputs, widths[0], 3, "conv1")
        else:
            x = b.conv_norm_act(inputs, widths[0], 3, "conv1")

        total_blocks, index = sum(depths), 0
        for stage, (depth, width) in enumerate(zip(depths, widths), start=1):
            for j in range(1, depth + 1):
                index += 1
                x = residual_block(
                    b, x, width, stride=2 if (stage > 1 and j == 1) else 1,
                    name=f"stage{stage}_block{j}", block=block, preact=preact,
                    zero_init=zero_init_residual,
                    drop_rate=stochastic_depth * index / total_blocks,
                    stride_in_1x1=bool(stride_in_1x1),
                )
        if preact:
            x = b.act(b.norm(x, "post_bn"), "post_act")
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
        x = b.dropout_layer(x, "dropout")
        outputs = b.classifier(x, num_classes)

        config = {
            "num_classes": num_classes, "input_shape": list(shape), "block": block,
            "depths": depths, "widths": widths, "stem": stem, "preact": preact,
            "stride_in_1x1": bool(stride_in_1x1),
            "zero_init_residual": zero_init_residual, "stochastic_depth": stochastic_depth,
            **b.config(),
        }
        self._finish(inputs, outputs, name, config, keras_kwargs)


IMAGENET = {
    "resnet18": ("basic", (2, 2, 2, 2)),
    "resnet34": ("basic", (3, 4, 6, 3)),
    "resnet50": ("bottleneck", (3, 4, 6, 3)),
    "resnet101": ("bottleneck", (3, 4, 23, 3)),
    "resnet152": ("bottleneck", (3, 8, 36, 3)),
}
CIFAR = {  # depth 6n+2 with basic blocks; 9n+2 with bottlenecks
    "resnet20": ("basic", 3),
    "resnet32": ("basic", 5),
    "resnet44": ("basic", 7),
    "resnet56": ("basic", 9),
    "resnet110": ("basic", 18),
    "resnet164": ("bottleneck", 18),
}


for _name, (_block, _depths) in IMAGENET.items():
    register_variant(_name, ResNet, f"{_name}, ImageNet geometry.", block=_block, depths=_depths)
for _name, (_block, _n) in CIFAR.items():
    register_variant(
        _name, ResNet, f"{_name}, CIFAR geometry (He et al. 2015, section 4.2).",
        block=_block, depths=(_n,) * 3, widths=(16, 32, 64), stem="cifar",
        input_shape=(32, 32, 3), num_classes=10,
        preact=_name == "resnet164",  # He et al. 2016 report resnet164 pre-activated
    )
register_variant(
    "test_resnet", ResNet, "A tiny basic-block ResNet for fast tests.",
    block="basic", depths=(1, 1), widths=(4, 8), stem="cifar", input_shape=(16, 16, 1),
    num_classes=10,
)
register_variant(
    "test_resnet_bottleneck", ResNet, "A tiny pre-activation bottleneck ResNet for fast tests.",
    block="bottleneck", depths=(1, 1), widths=(2, 4), stem="cifar", preact=True,
    input_shape=(16, 16, 1), num_classes=10,
)


# === Recipe and search space (plain data for zoo.cli and zoo.search) ===

# He et al. 2015, section 4.2: SGD momentum 0.9, batch 128, lr 0.1 divided by 10
# at 32k and 48k iterations (epochs 82 and 123), 64k iterations, weight decay
# 1e-4 (l2 = 5e-5 here).
RECIPE = dict(model="resnet20", dataset="cifar10", epochs=164, batch_size=128,
              optimizer="momentum", lr=0.1, schedule="step", lr_milestones=(82, 123),
              l2=5e-5, augment="standard", train_transform="resnet", eval_transform="center")
SEARCH_SPACE = {
    "full": {"depth": [20, 32, 44, 56], "width": [0.5, 1.0, 2.0],
             "stochastic_depth": [0.0, 0.1, 0.2], "zero_init_residual": [True, False]},
    "tiny": {"depth": [6, 10], "width": [1.0, 2.0], "stochastic_depth": [0.0, 0.1],
             "zero_init_residual": [True, False]},
}
SEARCH_WIDTHS = {"full": (16, 32, 64), "tiny": (4, 8)}


def search_model(scale, values):
    """resnetD (depth 6n+2, three stages) or, tiny, test_resnet with depth 4n+2
    over its two stages; width, stochastic depth and zero-init sampled."""
    widths = SEARCH_WIDTHS[scale]
    options = {"widths": [max(1, int(round(c * values["width"]))) for c in widths],
               "stochastic_depth": values["stochastic_depth"],
               "zero_init_residual": values["zero_init_residual"]}
    if scale == "full":
        return f"resnet{values['depth']}", options
    n = (values["depth"] - 2) // (2 * len(widths))
    return "test_resnet", {**options, "depths": [n] * len(widths)}


register_family("resnet", RECIPE, SEARCH_SPACE, search_model, paper="He et al. 2015")
