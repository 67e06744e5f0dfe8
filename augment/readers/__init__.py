"""Dataset readers, one module per format; `augment.datasets` is their registry.

- `idx`: MNIST and Fashion-MNIST IDX files, the embedded MNIST sample.
- `cifar`: CIFAR-10/100 python pickles (a restricted unpickler).
- `download`: `keras.datasets` downloads, with a timeout.
- `synthetic`: a learnable random dataset of any shape.
- `folder`: image folders, streamed (listed and checked, never loaded whole).
- `tfrecord`: TFRecord shards as TensorFlow's ImageNet tools, TFDS and
  `scripts/make_tfrecords.py` write them, streamed.

In-memory readers return a `base.Dataset` of uint8 arrays; streaming readers a
`base.StreamingDataset` of splits that `augment.streams` turns into tf.data
pipelines. Readers need numpy and PIL only (TensorFlow for `tfrecord`).
"""
