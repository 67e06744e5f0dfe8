"""VGG: Simonyan & Zisserman 2014, "Very Deep Convolutional Networks for
Large-Scale Image Recognition".

Stacks of 3x3 'same' convolutions, each stage closed by a 2x2/2 max pool;
configurations A (vgg11), B (vgg13), D (vgg16) and E (vgg19). The ImageNet head
is two 4096-unit FC layers with dropout 0.5; the CIFAR-scale variants keep the
convolutional stack and use one 512-unit FC layer, as is usual at 32x32.
Batch norm (on by default) follows every convolution, as in torchvision's
`vgg*_bn`. `adaptive_pool=7` average-pools the last feature map to 7x7 before
the head, as torchvision's VGG does, so the head takes any input size.
"""

import keras

from zoo import resolve
from zoo.base import ZooModel, common_arguments, register_serializable, split_options
from zoo.layers import AdaptiveAveragePooling
from zoo.registry import register_family, register_model, register_variant

CONVS_PER_STAGE = {11: (1, 1, 2, 2, 2), 13: (2, 2, 2, 2, 2), 16: (2, 2, 3, 3, 3), 19: (2, 2, 4, 4,
                                                                                       4)}
WIDTHS = (64, 128, 256, 512, 512)
IMAGENET_HEAD = (4096, 4096)
CIFAR_HEAD = (512,)


@register_serializable
class VGG(ZooModel):
    """VGG.

    Args:
        num_classes: output classes.
        input_shape: (height, width, channels), at least 2**stages on a side.
        convs_per_stage: 3x3 convolutions in each stage.
        widths: channels of each stage.
        head: widths of the hidden FC layers (empty for a linear classifier).
        adaptive_pool: None, or N: average-pool the last feature map to N x N
            before the head (torchvision's `AdaptiveAvgPool2d`, N = 7).
        dropout: on the output of each hidden FC layer (0.5 in the paper).
        **options: the shared options (see `zoo.base.LayerBuilder`).
    """

    def __init__(self, num_classes=1000, input_shape=(224, 224, 3),
                 convs_per_stage=CONVS_PER_STAGE[16], widths=WIDTHS, head=IMAGENET_HEAD,
                 adaptive_pool=None, dropout=0.5, name="vgg16", **options):
        convs_per_stage = resolve.check_int_list("convs_per_stage", convs_per_stage)
        widths = resolve.check_int_list("widths", widths)
        if len(widths) != len(convs_per_stage):
            raise resolve.bad_option("widths", widths,
                                     f"{len(convs_per_stage)} values, one per stage")
        head = resolve.check_int_list("head", head) if head else []  # empty: linear classifier
        if adaptive_pool is not None:
            resolve.check_positive_int("adaptive_pool", adaptive_pool)
        b, keras_kwargs = split_options({"dropout": dropout, **options})
        shape = common_arguments(num_classes, input_shape, 2 ** len(convs_per_stage), name)

        inputs = keras.Input(shape)
        x = inputs
        for stage, (convs, width) in enumerate(zip(convs_per_stage, widths), start=1):
            for i in range(1, convs + 1):
                x = b.conv_norm_act(x, width, 3, f"block{stage}_conv{i}")
            x = keras.layers.MaxPooling2D(2, name=f"block{stage}_pool")(x)
        if adaptive_pool:
            x = AdaptiveAveragePooling(adaptive_pool, name="adaptive_pool")(x)
        x = keras.layers.Flatten(name="flatten")(x)
        for i, units in enumerate(head, start=1):
            x = b.hidden_dense(x, units, f"fc{i}")
        outputs = b.classifier(x, num_classes)

        config = {
            "num_classes": num_classes, "input_shape": list(shape),
            "convs_per_stage": convs_per_stage, "widths": widths, "head": head,
            "adaptive_pool": adaptive_pool, **b.config(),
        }
        self._finish(inputs, outputs, name, config, keras_kwargs)


for _depth, _convs in CONVS_PER_STAGE.items():
    register_variant(f"vgg{_depth}", VGG, f"VGG-{_depth}, ImageNet (224x224).",
                     convs_per_stage=_convs)
    register_variant(f"vgg{_depth}_cifar", VGG, f"VGG-{_depth}, CIFAR scale (32x32).",
                     convs_per_stage=_convs, head=CIFAR_HEAD, input_shape=(32, 32, 3),
                     num_classes=10)


@register_model
def test_vgg(**kwargs):
    """A tiny VGG-shaped network for fast tests."""
    return VGG(**{
        "name": "test_vgg", "convs_per_stage": (1, 2), "widths": (4, 8), "head": (16,),
        "input_shape": (16, 16, 1), "num_classes": 10, **kwargs,
    })


# === Recipe and search space (plain data for zoo.cli and zoo.search) ===

# Simonyan & Zisserman 2014: SGD momentum 0.9, batch 256, lr 0.01 divided by 10
# three times, weight decay 5e-4 (l2 = 2.5e-4 here), dropout 0.5, 74 epochs.
RECIPE = dict(model="vgg16_cifar", dataset="cifar10", epochs=74, batch_size=256,
              optimizer="momentum", lr=0.01, schedule="step", lr_milestones=(30, 50, 65),
              l2=2.5e-4, augment="standard", train_transform="vgg", eval_transform="center")
SEARCH_SPACE = {
    "full": {"depth": [11, 13, 16, 19], "width": [0.25, 0.5, 1.0], "head_units": [256, 512]},
    "tiny": {"depth": [4, 5], "width": [0.5, 1.0], "head_units": [8, 16]},
}
SEARCH_WIDTHS = {"full": (64, 128, 256, 512, 512), "tiny": (4, 8)}
TINY_CONVS = {4: (1, 1), 5: (1, 2)}  # test_vgg: 2 stages + head + classifier


def search_model(scale, values):
    """vggD_cifar (test_vgg with 4 or 5 layers when tiny), widths and head sampled."""
    widths = [max(1, int(round(c * values["width"]))) for c in SEARCH_WIDTHS[scale]]
    if scale == "full":
        return f"vgg{values['depth']}_cifar", {"widths": widths, "head": [values["head_units"]]}
    return "test_vgg", {"convs_per_stage": TINY_CONVS[values["depth"]], "widths": widths,
                        "head": [values["head_units"]]}


register_family("vgg", RECIPE, SEARCH_SPACE, search_model, paper="Simonyan & Zisserman 2014")
