"""tf.data pipelines over the streaming datasets (`augment.readers.folder`,
`augment.readers.tfrecord`): images read, decoded, cropped and augmented on the
fly, in parallel, so memory does not grow with the number of images.

Training: the file list in a seeded order, reshuffled every epoch (TFRecord:
the shards reshuffled, read in parallel with `interleave`, records mixed in a
`SHUFFLE_BUFFER`), each image decoded and cropped by the train transform
(`augment.transforms`, random with a seeded stateless draw per image and
epoch), batched as uint8, the augmentation stack on whole batches, prefetched;
`AUTOTUNE` everywhere. Evaluation: the same files in a fixed order, the eval
transform. A file that fails to decode despite the readers' checks is dropped
by `ignore_errors` (TensorFlow logs the error) rather than ending the run.

Scale: `shard=(workers, index)` gives each worker of a multi-worker run a
disjoint share of the files (or shards), their union every image once per
epoch; `service="grpc://HOST:PORT"` moves the pipeline to a tf.data service
cluster (`processing_mode="distributed_epoch"`: every image once per epoch
across its workers; `scripts/data_service.py` starts the servers); `cache`
("memory" or a directory) keeps the encoded training images (and the
transformed evaluation ones) after their first read.
"""

from __future__ import annotations

import math

import numpy as np

from augment import transforms
from augment.readers.folder import FileSplit
from augment.readers.tfrecord import RecordSplit
from zoo.resolve import bad_option

SHUFFLE_BUFFER = 10_000   # TFRecord records (or cached files) mixed at a time
HOLDOUT_BUCKETS = 1 << 20  # resolution of a TFRecord holdout fraction


class Stream:
    """One split of a streaming dataset, as the training core uses it.

    Args:
        split: a `FileSplit` (folder) or `RecordSplit` (TFRecord).
        num_classes: for the one-hot labels.
        size: the crop, in pixels (square).
        transform: one of `augment.transforms.TRAIN` (training) or `EVAL`.
        training: shuffle, draw random crops and flips, repeat.
        seed: of the file order and the random draws.
        flip: random horizontal flips in training.
        cache: None, "memory" or a directory (module docstring).
        shard: (workers, index): read only this worker's share.
        service: a tf.data service address ("grpc://host:port").
    """

    def __init__(self, split, num_classes, size, transform, training=False, seed=0, flip=True,
                 cache=None, shard=None, service=None):
        choices = transforms.TRAIN if training else transforms.EVAL
        if transform not in choices:
            raise bad_option("train_transform" if training else "eval_transform", transform,
                             "one of " + ", ".join(choices))
        self.split, self.num_classes, self.size = split, int(num_classes), int(size)
        self.transform, self.training, self.seed, self.flip = transform, training, seed, flip
        self.cache, self.shard, self.service = cache, shard, service

    def __len__(self):
        return len(self.split)

    @property
    def image_shape(self):
        return (self.size, self.size, 3)

    def steps(self, batch_size):
        """Steps of one epoch at the (global) `batch_size`."""
        return max(1, math.ceil(len(self) / batch_size))

    @property
    def _shuffle_seed(self):
        """The seed of the shuffles: None (fresh each epoch) under a tf.data
        service, which rebuilds the pipeline every epoch."""
        return None if self.service else self.seed

    # === tf.data ===

    def dataset(self, batch_size, augmenter=None, repeat=False):
        """Batches of (uint8 images, one-hot labels); training streams repeat
        (one epoch is `steps(batch_size)` batches) and run `augmenter` (an
        `augment.pipelines` stack) on whole batches; `repeat` repeats an
        evaluation stream pass after pass (`steps(batch_size)` batches each:
        Keras' validation with `validation_steps`)."""
        import tensorflow as tf

        ds = self._images()
        if self.training and self.service is None:
            ds = ds.repeat()
        ds = ds.batch(batch_size, num_parallel_calls=tf.data.AUTOTUNE,
                      deterministic=True)
        depth = self.num_classes
        ds = ds.map(lambda x, y: (x, tf.one_hot(y, depth)), num_parallel_calls=tf.data.AUTOTUNE)
        if repeat and not self.training:
            ds = ds.repeat()
        if augmenter is not None:
            from augment.pipelines import apply_augmenter

            ds = ds.map(lambda x, y: apply_augmenter(augmenter, x, y))
        if self.service is not None:
            ds = ds.apply(tf.data.experimental.service.distribute(
                processing_mode="distributed_epoch", service=self.service))
            if self.training:
                ds = ds.repeat()
        options = tf.data.Options()
        # Each worker reads its own files (`shard`): no second sharding by tf.distribute.
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
        return ds.with_options(options).prefetch(tf.data.AUTOTUNE)

    def _images(self):
        """(uint8 image, label) elements, transformed, in the split's order."""
        import tensorflow as tf

        records = self._records()
        if self.training and self.service:
            # A tf.data service job rebuilds the pipeline every epoch: a seeded
            # draw would repeat itself, so the draws are fresh ones there.
            def train(contents, label):
                seed = tf.random.uniform([2], maxval=2**31 - 1, dtype=tf.int64)
                return transforms.transform_image(contents, self.size, self.transform, seed,
                                                  flip=self.flip), label

            images = records.map(train, num_parallel_calls=tf.data.AUTOTUNE)
        elif self.training:
            draws = tf.data.Dataset.random(seed=self.seed, rerandomize_each_iteration=True)
            pairs = tf.data.Dataset.zip((records, draws))
            base_seed = tf.constant(self.seed, tf.int64)

            def train(record, draw):
                contents, label = record
                seed = tf.stack([draw, base_seed])
                return transforms.transform_image(contents, self.size, self.transform, seed,
                                                  flip=self.flip), label

            images = pairs.map(train, num_parallel_calls=tf.data.AUTOTUNE)
        else:
            images = records.map(lambda contents, label: (transforms.transform_image(
                contents, self.size, self.transform), label), num_parallel_calls=tf.data.AUTOTUNE)
            if self.cache:
                images = images.cache("" if self.cache == "memory" else f"{self.cache}/eval")
        return images.ignore_errors(log_warning=True)

    def _records(self):
        """(encoded image, label) elements: shuffled per epoch in training."""
        if isinstance(self.split, FileSplit):
            return self._files()
        if isinstance(self.split, RecordSplit):
            return self._tfrecords()
        raise bad_option("split", type(self.split).__name__, "a FileSplit or a RecordSplit")

    def _files(self):
        import tensorflow as tf

        split = self.split
        # A seeded, fixed order: the folders list files class by class.
        order = np.random.default_rng([self.seed, 7]).permutation(len(split))
        paths, labels = split.paths[order].astype(str), split.labels[order]
        ds = tf.data.Dataset.from_tensor_slices((paths, labels))
        if self.shard:
            ds = ds.shard(*self.shard)
        if self.training and not self.cache:
            ds = ds.shuffle(len(paths), seed=self._shuffle_seed, reshuffle_each_iteration=True)
        ds = ds.map(lambda path, label: (tf.io.read_file(path), label),
                    num_parallel_calls=tf.data.AUTOTUNE)
        if self.training and self.cache:
            ds = ds.cache("" if self.cache == "memory" else f"{self.cache}/train")
            ds = ds.shuffle(min(len(paths), SHUFFLE_BUFFER), seed=self._shuffle_seed,
                            reshuffle_each_iteration=True)
        return ds

    def _tfrecords(self):
        import tensorflow as tf

        split = self.split
        shards = list(split.shards)
        files = tf.data.Dataset.from_tensor_slices((np.arange(len(shards), dtype=np.int64),
                                                    shards))
        per_file = self.shard and len(shards) >= self.shard[0]
        if per_file:
            files = files.shard(*self.shard)
        fixed = split.limit_to is not None or not self.training
        if not fixed:
            files = files.shuffle(len(shards), seed=self._shuffle_seed,
                                  reshuffle_each_iteration=True)

        def read(index, path):
            return tf.data.TFRecordDataset(path).enumerate().map(
                lambda position, record: (index * (1 << 32) + position, record))

        ds = files.interleave(read, cycle_length=tf.data.AUTOTUNE,
                              num_parallel_calls=tf.data.AUTOTUNE, deterministic=fixed)
        spec = {split.image_key: tf.io.FixedLenFeature([], tf.string),
                split.label_key: tf.io.FixedLenFeature([], tf.int64)}
        offset = split.label_offset

        def parse(key, record):
            features = tf.io.parse_single_example(record, spec)
            return key, features[split.image_key], features[split.label_key] - offset

        ds = ds.map(parse, num_parallel_calls=tf.data.AUTOTUNE)
        if split.remap is not None:
            table = tf.constant(split.remap, tf.int64)
            ds = ds.map(lambda key, contents, label: (key, contents, tf.gather(table, label)))
            ds = ds.filter(lambda key, contents, label: label >= 0)
        if split.limit_to is not None:
            ds = ds.take(split.limit_to)
        if split.holdout_spec is not None:
            fraction, seed, part = split.holdout_spec
            threshold = int(fraction * HOLDOUT_BUCKETS)

            def keep(key, contents, label):
                bucket = tf.strings.to_hash_bucket_fast(
                    tf.strings.as_string(key) + f"/{seed}", HOLDOUT_BUCKETS)
                held = bucket < threshold
                return held if part == "held" else tf.logical_not(held)

            ds = ds.filter(keep)
        if self.shard and not per_file:
            ds = ds.shard(*self.shard)
        ds = ds.map(lambda key, contents, label: (contents, label))
        if self.training:
            if self.cache:
                ds = ds.cache("" if self.cache == "memory" else f"{self.cache}/train")
            ds = ds.shuffle(SHUFFLE_BUFFER, seed=self._shuffle_seed, reshuffle_each_iteration=True)
        return ds

    # === numpy, for what needs arrays ===

    def batches(self, batch_size=256, limit=None):
        """(uint8 images, integer labels) numpy batches in the evaluation order,
        up to `limit` images."""
        eval_stream = self if not self.training else Stream(
            self.split, self.num_classes, self.size, "center" if self.transform != "resize"
            else "resize", seed=self.seed)
        ds = eval_stream._images()
        if limit is not None:
            ds = ds.take(limit)
        for images, labels in ds.batch(batch_size).prefetch(2).as_numpy_iterator():
            yield images, labels

    def sample(self, count):
        """The first `count` images (evaluation transform) as one uint8 array."""
        parts = [images for images, _ in self.batches(min(count, 256), limit=count)]
        return np.concatenate(parts) if parts else np.zeros((0, *self.image_shape), np.uint8)
