"""Shifted test sets (augment/corruptions.py) and evaluate_shift.py."""

import numpy as np
import pytest

from augment import corruptions, datasets

DIGITS = datasets.load_dataset("mnist_sample", limit_test=16).x_test


@pytest.mark.parametrize("name", corruptions.CORRUPTIONS)
def test_corruptions_are_deterministic_and_grow_with_severity(name):
    distances = []
    for severity in corruptions.SEVERITIES:
        out = corruptions.corrupt(DIGITS, name, severity, seed=3)
        assert out.shape == DIGITS.shape and out.dtype == np.uint8
        np.testing.assert_array_equal(out, corruptions.corrupt(DIGITS, name, severity, seed=3))
        distances.append(np.abs(out.astype(float) - DIGITS).mean())
    assert distances[0] > 0 and all(a < b for a, b in zip(distances, distances[1:])), distances
    assert not np.array_equal(corruptions.corrupt(DIGITS, name, 3, seed=4),
                              corruptions.corrupt(DIGITS, name, 3, seed=3)) or name in (
        "blur", "contrast")  # deterministic corruptions do not draw


def test_rgb_images_work_too():
    rgb = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    for name in corruptions.CORRUPTIONS:
        assert corruptions.corrupt(rgb, name, 2).shape == rgb.shape


def test_rotation_by_the_affine_sampler_is_exact_for_quarter_turns():
    image = np.arange(25, dtype=np.uint8).reshape(1, 5, 5, 1)
    matrix = np.array([[[0.0, -1.0], [1.0, 0.0]]])
    turned = corruptions._affine(image.astype(np.float32), matrix, np.zeros((1, 2)))
    np.testing.assert_allclose(turned[0, ..., 0], np.rot90(image[0, ..., 0], k=-1), atol=1e-4)


@pytest.mark.parametrize("args, message", [
    (("snow", 1), "corruption='snow' is not accepted; expected one of rotate"),
    (("blur", 0), "severity=0 is not accepted; expected an integer in 1-5"),
    (("blur", 6), "severity=6 is not accepted"),
])
def test_bad_corruption_arguments_are_named(args, message):
    with pytest.raises(ValueError, match=message):
        corruptions.corrupt(DIGITS, *args)
    with pytest.raises(ValueError, match="images=.* is not accepted; expected uint8"):
        corruptions.corrupt(DIGITS.astype(np.float32), "blur", 1)


def test_evaluate_shift_script_compares_runs(tmp_path):
    import json

    import evaluate_shift

    from zoo import training

    from helpers import tiny_config

    for name in ("a", "b"):
        training.train(tiny_config(tmp_path / name, epochs=1))
    results = evaluate_shift.main([str(tmp_path / "a" / "run"), str(tmp_path / "b" / "run"),
                                   "--corruptions", "rotate,fog", "--limit-test", "32",
                                   "--out", str(tmp_path / "shift")])
    assert sorted(results) == ["a/run", "b/run"]
    saved = json.loads((tmp_path / "shift" / "shift.json").read_text())
    first = next(iter(saved["results"].values()))
    assert set(first["corruptions"]) == {"rotate", "fog"}
    assert set(first["by_severity"]) == {"1", "2", "3", "4", "5"}
    assert (tmp_path / "shift" / "shift.png").read_bytes()[:4] == b"\x89PNG"
    assert "| model | error clean |" in (tmp_path / "shift" / "shift.md").read_text()
