"""Image folders, streamed: class sub-folders are listed and every file is
checked from its header and tail (never decoded here), so a folder of any size
trains in constant memory (the layout of torchvision's `ImageFolder`).

    DIR/train/CLASS/*.jpg + DIR/test/CLASS/*.jpg (or val/ for test/)
    DIR/CLASS/*.jpg         split per class by a seeded fraction (TEST_FRACTION)

Images of any size, JPEG, PNG, BMP, GIF or WebP (what TensorFlow decodes);
grayscale, CMYK, palette, alpha and 16-bit images are converted to RGB when
decoded (`augment.streams`). A file that cannot be used is left out and named
(`--bad-images skip`, the default) or stops the run before it starts
(`--bad-images error`): an empty file, a non-image with an image extension, a
format TensorFlow does not decode, a truncated JPEG/PNG/GIF/BMP/WebP, an image
of more than `MAX_PIXELS` (a decompression bomb), an empty class folder.
"""

from __future__ import annotations

import dataclasses
import os
import struct
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from augment.readers import base
from zoo.resolve import bad_option

IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
DECODABLE = {"JPEG", "PNG", "BMP", "GIF", "WEBP"}  # what tf.io.decode_image reads
MAX_PIXELS = 89_478_485  # PIL's decompression-bomb limit: about 0.25 GB of RGB pixels
TEST_FRACTION = 0.2      # one folder of classes: this share of each class is the test split
BAD_IMAGES = ("skip", "error")
TAIL_BYTES = 1024
CHECK_THREADS = 8        # file checks are reads: threads overlap them
NOTICE_AT = 20_000       # say how long checking takes from this many files on


@dataclasses.dataclass(frozen=True)
class FileSplit:
    """Image files and their labels (one split of a folder dataset)."""

    paths: np.ndarray   # str
    labels: np.ndarray  # int64

    def __len__(self):
        return len(self.paths)

    def select_classes(self, remap):
        keep = remap[self.labels] >= 0
        return FileSplit(self.paths[keep], remap[self.labels[keep]])

    def limit(self, limit, seed, stream):
        index = base.subset_indices(len(self), limit, seed, stream)
        return self if len(index) == len(self) else FileSplit(self.paths[index],
                                                               self.labels[index])

    def holdout(self, fraction, seed):
        """(the rest, a seeded `fraction` of the files): the validation split."""
        order = np.random.default_rng(seed).permutation(len(self))
        count = max(1, int(round(len(self) * fraction)))
        held, kept = np.sort(order[:count]), np.sort(order[count:])
        return (FileSplit(self.paths[kept], self.labels[kept]),
                FileSplit(self.paths[held], self.labels[held]))


def folder(data_dir, *, seed=0, bad_images="skip", log=print, **options):
    """The `StreamingDataset` of a folder of class sub-folders (module docstring)."""
    if bad_images not in BAD_IMAGES:
        raise bad_option("bad_images", bad_images, "one of " + ", ".join(BAD_IMAGES))
    if data_dir is None:
        raise bad_option("data_dir", None, "a folder of class sub-folders (--data-dir) for "
                         "dataset='folder'")
    root = Path(data_dir).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"Data directory {root} does not exist.")
    test_dir = next((root / d for d in ("test", "val") if (root / d).is_dir()), None)
    bad = []
    if (root / "train").is_dir() or test_dir is not None:
        if test_dir is None or not (root / "train").is_dir():
            raise FileNotFoundError(f"{root} needs both train/ and test/ (or val/) folders, "
                                    "or only class folders.")
        class_names = class_folders(root / "train")
        extra = sorted(set(class_folders(test_dir)) - set(class_names))
        if extra:
            raise ValueError(f"{test_dir} has classes missing from {root / 'train'}: "
                             f"{', '.join(extra)}.")
        files = {split: list_images(directory, class_names) for split, directory in
                 (("train", root / "train"), ("test", test_dir))}
        bad += empty_classes(root / "train", class_names, files["train"][1])
    else:
        class_names = class_folders(root)
        paths, labels = list_images(root, class_names)
        bad += empty_classes(root, class_names, labels)
        is_test = np.zeros(len(paths), bool)
        rng = np.random.default_rng([seed, 3])
        for label in range(len(class_names)):
            idx = np.flatnonzero(labels == label)
            n_test = int(round(TEST_FRACTION * len(idx))) if len(idx) > 1 else 0
            is_test[rng.permutation(idx)[:n_test]] = True
        files = {"train": (paths[~is_test], labels[~is_test]),
                 "test": (paths[is_test], labels[is_test])}
    empty = {Path(path).name for path, _ in bad}
    if len(empty) == len(class_names):
        raise FileNotFoundError(f"No images ({', '.join(sorted(IMAGE_EXTENSIONS))}) in the "
                                f"class sub-folders of {root}.")
    if empty:  # classes without training images are left out, their labels renumbered
        remap = base.class_remap([i for i, c in enumerate(class_names) if c not in empty],
                                 len(class_names), "folder")
        files = {split: (paths[remap[labels] >= 0], remap[labels[remap[labels] >= 0]])
                 for split, (paths, labels) in files.items()}
        class_names = [c for c in class_names if c not in empty]
    splits = {}
    for split, (paths, labels) in files.items():
        reasons = check_images(paths, log=log)
        ok = np.array([r is None for r in reasons], bool)
        bad += [(p, r) for p, r in zip(paths, reasons) if r is not None]
        splits[split] = FileSplit(paths[ok], labels[ok])
    report_bad(bad, bad_images, sum(len(f[0]) for f in files.values()), log)
    if not len(splits["train"]):
        raise FileNotFoundError(f"No usable images in the class sub-folders of {root}.")
    return base.StreamingDataset("folder", splits["train"], splits["test"], len(class_names),
                                 str(root), class_names, bad)


def class_folders(directory):
    classes = sorted(p.name for p in directory.iterdir()
                     if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise FileNotFoundError(f"No class sub-folders in {directory}.")
    return classes


def list_images(directory, class_names):
    """(paths, labels) of the files with an image extension, class by class
    (`os.scandir`: no stat per file beyond what listing gives)."""
    paths, labels = [], []
    for label, cls in enumerate(class_names):
        folder = directory / cls
        if not folder.is_dir():
            continue
        with os.scandir(folder) as entries:
            found = sorted(e.path for e in entries
                           if os.path.splitext(e.name)[1].lower() in IMAGE_EXTENSIONS
                           and e.is_file())
        paths += found
        labels += [label] * len(found)
    return np.asarray(paths, dtype=object), np.asarray(labels, np.int64)


def empty_classes(directory, class_names, labels):
    """[(folder, why)] of the class folders without any image."""
    counts = np.bincount(labels, minlength=len(class_names)) if len(labels) else \
        np.zeros(len(class_names), int)
    return [(str(directory / c), "an empty class folder (no images)")
            for c, n in zip(class_names, counts) if n == 0]


def check_images(paths, log=print):
    """None for each usable file, else why not (`check_image`), in order."""
    start = time.perf_counter()
    with ThreadPoolExecutor(CHECK_THREADS) as pool:
        reasons = list(pool.map(check_image, paths, chunksize=256))
    if len(paths) >= NOTICE_AT and log:
        log(f"checked {len(paths):,} image files in {time.perf_counter() - start:.1f} s",
            file=sys.stderr)
    return reasons


def check_image(path):
    """Why the file at `path` cannot be trained on, or None: read from its header
    and its last bytes, without decoding the pixels."""
    try:
        size = os.path.getsize(path)
        if size == 0:
            return "an empty file"
        with Image.open(path) as image:
            fmt, (width, height) = image.format, image.size
        if fmt not in DECODABLE:
            return (f"a {fmt} image: TensorFlow decodes " + ", ".join(sorted(DECODABLE))
                    + " (convert it)")
        if width * height > MAX_PIXELS:
            return (f"{width}x{height} pixels, more than {MAX_PIXELS:,}: a decompression bomb? "
                    "(resize it)")
        with open(path, "rb") as f:
            f.seek(max(0, size - TAIL_BYTES))
            tail = f.read()
            f.seek(0)
            head = f.read(32)
        if truncated(fmt, head, tail, size):
            return f"a truncated {fmt} file (its end is missing)"
    except UnidentifiedImageError:
        return "not an image (cannot identify it)"
    except Image.DecompressionBombError as error:  # PIL's own check, at twice MAX_PIXELS
        return f"a decompression bomb ({error}; resize it)"
    except OSError as error:
        return f"unreadable ({error.strerror or error})"
    return None


def truncated(fmt, head, tail, size):
    """Whether a file of format `fmt` lacks its end: the JPEG end-of-image
    marker, PNG's IEND chunk, GIF's trailer, or the size the BMP/WebP header
    gives."""
    if fmt == "JPEG":
        return b"\xff\xd9" not in tail
    if fmt == "PNG":
        return b"IEND" not in tail
    if fmt == "GIF":
        return b"\x3b" not in tail[-16:]
    if fmt == "BMP" and len(head) >= 6:
        return struct.unpack("<I", head[2:6])[0] > size
    if fmt == "WEBP" and len(head) >= 8:
        return struct.unpack("<I", head[4:8])[0] + 8 > size
    return False


def report_bad(bad, bad_images, total, log=print):
    """Names every file left out, then stops (`bad_images="error"`) or counts them."""
    if not bad:
        return
    lines = [f"  {path}: {why}" for path, why in bad]
    if bad_images == "error":
        raise ValueError(f"bad_images='error': {len(bad)} of {total:,} image files cannot be "
                         "used:\n" + "\n".join(lines) + "\n(--bad-images skip leaves them out)")
    if log:
        log(f"warning: left out {len(bad)} of {total:,} image files that cannot be used "
            "(--bad-images error stops instead):\n" + "\n".join(lines), file=sys.stderr)
