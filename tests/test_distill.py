"""Knowledge distillation (ensembles/distill.py, --distill-from)."""

import json

import keras
import numpy as np
import pytest

import ensembles
import zoo
from zoo import training

from helpers import tiny_config


def synthetic(tmp_path, name, **overrides):
    return tiny_config(tmp_path / name, dataset="synthetic", limit_train=None, limit_test=None,
                       epochs=12, optimizer="adam", lr=0.01, **overrides)


def test_a_student_reaches_its_teachers_accuracy(tmp_path):
    teacher = training.train(synthetic(tmp_path, "teacher", ensemble="independent", members=2))
    path = tmp_path / "teacher" / "run" / "model.keras"
    student = training.train(synthetic(tmp_path, "student", distill_from=str(path)))
    assert student["test_accuracy"] >= teacher["test_accuracy"] - 0.05
    report = student["distillation"]
    assert report["teacher_test"]["accuracy"] == pytest.approx(teacher["test_accuracy"])
    assert report["temperature"] == ensembles.distill.TEMPERATURE
    saved = keras.saving.load_model(tmp_path / "student" / "run" / "model.keras")
    # The student alone (1x the inference cost), raw images in.
    assert isinstance(saved, zoo.Classifier) and isinstance(saved.network, zoo.ResNet)
    assert json.loads((tmp_path / "student" / "run" / "config.json").read_text())[
        "distill_from"] == str(path)


def test_soft_targets_precomputed_or_per_batch_give_the_same_loss():
    keras.utils.set_random_seed(0)
    student = zoo.create_model("test_resnet", num_classes=3)
    teacher = zoo.create_model("test_vgg", num_classes=3)
    distiller = ensembles.Distiller(student, teacher, temperature=3.0, hard_weight=0.2)
    x = np.random.default_rng(0).normal(size=(8, 16, 16, 1)).astype("float32")
    y = keras.utils.to_categorical(np.arange(8) % 3, 3)
    soft = teacher.predict(x, verbose=0)
    per_batch = distiller.compute_loss(x, y, student(x), training=True)
    precomputed = distiller.compute_loss(x, np.concatenate([y, soft], 1), student(x),
                                         training=True)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(per_batch),
                               keras.ops.convert_to_numpy(precomputed), rtol=1e-5)
    # Evaluation is the student's plain cross-entropy.
    plain = keras.losses.categorical_crossentropy(y, student(x))
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(distiller.compute_loss(x, y, student(x), training=False)),
        float(np.mean(keras.ops.convert_to_numpy(plain))), rtol=1e-4)


def test_bad_teachers_and_settings_are_named(tmp_path):
    student = zoo.create_model("test_resnet", num_classes=3)
    with pytest.raises(ValueError, match="teacher=.* with 5 classes' is not accepted; expected "
                                         "a model with the student's 3 classes"):
        ensembles.Distiller(student, zoo.create_model("test_vgg", num_classes=5))
    with pytest.raises(ValueError, match=r"expected a model taking the student's input "
                                         r"\(16, 16, 1\)"):
        ensembles.Distiller(student, zoo.create_model("test_vgg", num_classes=3,
                                                      input_shape=(32, 32, 1)))
    with pytest.raises(ValueError, match="distill_temperature=0 is not accepted"):
        ensembles.distill.check_settings(0, 0.1)
    with pytest.raises(ValueError, match="distill_hard_weight=1.5 is not accepted"):
        ensembles.distill.check_settings(4.0, 1.5)
    with pytest.raises(ValueError, match="distill_from=.*missing.keras' is not accepted"):
        tiny_config(tmp_path, distill_from=str(tmp_path / "missing.keras")).validate()
    teacher = tmp_path / "teacher.keras"
    zoo.create_model("test_resnet", num_classes=3).save(teacher)
    with pytest.raises(ValueError, match="label_smoothing=0.1 is not accepted; expected 0 with "
                                         "distill_from"):
        tiny_config(tmp_path, distill_from=str(teacher), label_smoothing=0.1).validate()
    with pytest.raises(ValueError, match="student=.* is not accepted; expected a model with a "
                                         "fixed input shape"):
        ensembles.distill.check_pair(keras.Sequential(name="empty"), student)
    with pytest.raises(ValueError, match="model=.* is not accepted; expected a model with a "
                                         "fixed input shape"):  # a subclassed model, unbuilt
        ensembles.calibration.calibrated(keras.Model(), 2.0)
