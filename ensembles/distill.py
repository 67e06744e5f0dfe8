"""Knowledge distillation (Hinton, Vinyals & Dean 2015, "Distilling the Knowledge in
a Neural Network"): one student network learns an ensemble's softened probabilities,
keeping much of the ensemble's gain at the cost of one model at inference.

The loss on a training batch, for temperature T and hard-label weight a:

    (1 - a) * T^2 * CE(softmax(log q / T), softmax(log p / T)) + a * CE(y, p)

where q are the teacher's probabilities, p the student's and y the true labels;
T^2 keeps the soft term's gradients on the scale of the hard one as T changes
(section 2 of the paper). Both networks output probabilities, so log q and log p
stand for the logits (they differ by a per-example constant, which the
temperature softmax removes). Evaluation (validation loss, test) uses the plain
cross-entropy of the student, so its figures compare with any other run's.
"""

import keras
from keras import ops

from ensembles import metrics
from ensembles.calibration import check_temperature
from zoo import resolve
from zoo.contract import contract_of, model_input_shape

# Hinton et al. 2015 report temperatures of 2.5-4 as best for small students on
# MNIST (8 and above for large ones) and a "considerably lower weight" on the hard
# labels than on the soft targets.
TEMPERATURE = 4.0
HARD_WEIGHT = 0.1


def check_settings(temperature, hard_weight):
    temperature = check_temperature(temperature, "distill_temperature")
    if isinstance(hard_weight, bool) or not isinstance(hard_weight, (int, float)) or not (
            0.0 <= hard_weight <= 1.0):
        raise resolve.bad_option("distill_hard_weight", hard_weight, "a number in [0, 1]")
    return float(temperature), float(hard_weight)


def check_pair(student, teacher):
    """Raises unless the teacher predicts the student's classes and takes its
    input: any input when both carry their input contract (the teacher fits
    the student's images to its own size and normalization), else the same
    input shape. Returns the number of classes."""
    student_in = model_input_shape(student, "student")
    teacher_in = model_input_shape(teacher, "teacher")
    contracts = (contract_of(student), contract_of(teacher))
    if None in contracts and student_in != teacher_in:
        raise resolve.bad_option("teacher", f"{teacher.name} taking {teacher_in}",
                                 f"a model taking the student's input {student_in}")
    student_out = student.compute_output_spec(keras.KerasTensor((None, *student_in))).shape
    teacher_out = teacher.compute_output_spec(keras.KerasTensor((None, *student_in))).shape
    if student_out[-1] != teacher_out[-1]:
        raise resolve.bad_option("teacher", f"{teacher.name} with {teacher_out[-1]} classes",
                                 f"a model with the student's {student_out[-1]} classes")
    names = [c.class_names for c in contracts if c is not None and c.class_names is not None]
    if len(names) == 2 and names[0] != names[1]:
        raise resolve.bad_option("teacher", f"{teacher.name} with classes {list(names[1])}",
                                 f"a model with the student's classes {list(names[0])}")
    return int(student_out[-1])


@keras.saving.register_keras_serializable(package="ensembles")
class Distiller(keras.Model):
    """Fits `student` to `teacher`'s softened probabilities and the true labels.

    `fit` takes the usual one-hot labels (the teacher then runs on every batch,
    augmented or not), or the labels with the teacher's probabilities appended
    (N, 2C), computed once when the inputs do not change between epochs.
    Inference, `predict` and `evaluate` are the student's.

    Args:
        student: the network to train (outputs class probabilities).
        teacher: a trained model or `EnsembleModel` on the same input; frozen.
        temperature: T of the softened distributions (`TEMPERATURE`).
        hard_weight: weight a of the true-label cross-entropy (`HARD_WEIGHT`).
    """

    def __init__(self, student, teacher, temperature=TEMPERATURE, hard_weight=HARD_WEIGHT,
                 **kwargs):
        super().__init__(**kwargs)
        self.temperature, self.hard_weight = check_settings(temperature, hard_weight)
        self.num_classes = check_pair(student, teacher)
        self.student, self.teacher = student, teacher
        self.teacher.trainable = False

    def call(self, inputs, training=False):
        return self.student(inputs, training=training)

    def teacher_probabilities(self, x):
        return ops.cast(self.teacher(x, training=False), "float32")

    def _split(self, x, y):
        y = ops.cast(y, "float32")
        if y.shape[-1] == 2 * self.num_classes:
            return y[:, :self.num_classes], y[:, self.num_classes:]
        return y, None

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        if isinstance(y_pred, (list, tuple)):  # GoogLeNet's auxiliary heads: main output
            y_pred = y_pred[0]
        hard, soft = self._split(x, y)
        probs = ops.clip(ops.cast(y_pred, "float32"), metrics.EPS, 1.0)
        hard_loss = -ops.mean(ops.sum(hard * ops.log(probs), axis=-1))
        penalties = [ops.cast(loss, "float32") for loss in self.losses]
        if not training:
            return hard_loss + (ops.sum(penalties) if penalties else 0.0)
        if soft is None:
            soft = self.teacher_probabilities(x)
        t = self.temperature
        target = ops.softmax(ops.log(ops.clip(soft, metrics.EPS, 1.0)) / t, axis=-1)
        student = ops.log_softmax(ops.log(probs) / t, axis=-1)
        soft_loss = -ops.mean(ops.sum(target * student, axis=-1)) * t * t
        loss = (1.0 - self.hard_weight) * soft_loss + self.hard_weight * hard_loss
        return loss + (ops.sum(penalties) if penalties else 0.0)

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        if isinstance(y_pred, (list, tuple)):
            y_pred = y_pred[0]
        hard, _ = self._split(x, y)
        return super().compute_metrics(x, hard, y_pred, sample_weight)

    def get_config(self):
        return {"name": self.name, "temperature": self.temperature,
                "hard_weight": self.hard_weight,
                "student": keras.saving.serialize_keras_object(self.student),
                "teacher": keras.saving.serialize_keras_object(self.teacher)}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        student = keras.saving.deserialize_keras_object(config.pop("student"))
        teacher = keras.saving.deserialize_keras_object(config.pop("teacher"))
        return cls(student, teacher, **config)
