"""torchvision state dicts written with numpy: the key names and shapes that
torchvision's model code gives (torchvision/models/{alexnet,vgg,googlenet,
resnet}.py, built the same way, written out independently of the converter),
with random values, for any width, so converter tests need neither PyTorch nor
full-size files. `test_pretrained.py` checks them against torchvision's own
`state_dict()` where torchvision imports.
"""

import numpy as np

VGG_CFGS = {11: [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
            13: [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
            16: [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512,
                 "M"],
            19: [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512,
                 512, 512, 512, "M"]}
# name: (in, 1x1, 3x3 reduce, 3x3, 5x5 reduce, 5x5, pool proj), torchvision's GoogLeNet
INCEPTION = {"3a": (192, 64, 96, 128, 16, 32, 32), "3b": (256, 128, 128, 192, 32, 96, 64),
             "4a": (480, 192, 96, 208, 16, 48, 64), "4b": (512, 160, 112, 224, 24, 64, 64),
             "4c": (512, 128, 128, 256, 24, 64, 64), "4d": (512, 112, 144, 288, 32, 64, 64),
             "4e": (528, 256, 160, 320, 32, 128, 128), "5a": (832, 256, 160, 320, 32, 128, 128),
             "5b": (832, 384, 192, 384, 48, 128, 128)}
RESNETS = {18: ("basic", (2, 2, 2, 2)), 34: ("basic", (3, 4, 6, 3)),
           50: ("bottleneck", (3, 4, 6, 3)), 101: ("bottleneck", (3, 4, 23, 3)),
           152: ("bottleneck", (3, 8, 36, 3))}


class StateDict(dict):
    """An ordered {name: float32 array} filled as torchvision's modules are
    (`values=False`: zero-cost placeholders, for comparing names and shapes)."""

    def __init__(self, seed=0, values=True):
        super().__init__()
        self.rng, self.random = np.random.default_rng(seed), values

    def _random(self, *shape, scale=0.1):
        if not self.random:
            return np.broadcast_to(np.float32(0), shape)
        return (self.rng.standard_normal(shape) * scale).astype(np.float32)

    def conv(self, prefix, out, inp, kernel, bias=True):
        fan_in = inp * kernel * kernel
        self[f"{prefix}.weight"] = self._random(out, inp, kernel, kernel, scale=fan_in ** -0.5)
        if bias:
            self[f"{prefix}.bias"] = self._random(out)

    def bn(self, prefix, channels):
        self[f"{prefix}.weight"] = 1 + self._random(channels, scale=0.2)
        self[f"{prefix}.bias"] = self._random(channels)
        self[f"{prefix}.running_mean"] = self._random(channels)
        self[f"{prefix}.running_var"] = 1 + np.abs(self._random(channels, scale=0.3))
        self[f"{prefix}.num_batches_tracked"] = np.array(0, np.int64)

    def linear(self, prefix, out, inp):
        self[f"{prefix}.weight"] = self._random(out, inp, scale=inp ** -0.5)
        self[f"{prefix}.bias"] = self._random(out)


def alexnet(filters=(64, 192, 384, 256, 256), hidden=4096, pool=6, classes=1000, seed=0,
            values=True):
    sd, inp = StateDict(seed, values), 3
    for index, out, kernel in zip((0, 3, 6, 8, 10), filters, (11, 5, 3, 3, 3)):
        sd.conv(f"features.{index}", out, inp, kernel)
        inp = out
    sd.linear("classifier.1", hidden, inp * pool * pool)
    sd.linear("classifier.4", hidden, hidden)
    sd.linear("classifier.6", classes, hidden)
    return sd


def vgg(depth=16, batch_norm=True, width=1.0, head=(4096, 4096), pool=7, classes=1000, seed=0,
        values=True):
    """torchvision's vgg{depth}[_bn]; `width` scales the channels, `head` the FC widths
    (torchvision's are 4096, 4096)."""
    sd, inp, index = StateDict(seed, values), 3, 0
    for v in VGG_CFGS[depth]:
        if v == "M":
            index += 1
            continue
        out = max(1, int(round(v * width)))
        sd.conv(f"features.{index}", out, inp, 3)
        if batch_norm:
            sd.bn(f"features.{index + 1}", out)
        index += 3 if batch_norm else 2
        inp = out
    inp *= pool * pool
    for i, units in enumerate(head):
        sd.linear(f"classifier.{3 * i}", units, inp)
        inp = units
    sd.linear(f"classifier.{3 * len(head)}", classes, inp)
    return sd


def googlenet(width=1.0, classes=1000, aux=False, seed=0, values=True):
    """torchvision's googlenet (BasicConv2d: conv without bias, BatchNorm);
    `width` scales every channel count as the zoo's `width_scale` does."""
    sd = StateDict(seed, values)

    def scaled(c):
        return max(1, int(round(c * width)))

    def basic(prefix, out, inp, kernel):
        sd.conv(f"{prefix}.conv", out, inp, kernel, bias=False)
        sd.bn(f"{prefix}.bn", out)

    basic("conv1", scaled(64), 3, 7)
    basic("conv2", scaled(64), scaled(64), 1)
    basic("conv3", scaled(192), scaled(64), 3)
    inp, aux_inputs = scaled(192), {}
    for name, (_, c1, c3r, c3, c5r, c5, pp) in INCEPTION.items():
        c1, c3r, c3, c5r, c5, pp = (scaled(c) for c in (c1, c3r, c3, c5r, c5, pp))
        prefix = f"inception{name}"
        basic(f"{prefix}.branch1", c1, inp, 1)
        basic(f"{prefix}.branch2.0", c3r, inp, 1)
        basic(f"{prefix}.branch2.1", c3, c3r, 3)
        basic(f"{prefix}.branch3.0", c5r, inp, 1)
        basic(f"{prefix}.branch3.1", c5, c5r, 3)
        basic(f"{prefix}.branch4.1", pp, inp, 1)
        inp = c1 + c3 + c5 + pp
        aux_inputs[name] = inp
    if aux:  # registered after the modules, before fc
        for head, after in (("aux1", "4a"), ("aux2", "4d")):
            basic(f"{head}.conv", 128, aux_inputs[after], 1)
            sd.linear(f"{head}.fc1", 1024, 2048)
            sd.linear(f"{head}.fc2", classes, 1024)
    sd.linear("fc", classes, inp)
    return sd


def resnet(depth=18, widths=(64, 128, 256, 512), classes=1000, seed=0, values=True):
    block, layers = RESNETS[depth]
    expansion = 4 if block == "bottleneck" else 1
    sd = StateDict(seed, values)
    sd.conv("conv1", widths[0], 3, 7, bias=False)
    sd.bn("bn1", widths[0])
    inplanes = widths[0]
    for stage, (blocks, width) in enumerate(zip(layers, widths), start=1):
        for j in range(blocks):
            prefix, stride = f"layer{stage}.{j}", 2 if stage > 1 and j == 0 else 1
            kernels = (3, 3) if block == "basic" else (1, 3, 1)
            outs = (width, width) if block == "basic" else (width, width, width * expansion)
            inp = inplanes
            for k, (kernel, out) in enumerate(zip(kernels, outs), start=1):
                sd.conv(f"{prefix}.conv{k}", out, inp, kernel, bias=False)
                sd.bn(f"{prefix}.bn{k}", out)
                inp = out
            if j == 0 and (stride != 1 or inplanes != width * expansion):
                sd.conv(f"{prefix}.downsample.0", width * expansion, inplanes, 1, bias=False)
                sd.bn(f"{prefix}.downsample.1", width * expansion)
            inplanes = width * expansion
    sd.linear("fc", classes, inplanes)
    return sd


def torchvision_model(name, values=True, **kwargs):
    """The state dict of torchvision's `name` (full size unless `kwargs` say)."""
    if name == "alexnet":
        return alexnet(values=values, **kwargs)
    if name.startswith("vgg"):
        return vgg(int(name[3:5]), batch_norm=name.endswith("_bn"), values=values, **kwargs)
    if name == "googlenet":
        return googlenet(values=values, **kwargs)
    return resnet(int(name[6:]), values=values, **kwargs)


def save_safetensors(state, path):
    from safetensors.numpy import save_file

    save_file(dict(state), str(path))
    return path


SMALL_RESNET18 = (4, 8, 8, 8)  # widths of a resnet18 whose weights file is 0.1 MB


def resnet18_file(path, widths=SMALL_RESNET18):
    """A torchvision-layout resnet18 .safetensors file (the `--weights` smoke tests)."""
    return save_safetensors(resnet(18, widths=widths), path)
