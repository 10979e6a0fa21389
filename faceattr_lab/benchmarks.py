"""Benchmarks: input-pipeline throughput, seconds per epoch of each model family, and what
resume costs per epoch (``fl.train.fit`` against bare ``model.fit``). Lab 02.

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


# One (builder, schemes) pair per model family of the five studies.
def _families(image_size: int) -> dict:
    from faceattr_lab import labels, models

    three = [labels.get("gender"), labels.get("age_fairface9"), labels.get("race_utk5")]
    ordinal = [labels.get("gender"), labels.coral(21, 60)]
    shape = (image_size, image_size, 3)
    return {
        "custom CNN (study C)": (lambda: models.custom_cnn(shape, three), three),
        "custom CNN + CORAL (C)": (lambda: models.custom_cnn(shape, ordinal), ordinal),
        "Levi-Hassner (study D)": (lambda: models.levi_hassner(shape, three), three),
        "MobileNetV2 frozen + heads (B)": (
            lambda: models.transfer_model("MobileNetV2", shape, three, weights=None), three),
        "ResNet50V2 frozen + heads (B)": (
            lambda: models.transfer_model("ResNet50V2", shape, three, weights=None), three),
        "VGG16 gender gating (E)": (lambda: models.gender_conditioned(
            "VGG16", shape, three, mode="gating", weights=None), three),
        "VGG16 gender attention (E)": (lambda: models.gender_conditioned(
            "VGG16", shape, three, mode="attention", weights=None), three),
        "SupCon encoder + projections (A)": (lambda: models.projection_model(
            models.supcon_encoder("MobileNetV2", shape), three), None),
    }


def model_epoch_times(n: int = 1000, image_size: int = 64, batch_size: int = 64) -> pd.DataFrame:
    """Seconds per training epoch of each model family on ``n`` random images. Lab 03.

    Each model is built, compiled for its schemes (SupCon: the contrastive loss) and fitted for
    two epochs on in-memory random images, so decoding does not count; the second epoch is
    timed (the first includes graph tracing). Random labels: this measures speed, not learning.
    """
    import keras
    import tensorflow as tf

    from faceattr_lab import losses, models

    tf.get_logger().setLevel("ERROR")  # each new model retraces: expected here, not a warning
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (n, image_size, image_size, 3)).astype("float32")
    rows = []
    for family, (build, schemes) in _families(image_size).items():
        keras.utils.clear_session()
        model = build()
        if schemes is None:  # SupCon phase 1: class labels, contrastive loss per projection
            names = list(model.output_names)
            model.compile(optimizer="adam", loss={k: losses.SupConLoss() for k in names})
            targets = {k: rng.integers(0, 5, n) for k in names}
        else:
            models.compile_for(model, schemes)
            targets = {s.output: rng.integers(0, s.num_classes, n) for s in schemes}
        times = []

        class Timer(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                self.start = time.perf_counter()

            def on_epoch_end(self, epoch, logs=None):
                times.append(time.perf_counter() - self.start)

        model.fit(images, targets, batch_size=batch_size, epochs=2, verbose=0,
                  callbacks=[Timer()])
        counts = models.count_params(model)
        rows.append({"family": family, "params": counts["total"],
                     "trainable": counts["trainable"], "s_per_epoch": round(times[-1], 2),
                     "images_per_s": round(n / times[-1], 1)})
    return pd.DataFrame(rows)


def first_step_seconds(repeats: int = 3, image_size: int = 32,
                       batch_size: int = 16) -> pd.DataFrame:
    """Seconds to a new model's first training step, with and without pre-building. Lab 02.

    The model is lab 02's quick CNN (age + gender). Keras creates the optimizer's slots and
    the loss and metric trackers inside the first trace of the training step, and TensorFlow
    then traces it a second time; ``fl.train.build_for_training`` (which ``fl.train.fit``
    calls) creates them first. Each repeat builds a fresh model and times ``fit`` on one
    batch; the table gives the median per variant.
    """
    import keras
    import tensorflow as tf

    import faceattr_lab as fl

    schemes = [fl.labels.years(116.0), fl.labels.get("gender")]
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (batch_size, image_size, image_size, 3)).astype("float32")
    targets = {"age": rng.uniform(0, 1, batch_size).astype("float32"),
               "gender": rng.integers(0, 2, batch_size)}
    dataset = tf.data.Dataset.from_tensor_slices((images, targets)).batch(batch_size)
    times = {"Keras builds lazily (traced twice)": [], "build_for_training first": []}
    for _ in range(repeats):
        for variant, seconds in times.items():
            keras.utils.clear_session()
            fl.set_seed(0)
            model = fl.models.custom_cnn((image_size, image_size, 3), schemes,
                                         conv_filters=(16, 32, 64, 64), dense_units=64,
                                         bn_momentum=0.9)
            fl.models.compile_for(model, schemes)
            start = time.perf_counter()
            if variant == "build_for_training first":
                fl.train.build_for_training(model, dataset)
            model.fit(dataset, epochs=1, verbose=0)
            seconds.append(time.perf_counter() - start)
    return pd.DataFrame([{"variant": v, "median s to first step": round(float(np.median(t)), 2),
                          "repeats": len(t)} for v, t in times.items()])


def resume_overhead(n: int = 2000, image_size: int = 32, batch_size: int = 32, epochs: int = 3,
                    repeats: int = 7, n_val: int = 500) -> pd.DataFrame:
    """Seconds per epoch of bare ``model.fit`` and of ``fl.train.fit`` with resume on. Lab 02.

    Lab 02's model (study C's custom CNN, age in years + gender) on ``n`` random in-memory
    faces (``fl.pipeline.from_arrays``: shuffled, batch ``batch_size``) with ``n_val``
    validation faces. Two identical models are built and traced first; then each repeat
    times one call of ``epochs`` epochs of each variant, in alternating order, so load from
    other processes falls on both alike: ``model.fit(train, validation_data=val)`` against
    ``fl.train.fit(model, train, val, output_dir=<new folder>)`` (early stopping, CSV history,
    fingerprint, checkpoint and final save included). Returns one row per variant with the
    median, min and max wall seconds per epoch, ``overhead`` (median relative to bare fit),
    the median CPU seconds per epoch of this process and ``cpu overhead``: on a machine shared
    with other work, wall times swing by tens of percent and CPU time is the steadier figure.
    """
    if min(n, image_size, batch_size, epochs, repeats, n_val) <= 0:
        raise ValueError("n, image_size, batch_size, epochs, repeats and n_val must be positive "
                         "ints, e.g. resume_overhead(n=2000, epochs=3, repeats=5).")
    import keras

    import faceattr_lab as fl
    from faceattr_lab import experiments

    schemes = [fl.labels.years(116.0), fl.labels.get("gender")]
    rng = np.random.default_rng(0)

    def arrays(count):
        images = rng.integers(0, 256, (count, image_size, image_size, 3), dtype=np.uint8)
        return images, {"age": rng.uniform(0, 1, count).astype("float32"),
                        "gender": rng.integers(0, 2, count)}

    train_arrays, val_arrays = arrays(n), arrays(n_val)
    shape = (image_size, image_size, 3)

    def build():
        fl.set_seed(0)
        model = experiments.build_custom_cnn(experiments.DEFAULT_KNOBS, schemes, shape)
        fl.models.compile_for(model, schemes, loss_weights={"age": 2.0})
        return model

    keras.utils.clear_session()
    train_ds = fl.pipeline.from_arrays(*train_arrays, batch_size, training=True)
    val_ds = fl.pipeline.from_arrays(*val_arrays, max(batch_size, experiments.EVAL_BATCH))
    bare_model, kit_model = build(), build()
    times = {"bare model.fit": [], "fl.train.fit (resumable)": []}
    cpu = {variant: [] for variant in times}
    with tempfile.TemporaryDirectory(prefix="faceattr_resume_bench_") as folder:
        def bare(run_epochs):
            bare_model.fit(train_ds, validation_data=val_ds, epochs=run_epochs, verbose=0,
                           shuffle=False)  # as fl.train.fit: the pipeline shuffles itself

        def kit(run_epochs, tag):
            fl.train.fit(kit_model, train_ds, val_ds, epochs=run_epochs, verbose=0,
                         output_dir=Path(folder) / tag)

        bare(1)                 # trace both models before timing
        kit(1, "warm-up")
        for repeat in range(repeats):
            order = list(times) if repeat % 2 == 0 else list(reversed(times))
            for variant in order:
                start, start_cpu = time.perf_counter(), time.process_time()
                if variant == "bare model.fit":
                    bare(epochs)
                else:
                    kit(epochs, f"run{repeat}")
                times[variant].append((time.perf_counter() - start) / epochs)
                cpu[variant].append((time.process_time() - start_cpu) / epochs)
    base = float(np.median(times["bare model.fit"]))
    base_cpu = float(np.median(cpu["bare model.fit"]))
    return pd.DataFrame([{"variant": variant, "median s/epoch": float(np.median(values)),
                          "min s/epoch": float(np.min(values)),
                          "max s/epoch": float(np.max(values)),
                          "overhead": float(np.median(values)) / base - 1.0,
                          "median cpu s/epoch": float(np.median(cpu[variant])),
                          "cpu overhead": float(np.median(cpu[variant])) / base_cpu - 1.0,
                          "repeats": len(values)} for variant, values in times.items()])


def print_resume_benchmark(n: int = 2000, epochs: int = 3, repeats: int = 7) -> pd.DataFrame:
    """Run :func:`resume_overhead` and print the table, the overhead and the machine. Lab 02.

    ``faceattr-lab bench resume`` calls this. Returns the table.
    """
    table = resume_overhead(n=n, epochs=epochs, repeats=repeats)
    info = machine()
    print(f"Resume overhead: lab 02's custom CNN at 32 px, {n} faces, batch 32, "
          f"{epochs} epochs per call, median of {repeats} interleaved calls")
    print(f"Machine: {info['cpu']}, {info['cores']} cores, TensorFlow {info['tensorflow']}")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    kit = table.set_index("variant").loc["fl.train.fit (resumable)"]
    print(f"fl.train.fit costs {kit['overhead']:+.1%} wall time per epoch against bare "
          f"model.fit ({kit['cpu overhead']:+.1%} CPU time).")
    return table


def print_model_benchmark(n: int = 1000, image_size: int = 64) -> pd.DataFrame:
    """Run :func:`model_epoch_times` and print the table and the machine. Lab 03."""
    table = model_epoch_times(n=n, image_size=image_size)
    info = machine()
    print(f"Seconds per epoch: {n} images at {image_size} px, batch 64, second epoch timed")
    print(f"Machine: {info['cpu']}, {info['cores']} cores, TensorFlow {info['tensorflow']}")
    print(table.to_string(index=False))
    print("\nGraph building: a new model's first training step (lab 02's quick CNN, 32 px)")
    print(first_step_seconds().to_string(index=False))
    return table


def transfer_gain(n: int = 3000, seeds=(42, 7, 8), image_size: int = 32) -> pd.DataFrame:
    """Linear heads on frozen SmallVGG features: synthetic-pretrained vs random weights. Lab 03.

    For each seed: the quick profile's synthetic UTKFace set of ``n`` faces (that seed), split
    as lab 03 splits it; one logistic-regression head per task (scikit-learn, on features
    standardised with the training split's statistics) on the pretrained backbone
    (``fl.pretraining.synthetic_weights()``) and on the same network with random weights
    (seeded); validation accuracy beside the majority class. One row per seed and task.
    """
    import keras
    from sklearn.linear_model import LogisticRegression

    from faceattr_lab import datasets, labels, pipeline, pretraining
    from faceattr_lab.evaluate import majority_baseline
    from faceattr_lab.models.backbones import backbone

    weights = pretraining.synthetic_weights()
    schemes = [labels.get("gender"), labels.get("age_fairface9"), labels.get("race_utk5")]
    rows = []
    for seed in seeds:
        table, _ = labels.select(datasets.load("synthetic", layout="utkface", n=n, seed=seed),
                                 schemes)
        parts = pipeline.split(table, seed=seed, stratify=["gender", "race"])
        images = {k: pipeline.load_images(part["path"].tolist(), image_size)
                  for k, part in parts.items() if k in ("train", "val")}
        truth = {k: {s.output: s.encode(parts[k]) for s in schemes} for k in images}
        for name, source in (("pretrained", weights), ("random", None)):
            keras.utils.set_random_seed(seed)
            base = backbone("SmallVGG", (image_size, image_size, 3), weights=source)
            feats = {k: base.predict(v, batch_size=256, verbose=0) for k, v in images.items()}
            mean, std = feats["train"].mean(axis=0), feats["train"].std(axis=0)
            std = np.where(std > 0, std, 1.0)
            feats = {k: (v - mean) / std for k, v in feats.items()}
            for scheme in schemes:
                y_train, y_val = truth["train"][scheme.output], truth["val"][scheme.output]
                head = LogisticRegression(max_iter=3000).fit(feats["train"], y_train)
                rows.append({"seed": seed, "task": scheme.output, "weights": name,
                             "accuracy": float(head.score(feats["val"], y_val)),
                             "majority": majority_baseline(y_train, y_val)["accuracy"],
                             "val faces": len(y_val)})
            keras.backend.clear_session()
    return pd.DataFrame(rows)


def print_transfer_benchmark(n: int = 3000, seeds=(42, 7, 8)) -> pd.DataFrame:
    """Run :func:`transfer_gain` and print per-task means and seed spreads. Lab 03."""
    table = transfer_gain(n=n, seeds=seeds)
    wide = table.pivot_table(index=["task", "seed"], columns="weights", values="accuracy")
    wide["majority"] = table.groupby(["task", "seed"])["majority"].first()
    summary = wide.groupby("task").agg(["mean", "std"]).round(3)
    info = machine()
    print(f"Linear heads on frozen SmallVGG features, validation accuracy; {n} synthetic faces "
          f"per seed, seeds {list(seeds)}")
    print(f"Machine: {info['cpu']}, {info['cores']} cores, TensorFlow {info['tensorflow']}")
    print(wide.round(3).to_string())
    print("\nmean and std over seeds")
    print(summary.to_string())
    return table


def grading_speed(lab: str = "00", n: int = 16, jobs: int = 2, folder=None) -> pd.DataFrame:
    """Seconds per graded submission, one at a time and ``jobs`` at once. Lab 00.

    The teacher copy of ``lab`` is copied ``n`` times as submissions and graded by
    ``fl.course.grader.grade`` twice (``jobs=1``, then ``jobs``), each from scratch.
    One row per run: jobs, submissions, seconds, seconds per submission, all scored 1.
    """
    import shutil
    import tempfile
    import time
    from pathlib import Path

    from faceattr_lab.course import grader, runner

    teacher = runner.find_lab(lab)
    root = Path(folder) if folder else Path(tempfile.mkdtemp(prefix="faceattr-bench-grading-"))
    subs = root / "submissions"
    subs.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        shutil.copy2(teacher, subs / f"student{i:02d}.ipynb")
    rows = []
    for workers in dict.fromkeys((1, jobs)):
        start = time.perf_counter()
        table = grader.grade(teacher, subs, output=root / f"jobs{workers}", echo=False,
                             jobs=workers, force=True)
        seconds = time.perf_counter() - start
        rows.append({"jobs": workers, "submissions": n, "seconds": round(seconds, 1),
                     "seconds per submission": round(seconds / n, 2),
                     "all scored 1": bool((table["score"] == 1.0).all())})
    if folder is None:
        shutil.rmtree(root, ignore_errors=True)
    return pd.DataFrame(rows)


def print_grading_benchmark(lab: str = "00", n: int = 16, jobs: int = 2) -> pd.DataFrame:
    """Run :func:`grading_speed` and print the table, the speed-up and the machine. Lab 00.

    ``faceattr-lab bench grading`` calls this. Returns the table.
    """
    table = grading_speed(lab=lab, n=n, jobs=jobs)
    print(table.to_string(index=False))
    if len(table) == 2:
        print(f"speed-up of --jobs {jobs} over --jobs 1: "
              f"{table['seconds'].iloc[0] / table['seconds'].iloc[1]:.2f}x")
    info = machine()
    print(", ".join(f"{k}: {v}" for k, v in info.items()))
    return table


def predict_speed(repeats: int = 5, backbone: str | None = "MobileNetV2") -> pd.DataFrame:
    """Seconds per face of ``faceattr-lab predict``'s stages on the CPU, best of ``repeats``.
    Lab 09.

    Detection: MTCNN (``fl.faces.detect``) on scikit-image's astronaut photo (512 x 512, one
    face), per photo; alignment: ``fl.faces.align`` of that face; the model: 64 copies of the
    aligned face through ``predict_on_batch`` at batch 1 and at batch 64, for the kit's quick
    model (the synthetic-pretrained SmallVGG at 32 px with three softmax heads, 9 + 5 + 2
    classes) and, unless ``backbone`` is None, that backbone at 224 px with random weights
    (an ImageNet-shaped network: the cost of a full-profile model, not its accuracy).
    One row per stage and model.
    """
    import keras
    from skimage import data

    from faceattr_lab import faces, labels, pretraining
    from faceattr_lab.models.backbones import backbone as make_backbone
    from faceattr_lab.models.heads import add_heads, count_params

    photo = data.astronaut()
    found = faces.detect(photo)
    if len(found) != 1:
        raise RuntimeError(f"MTCNN found {len(found)} faces on the astronaut, expected 1.")
    rows = [{"stage": "detection (MTCNN)", "model": "-", "input": "512x512 photo", "batch": 1,
             "parameters": None,
             "s / face": faces.seconds_per_face(lambda b: faces.detect(b[0]), [photo],
                                                repeats=repeats)},
            {"stage": "alignment (rotate, crop)", "model": "-", "input": "512x512 photo",
             "batch": 1, "parameters": None,
             "s / face": faces.seconds_per_face(lambda b: faces.align(b[0], found[0], 224),
                                                [photo], repeats=repeats)}]
    schemes = [labels.get(n) for n in ("gender", "age_fairface9", "race_utk5")]
    specs = [("SmallVGG (quick, synthetic weights)", "SmallVGG", 32,
              pretraining.synthetic_weights())]
    if backbone is not None:
        specs.append((f"{backbone} (random weights)", backbone, 224, None))
    for name, net, size, weights in specs:
        keras.utils.set_random_seed(0)
        base = make_backbone(net, (size, size, 3), weights=weights)
        images = keras.Input((size, size, 3))
        model = keras.Model(images, add_heads(base(images), schemes))
        crops = np.repeat(faces.align(photo, found[0], size)[None].astype("float32"), 64, 0)
        for batch in (1, 64):
            rows.append({"stage": "model", "model": name, "input": f"{size}x{size} crop",
                         "batch": batch, "parameters": count_params(model)["total"],
                         "s / face": faces.seconds_per_face(model.predict_on_batch, crops,
                                                            batch, repeats)})
    table = pd.DataFrame(rows)
    table["faces / s"] = 1 / table["s / face"]
    return table


def print_predict_benchmark(repeats: int = 5, backbone: str | None = "MobileNetV2") -> pd.DataFrame:
    """Run :func:`predict_speed` and print the table and the machine. Lab 09.

    ``faceattr-lab bench predict`` calls this. Returns the table.
    """
    table = predict_speed(repeats=repeats, backbone=backbone)
    info = machine()
    print(f"Seconds per face on the CPU, best of {repeats}: detection per photo, the model per "
          "face at batch 1 and 64")
    print(f"Machine: {info['cpu']}, {info['cores']} cores, TensorFlow {info['tensorflow']}")
    shown = table.assign(**{"s / face": table["s / face"].map(lambda v: f"{v:.5f}"),
                            "faces / s": table["faces / s"].map(lambda v: f"{v:,.0f}"),
                            "parameters": table["parameters"].map(
                                lambda v: "-" if pd.isna(v) else f"{v / 1e6:.2f} M")})
    print(shown.to_string(index=False))
    return table


__all__ = ["grading_speed", "print_grading_benchmark", "pipeline_throughput",
           "print_pipeline_benchmark", "machine", "model_epoch_times",
           "first_step_seconds", "print_model_benchmark", "resume_overhead",
           "print_resume_benchmark", "transfer_gain", "print_transfer_benchmark",
           "predict_speed", "print_predict_benchmark"]
