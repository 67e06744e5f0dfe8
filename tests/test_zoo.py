"""The model zoo: every registered model, the option matrix, the bad-input errors."""

import keras
import numpy as np
import pytest

import zoo
from zoo import resolve
from zoo.registry import register_model

# Smallest sensible inputs for the ImageNet-geometry models (the rest use their default).
SMALL_INPUT = {"alexnet": 64, "googlenet": 80}
NUM_CLASSES = 7
LARGE = 15_000_000  # parameters; see test_every_model_builds_trains_and_round_trips
DEEP = 300  # layers (resnet101/110/152/164): their blocks are resnet20/50's


def small_shape(name):
    if name.startswith("test_"):
        return None
    if name.startswith("lenet"):
        return (32, 32, 1)
    return (SMALL_INPUT.get(name, 32),) * 2 + (3,)


def batch_for(model, n=4, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n,) + tuple(model.input_shape[1:])).astype("float32")
    classes = model.get_config()["num_classes"]
    y = keras.utils.to_categorical(rng.integers(0, classes, n), classes)
    return x, y


def train_one_step(model, x, y):
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="categorical_crossentropy",
                  metrics=["accuracy"], run_eagerly=True)
    before = [v.numpy().copy() for v in model.trainable_variables]
    logs = model.train_on_batch(x, y, return_dict=True)
    after = [v.numpy() for v in model.trainable_variables]
    return before, after, logs


@pytest.mark.parametrize("name", zoo.list_models())
def test_every_model_builds_trains_and_round_trips(name, tmp_path):
    keras.utils.set_random_seed(0)
    model = zoo.create_model(name, num_classes=NUM_CLASSES, input_shape=small_shape(name))
    x, y = batch_for(model)
    probs = keras.ops.convert_to_numpy(model(x, training=False))
    assert probs.shape == (len(x), NUM_CLASSES)
    assert np.all(np.isfinite(probs))
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)

    if model.count_params() > LARGE or len(model.layers) > DEEP:
        # The big and the very deep nets share every code path with smaller ones;
        # their config round-trip is checked in memory (saving 60M parameters
        # and a training step would take minutes of the suite on 2 cores).
        clone = type(model).from_config(model.get_config())
        clone.set_weights(model.get_weights())
        assert clone.get_config() == model.get_config()
        np.testing.assert_allclose(keras.ops.convert_to_numpy(clone(x, training=False)), probs,
                                   atol=1e-6)
        return

    # .keras round-trip: the config goes through JSON and `from_config`, the
    # weights through the archive; both must come back unchanged.
    path = tmp_path / f"{name}.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert type(loaded) is type(model)
    assert loaded.get_config() == model.get_config()
    np.testing.assert_allclose(keras.ops.convert_to_numpy(loaded(x, training=False)), probs,
                               atol=1e-6)

    # One training step changes every trainable variable and gives a finite loss.
    before, after, logs = train_one_step(model, x, y)
    assert np.isfinite(logs["loss"])
    # A one-channel BN gamma feeding (through ReLU and a convolution) into the
    # next BN has a zero gradient at initialization (scale invariance: beta is 0);
    # test_googlenet's 1-channel 5x5 reductions are such: rounding decides.
    unchanged = [v.path for v, b, a in zip(model.trainable_variables, before, after)
                 if np.array_equal(b, a) and not (v.path.endswith("/gamma") and b.size == 1)]
    assert not unchanged, f"{name}: variables not updated by one step: {unchanged}"


# ---------------------------------------------------------------------------
# The option matrix on tiny variants.

TINY = ["test_resnet", "test_vgg", "test_resnet_bottleneck"]


@pytest.mark.parametrize("activation", list(resolve.ACTIVATIONS) + ["swish"])
@pytest.mark.parametrize("name", TINY)
def test_activations(name, activation):
    model = zoo.create_model(name, activation=activation)
    assert model.get_config()["activation"] == activation
    x, y = batch_for(model)
    _, _, logs = train_one_step(model, x, y)
    assert np.isfinite(logs["loss"])
    kinds = {type(layer).__name__ for layer in model.layers}
    expected = {"prelu": "PReLU", "leaky_relu": "LeakyReLU", "maxout": "Maxout"}
    assert expected.get(activation, "Activation") in kinds


def test_leaky_relu_slope_is_used():
    model = zoo.create_model("test_vgg", activation="leaky_relu", leaky_relu_slope=0.3)
    slopes = {layer.negative_slope for layer in model.layers
              if isinstance(layer, keras.layers.LeakyReLU)}
    assert slopes == {0.3}


@pytest.mark.parametrize("init, check", [
    ("xavier", lambda std, fan_in, fan_out: np.isclose(std, np.sqrt(2 / (fan_in + fan_out)),
                                                       rtol=0.2)),
    ("glorot_normal", lambda std, fan_in, fan_out: np.isclose(std, np.sqrt(2 / (fan_in + fan_out)),
                                                              rtol=0.2)),
    ("he", lambda std, fan_in, fan_out: np.isclose(std, np.sqrt(2 / fan_in), rtol=0.2)),
    ("he_uniform", lambda std, fan_in, fan_out: np.isclose(std, np.sqrt(2 / fan_in), rtol=0.2)),
    ("lecun", lambda std, fan_in, fan_out: np.isclose(std, np.sqrt(1 / fan_in), rtol=0.2)),
    ("small", lambda std, fan_in, fan_out: np.isclose(std, 0.01, rtol=0.2)),
])
def test_initializers_give_the_textbook_scale(init, check):
    model = zoo.VGG(num_classes=10, input_shape=(8, 8, 3), convs_per_stage=(1,), widths=(256,),
                    head=(), kernel_initializer=init)
    kernel = model.get_layer("block1_conv1").kernel.numpy()
    fan_in, fan_out = 3 * 3 * 3, 3 * 3 * 256
    assert check(kernel.std(), fan_in, fan_out), (init, kernel.std())


def test_batch_norm_off_removes_bn_and_adds_bias():
    with_bn = zoo.create_model("test_resnet")
    without = zoo.create_model("test_resnet", batch_norm=False)
    def bn(m):
        return [layer for layer in m.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert bn(with_bn) and not bn(without)
    assert without.get_layer("conv1").use_bias and not with_bn.get_layer("conv1").use_bias


@pytest.mark.parametrize("spec, l1, l2", [
    ("l1", 1e-4, 0.0), ("l2:5e-4", 0.0, 5e-4), ("l1_l2:1e-5,2e-4", 1e-5, 2e-4),
    ({"l2": 1e-3}, 0.0, 1e-3),
])
def test_regularizers_reach_every_kernel(spec, l1, l2):
    model = zoo.create_model("test_vgg", kernel_regularizer=spec)
    assert model.get_config()["kernel_regularizer"] == {"l1": l1, "l2": l2}
    kernels = [layer for layer in model.layers if hasattr(layer, "kernel")]
    assert len(model.losses) == len(kernels)
    expected = sum(l1 * np.abs(k.kernel.numpy()).sum() + l2 * np.square(k.kernel.numpy()).sum()
                   for k in kernels)
    np.testing.assert_allclose(float(sum(keras.ops.convert_to_numpy(v) for v in model.losses)),
                               expected, rtol=1e-4)


def test_dropout_is_placed_and_stored():
    model = zoo.create_model("test_resnet", dropout=0.3)
    rates = [layer.rate for layer in model.layers if isinstance(layer, keras.layers.Dropout)]
    assert rates == [0.3] and model.get_config()["dropout"] == 0.3
    vgg = zoo.create_model("vgg11_cifar")
    assert [layer.rate for layer in vgg.layers if isinstance(layer, keras.layers.Dropout)] == [0.5]


def test_zero_init_residual_makes_every_block_start_as_identity():
    model = zoo.create_model("test_resnet", zero_init_residual=True, num_classes=10)
    gammas = [model.get_layer(f"stage{s}_block1_conv2_bn").gamma.numpy() for s in (1, 2)]
    assert all(np.all(g == 0) for g in gammas)
    # The first block keeps its shape, so its output is act(input).
    probe = keras.Model(model.input, [model.get_layer("conv1_act").output,
                                      model.get_layer("stage1_block1_out_act").output])
    x = np.random.default_rng(0).normal(size=(2, 16, 16, 1)).astype("float32")
    block_in, block_out = [keras.ops.convert_to_numpy(t) for t in probe(x, training=False)]
    np.testing.assert_allclose(block_out, np.maximum(block_in, 0), atol=1e-6)
    # Pre-activation blocks zero their last convolution instead.
    preact = zoo.create_model("test_resnet_bottleneck", zero_init_residual=True)
    assert np.all(preact.get_layer("stage1_block1_conv3").kernel.numpy() == 0)


def test_stochastic_depth_rates_decay_linearly_and_vanish_at_inference():
    model = zoo.create_model("resnet20", stochastic_depth=0.5, input_shape=(8, 8, 3))
    rates = [layer.rate for layer in model.layers if isinstance(layer, zoo.StochasticDepth)]
    np.testing.assert_allclose(rates, 0.5 * np.arange(1, 10) / 9)
    x = np.random.default_rng(0).normal(size=(4, 8, 8, 3)).astype("float32")
    a, b = (keras.ops.convert_to_numpy(model(x, training=False)) for _ in range(2))
    np.testing.assert_array_equal(a, b)


def test_stochastic_depth_layer_drops_whole_samples_and_keeps_the_mean():
    layer = zoo.StochasticDepth(0.5, seed=1)
    x = np.ones((4000, 2, 2, 3), "float32")
    y = keras.ops.convert_to_numpy(layer(x, training=True))
    per_sample = y.reshape(4000, -1)
    assert set(np.unique(per_sample)) == {0.0, 2.0}
    assert np.all(per_sample.min(axis=1) == per_sample.max(axis=1))  # whole sample kept or dropped
    assert abs(y.mean() - 1.0) < 0.05
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer(x, training=False)), x)


def test_maxout_is_the_max_over_linear_pieces():
    layer = zoo.Maxout(units=3, pieces=4)
    x = np.random.default_rng(0).normal(size=(5, 6)).astype("float32")
    y = keras.ops.convert_to_numpy(layer(x))
    z = x @ layer.kernel.numpy() + layer.bias.numpy()
    np.testing.assert_allclose(y, z.reshape(5, 3, 4).max(axis=-1), rtol=1e-5)
    assert zoo.Maxout.from_config(layer.get_config()).get_config() == layer.get_config()


def test_local_response_normalization_matches_the_formula():
    layer = zoo.LocalResponseNormalization(size=3, k=2.0, alpha=0.1, beta=0.75)
    x = np.random.default_rng(0).normal(size=(2, 3, 3, 6)).astype("float32")
    y = keras.ops.convert_to_numpy(layer(x))
    sq = np.pad(x ** 2, [(0, 0)] * 3 + [(1, 1)])
    window = sq[..., :-2] + sq[..., 1:-1] + sq[..., 2:]
    np.testing.assert_allclose(y, x / (2.0 + 0.1 * window) ** 0.75, rtol=1e-5)


def test_lenet_faithful_option_and_paper_layout():
    model = zoo.create_model("lenet5_faithful")
    config = model.get_config()
    assert (config["activation"], config["pooling"], config["batch_norm"]) == ("tanh", "avg", False)
    assert isinstance(model.get_layer("s2"), keras.layers.AveragePooling2D)
    shapes = [model.get_layer(n).output.shape[1:] for n in ("c1", "s2", "c3", "s4", "c5", "f6")]
    assert shapes == [(28, 28, 6), (14, 14, 6), (10, 10, 16), (5, 5, 16), (1, 1, 120), (84,)]
    # An explicit option wins over the faithful defaults.
    assert zoo.create_model("lenet5_faithful",
                            activation="relu").get_config()["activation"] == "relu"


def test_googlenet_aux_heads_count_only_in_training():
    model = zoo.create_model("test_googlenet", num_classes=NUM_CLASSES)
    x, y = batch_for(model, n=2)
    assert len(model(x, training=True)) == 3
    assert keras.ops.convert_to_numpy(model(x, training=False)).shape == (2, NUM_CLASSES)
    assert keras.ops.convert_to_numpy(model.predict(x, verbose=0)).shape == (2, NUM_CLASSES)
    # The training loss adds 0.3 x each auxiliary cross-entropy.
    model.compile(loss="categorical_crossentropy")
    main, aux1, aux2 = model(x, training=True)
    def ce(p):
        return float(keras.ops.mean(keras.losses.categorical_crossentropy(y, p)))
    loss = model.compute_loss(x, y, [main, aux1, aux2])
    np.testing.assert_allclose(float(loss), ce(main) + 0.3 * (ce(aux1) + ce(aux2)), rtol=1e-5)
    # 5x5 branches are real 5x5 convolutions.
    assert model.get_layer("inception_3a_5x5").kernel_size == (5, 5)


def test_inference_model_has_no_aux_weights_in_its_symbolic_output():
    model = zoo.create_model("test_googlenet", num_classes=NUM_CLASSES)
    inputs = keras.Input(model.input_shape[1:])
    assert tuple(model(inputs).shape) == (None, NUM_CLASSES)


# ---------------------------------------------------------------------------
# Registry and bad input.

def test_registry():
    assert "resnet20" in zoo.list_models("resnet*")
    assert all(n.startswith("vgg") for n in zoo.list_models("vgg*"))
    with pytest.raises(ValueError, match="already registered"):
        register_model(zoo.registry._MODELS["lenet5"])
    with pytest.raises(ValueError,
                       match=r"model='nope' is not registered; expected one of: .*lenet5"):
        zoo.create_model("nope")
    # None kwargs are dropped so a CLI default never clobbers the model's own.
    assert zoo.create_model("test_vgg", dropout=None).get_config()["dropout"] == 0.5


@pytest.mark.parametrize("name, kwargs, message", [
    ("test_resnet", {"activation": "swishy"},
     r"activation='swishy' is not accepted; expected one of relu"),
    ("test_resnet", {"kernel_initializer": "hee"},
     r"kernel_initializer='hee' is not accepted; expected one of glorot"),
    ("test_resnet", {"input_shape": (1, 1, 1)},
     r"input_shape=\(1, 1, 1\) is not accepted; expected height and width >= 2"),
    ("vgg16", {"input_shape": (31, 31, 3)}, r"input_shape=\(31, 31, 3\).*>= 32"),
    ("alexnet", {"input_shape": (62, 62, 3)}, r"input_shape=\(62, 62, 3\).*>= 63"),
    ("googlenet", {"input_shape": (64, 64, 3)}, r"input_shape=\(64, 64, 3\).*>= 80"),
    ("lenet5", {"input_shape": (28, 28, 1)}, r"input_shape=\(28, 28, 1\).*>= 32"),
    ("test_resnet", {"input_shape": (16, 16)},
     r"input_shape=\(16, 16\) is not accepted; expected \(height, width, channels\)"),
    ("test_resnet", {"dropout": 1.0},
     r"dropout=1.0 is not accepted; expected a number in \[0, 1\)"),
    ("test_resnet", {"dropout": -0.1}, r"dropout=-0.1 is not accepted"),
    ("test_resnet", {"stochastic_depth": 1.5},
     r"stochastic_depth=1.5 is not accepted; expected a number in \[0, 1\)"),
    ("test_resnet", {"num_classes": 0}, r"num_classes=0 is not accepted; expected an integer >= 1"),
    ("test_resnet", {"num_classes": -3}, r"num_classes=-3 is not accepted"),
    ("test_resnet", {"kernel_regularizer": "l3"},
     r"kernel_regularizer='l3' is not accepted; expected None, 'l1', 'l2'"),
    ("test_resnet", {"kernel_regularizer": {"l2": -1.0}},
     r"kernel_regularizer=\{'l2': -1.0\} is not accepted"),
    ("test_resnet", {"maxout_pieces": 1},
     r"maxout_pieces=1 is not accepted; expected an integer >= 2"),
    ("test_resnet", {"block": "wide"},
     r"block='wide' is not accepted; expected one of basic, bottleneck"),
    ("test_resnet", {"batch_norm": "yes"},
     r"batch_norm='yes' is not accepted; expected True or False"),
    ("lenet5", {"pooling": "min"}, r"pooling='min' is not accepted; expected one of max, avg"),
    ("test_alexnet", {"geometry": "mnist"},
     r"geometry='mnist' is not accepted; expected one of imagenet, cifar"),
])
def test_bad_options_raise_at_construction(name, kwargs, message):
    with pytest.raises(ValueError, match=message):
        zoo.create_model(name, **kwargs)


def test_unknown_option_names_the_accepted_ones():
    with pytest.raises(TypeError,
                       match=r"unknown model option\(s\) \['activaton'\]; accepted: activation"):
        zoo.create_model("test_resnet", activaton="relu")


def test_stride_in_1x1_moves_the_downsampling_to_the_first_convolution():
    for v1 in (False, True):
        model = zoo.create_model("test_resnet_bottleneck", stride_in_1x1=v1)
        # A strided 1x1 convolution is a stride-2 subsample, then the 1x1.
        layers = {layer.name for layer in model.layers}
        assert ("stage2_block1_conv1_subsample" in layers) is v1
        strides = {name: model.get_layer(f"stage2_block1_{name}").strides
                   for name in ("conv1", "conv2")}
        assert strides == ({"conv1": (1, 1), "conv2": (1, 1)} if v1 else
                           {"conv1": (1, 1), "conv2": (2, 2)})
        assert model.get_layer("stage2_block1_conv1").output.shape[1] == (8 if v1 else 16)
        assert type(model).from_config(model.get_config()).get_config()["stride_in_1x1"] is v1


def test_strided_1x1_convolution_is_subsample_then_conv():
    # TF 2.21's oneDNN weight gradient of a strided 1x1 convolution corrupts the
    # heap on AVX-512 CPUs for narrow layers and odd batch sizes (a crash in
    # training test_resnet with batch 19); the builder subsamples first instead.
    from zoo.base import LayerBuilder

    inputs = keras.Input((9, 9, 4))
    built = LayerBuilder(batch_norm=False).conv(inputs, 8, 1, "proj", strides=2)
    ours = keras.Model(inputs, built)
    assert [type(layer).__name__ for layer in ours.layers[1:]] == ["MaxPooling2D", "Conv2D"]
    plain = keras.Sequential([keras.Input((9, 9, 4)), keras.layers.Conv2D(8, 1, strides=2)])
    plain.set_weights(ours.get_weights())
    x = np.random.default_rng(0).normal(size=(3, 9, 9, 4)).astype("float32")
    np.testing.assert_allclose(ours.predict(x, verbose=0), plain.predict(x, verbose=0), atol=1e-6)

    keras.utils.set_random_seed(0)
    model = zoo.create_model("test_resnet", input_shape=(28, 28, 1))
    model.compile(optimizer="sgd", loss="categorical_crossentropy")
    x = np.random.default_rng(0).normal(size=(95, 28, 28, 1)).astype("float32")
    y = keras.utils.to_categorical(np.arange(95) % 10, 10)
    history = model.fit(x, y, batch_size=19, epochs=3, verbose=0).history
    assert np.all(np.isfinite(history["loss"]))


def test_every_family_registers_a_recipe_and_a_search_space():
    assert zoo.list_families() == ["lenet", "alexnet", "vgg", "googlenet", "resnet"]
    for name in zoo.list_families():
        family = zoo.get_family(name)
        assert family.recipe["model"] in zoo.list_models()
        for scale in ("full", "tiny"):
            values = {k: v[0] if isinstance(v, list) else v["low"]
                      for k, v in family.search_space[scale].items()}
            model, options = family.search_model(scale, values)
            assert model in zoo.list_models(), (name, scale)
            if scale == "tiny":  # the tiny variants build in milliseconds
                zoo.create_model(model, **options)
    with pytest.raises(ValueError, match="family='mlp' is not accepted; expected one of lenet"):
        zoo.get_family("mlp")
    with pytest.raises(ValueError, match="family 'lenet' is already registered"):
        zoo.register_family("lenet", zoo.get_family("lenet").recipe, {}, None)


def test_dtype_round_trips_through_the_config(tmp_path):
    model = zoo.create_model("test_resnet", dtype="float32")
    config = model.get_config()
    assert keras.dtype_policies.get(config["dtype"]).name == "float32"
    assert type(model).from_config(config).get_config() == config
    model.save(tmp_path / "m.keras")
    assert keras.saving.load_model(tmp_path / "m.keras").get_config() == config
