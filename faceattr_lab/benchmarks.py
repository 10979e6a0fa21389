"""How fast the input pipeline is, compared with the studies' PIL loop. Lab 02.

``pipeline_throughput()`` writes its own synthetic 200x200 JPEGs (UTKFace's size) to a
temporary folder and times three ways of turning them into ``image_size`` arrays:

- ``make_dataset``: the kit's pipeline (parallel decode + resize, labels, batching, prefetch);
- ``PIL loop``: what the studies do, a Python loop that opens, converts and resizes every file
  with PIL into one numpy array;
- ``bare tf.data decode``: parallel decode + resize only, no labels and no batching, the
  ceiling the kit's pipeline can reach.

Datasets are consumed inside TensorFlow (``Dataset.reduce``) so Python iteration does not
count; each method runs ``repeats`` times, interleaved with the others, and its best run is
kept (the least disturbed by other processes on a shared machine).
"""

from __future__ import annotations

import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd


def _write_jpegs(folder: Path, n: int, size: int = 200, seed: int = 0) -> list[str]:
    """``n`` random JPEGs: smooth noise plus a few shapes, so they compress like photos."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        coarse = rng.integers(0, 256, (size // 8, size // 8, 3), dtype=np.uint8)
        image = Image.fromarray(coarse).resize((size, size), Image.BILINEAR)
        draw = ImageDraw.Draw(image)
        for _ in range(3):
            x0, y0 = rng.integers(0, size - 40, 2)
            box = (int(x0), int(y0), int(x0 + rng.integers(20, 40)), int(y0 + rng.integers(20, 40)))
            draw.ellipse(box, fill=tuple(int(c) for c in rng.integers(0, 256, 3)))
        path = folder / f"{i}_{i % 2}_{i % 5}_20170116174525125.jpg.chip.jpg"
        image.save(path, format="JPEG", quality=90)
        paths.append(str(path))
    return paths


def _pil_loop(paths: list[str], image_size: int) -> np.ndarray:
    from PIL import Image

    images = []
    for path in paths:
        with Image.open(path) as image:
            images.append(np.asarray(image.convert("RGB").resize((image_size, image_size))))
    return np.stack(images).astype(np.float32)


def _consume(ds) -> int:
    """Run a dataset to the end inside TensorFlow; returns the number of images seen."""
    import tensorflow as tf

    def count(total, element):
        images = element[0] if isinstance(element, tuple) else element
        return total + tf.cast(tf.shape(images)[0] if images.shape.rank == 4 else 1, tf.int64)

    return int(ds.reduce(tf.constant(0, tf.int64), count))


def pipeline_throughput(n: int = 2000, image_size: int = 64, batch_size: int = 64,
                        repeats: int = 3) -> pd.DataFrame:
    """Images per second of make_dataset, the PIL loop and bare tf.data decoding. Lab 02.

    Returns a DataFrame with columns ``method``, ``images_per_s``, ``relative_to_pil``. The
    JPEGs are written (and removed) by the benchmark itself; the best of ``repeats`` runs
    counts.
    """
    if n <= 0 or image_size <= 0 or batch_size <= 0 or repeats <= 0:
        raise ValueError("n, image_size, batch_size and repeats must be positive ints, e.g. "
                         "pipeline_throughput(n=2000, image_size=64).")
    import tensorflow as tf

    from faceattr_lab import pipeline

    size = (image_size, image_size)
    with tempfile.TemporaryDirectory(prefix="faceattr_bench_") as folder:
        paths = _write_jpegs(Path(folder), n)
        df = pd.DataFrame({"path": paths,
                           "gender": pd.array(np.arange(n) % 2, dtype="Int64")})

        # Build each dataset once (tracing is not throughput), then interleave the repeats so
        # that load from other processes falls on every method alike.
        kit_ds = pipeline.make_dataset(df, "gender", image_size, batch_size)

        def decode(path):
            return pipeline.decode_and_resize(path, size)

        bare_ds = (tf.data.Dataset.from_tensor_slices(paths)
                   .map(decode, num_parallel_calls=tf.data.AUTOTUNE))
        runs = {
            "make_dataset": lambda: _consume(kit_ds),
            "PIL loop (studies)": lambda: len(_pil_loop(paths, image_size)),
            "bare tf.data decode": lambda: _consume(bare_ds),
        }
        for run in runs.values():  # warm up: file cache, first-iteration setup
            assert run() == n
        times = {name: [] for name in runs}
        for _ in range(repeats):
            for name, run in runs.items():
                start = time.perf_counter()
                run()
                times[name].append(time.perf_counter() - start)
        times = {name: min(values) for name, values in times.items()}
    table = pd.DataFrame({"method": list(times), "images_per_s": [n / t for t in times.values()]})
    table["relative_to_pil"] = table["images_per_s"] / (n / times["PIL loop (studies)"])
    return table


def machine() -> dict:
    """CPU model, core count, TensorFlow and Python versions of this machine. Lab 02."""
    import tensorflow as tf

    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"cpu": model, "cores": cores, "tensorflow": tf.__version__,
            "python": platform.python_version()}


def print_pipeline_benchmark(n: int = 2000, image_size: int = 64, batch_size: int = 64,
                             repeats: int = 3) -> pd.DataFrame:
    """Run :func:`pipeline_throughput` and print the table and the machine. Lab 02.

    ``faceattr-lab bench`` calls this. Returns the table.
    """
    table = pipeline_throughput(n=n, image_size=image_size, batch_size=batch_size,
                                repeats=repeats)
    info = machine()
    print(f"Input pipeline: {n} JPEGs 200x200 -> {image_size}x{image_size}, "
          f"batch {batch_size}, best of {repeats}")
    print(f"Machine: {info['cpu']}, {info['cores']} cores, TensorFlow {info['tensorflow']}, "
          f"Python {info['python']}")
    print(table.to_string(index=False, float_format=lambda v: f"{v:,.1f}"))
    kit = table.set_index("method")["images_per_s"]
    print(f"make_dataset reaches {kit['make_dataset'] / kit['bare tf.data decode']:.0%} of bare "
          f"decoding and {kit['make_dataset'] / kit['PIL loop (studies)']:.1f}x the PIL loop.")
    return table


__all__ = ["pipeline_throughput", "print_pipeline_benchmark", "machine"]
