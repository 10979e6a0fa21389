"""The ``faceattr-lab`` command: data, labs, benchmarks and environment info. Lab 00.

::

    faceattr-lab info
    faceattr-lab data download NAME [--dest DIR]
    faceattr-lab data verify NAME --root DIR
    faceattr-lab data synth --layout L [--n N] [--seed S] [--image-size P] [--out DIR]
    faceattr-lab labs run [LAB ...] [-p NAME VALUE ...] [--output DIR]
    faceattr-lab labs student [--output DIR] [--kit-url URL]
    faceattr-lab labs report GRADES_DIR
    faceattr-lab labs grade LAB SUBMISSIONS [-p NAME VALUE ...] [--output DIR] [--jobs N]
        [--timeout S] [--memory-mb M] [--force] [--scheduler ADDRESS]
    faceattr-lab bench grading [--lab LAB] [--n N] [--jobs N]
    faceattr-lab bench pipeline [--n N]
    faceattr-lab bench models [--n N] [--image-size PX]
    faceattr-lab bench resume [--n N] [--epochs E] [--repeats R]
    faceattr-lab bench predict [--repeats R] [--backbone NAME | --no-backbone]
    faceattr-lab predict IMAGES... --model M [--out CSV] [--min-confidence C] [--margin F]
        [--schemes S ...]

Heavy modules (TensorFlow, pandas, papermill) load inside the command that needs them, so
``faceattr-lab --help`` answers at once. A mistake in the arguments prints one line to stderr
and exits with status 2; a failed check or lab exits with status 1.
"""

from __future__ import annotations

import argparse
import ast
import platform
import sys
from importlib import metadata
from pathlib import Path

from faceattr_lab import __version__

DATASET_NAMES = ("utkface", "fairface", "afad", "adience")
SYNTH_LAYOUTS = DATASET_NAMES


def _parse_value(text: str):
    """A ``-p`` value as Python would read it (int, float, bool, None, list), else the string."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


# ---- data ---------------------------------------------------------------------------------

def _cmd_data_download(args) -> int:
    import urllib.error

    from faceattr_lab.datasets import downloads as dl

    try:
        path = dl.download(args.name, dest=args.dest)
    except (dl.ManualDownloadRequired, ConnectionError) as error:
        print(f"faceattr-lab: {error}", file=sys.stderr)
        return 1
    except urllib.error.HTTPError as error:
        print(f"faceattr-lab: {error.url} answered HTTP {error.code} ({error.reason}); the file "
              f"may have moved: check {dl.REGISTRY[args.name].homepage}", file=sys.stderr)
        return 1
    except urllib.error.URLError as error:
        print(f"faceattr-lab: could not connect ({error.reason}); check the network and run "
              "the same command again to resume", file=sys.stderr)
        return 1
    print(path)
    return 0


def _cmd_data_verify(args) -> int:
    import pandas as pd

    from faceattr_lab.datasets import downloads as dl

    root = Path(args.root).expanduser()
    if not root.is_dir():
        raise ValueError(f"--root {root} is not a folder; pass the folder the dataset was "
                         f"unpacked into (e.g. the one `faceattr-lab data download {args.name}` "
                         "printed).")
    counts, excluded = dl.verify(args.name, root)
    with pd.option_context("display.width", 160, "display.max_colwidth", 80):
        print(f"{dl.REGISTRY[args.name].title} at {root}")
        print(counts.to_string(index=False))
        print()
        if len(excluded):
            print(f"excluded ({int(excluded['count'].sum())}), by reason:")
            print(excluded.to_string(index=False))
        else:
            print("excluded: none")
    ok = bool(counts["ok"].all())
    print("\ncounts match the published ones" if ok else
          "\ncounts DIFFER from the published ones: the copy is incomplete or a different "
          "version (see the exclusions above)")
    return 0 if ok else 1


def _cmd_data_synth(args) -> int:
    from faceattr_lab.datasets import synthetic

    if args.out:
        written = synthetic.make_synthetic(Path(args.out).expanduser(), args.layout, args.n,
                                           seed=args.seed, image_size=args.image_size)
    else:  # the kit's cache: reused when the same arguments were used before
        written = synthetic.synthetic_dataset(layout=args.layout, n=args.n, seed=args.seed,
                                              image_size=args.image_size)
    print(f"synthetic {args.layout}-layout set of {args.n} images ({args.image_size} px, "
          f"seed {args.seed}) at {written}")
    print(f"load it with fl.datasets.load_{args.layout}({str(written)!r})")
    return 0


# ---- predict ------------------------------------------------------------------------------

def _image_files(paths) -> tuple[list[Path], list[Path]]:
    """(files, skipped): files as given and, for folders, their images (recursively, by
    extension), in order; skipped: the folders' other files, which the summary names."""
    from faceattr_lab.faces import IMAGE_EXTENSIONS

    files, skipped = [], []
    for text in paths:
        path = Path(text).expanduser()
        if path.is_dir():
            for p in sorted(p for p in path.rglob("*") if p.is_file()):
                (files if p.suffix.lower() in IMAGE_EXTENSIONS else skipped).append(p)
        elif path.exists():
            files.append(path)
        else:
            raise FileNotFoundError(f"{path} does not exist; pass image files or folders.")
    return files, skipped


def _cmd_predict(args) -> int:
    """One CSV row per face found (``status`` ok), per image without a face (``no face``) and
    per unreadable file (``unreadable: <reason>``). Lab 09."""
    import csv

    from PIL import Image
    from tqdm import tqdm

    from faceattr_lab import faces as ff
    from faceattr_lab import labels
    from faceattr_lab.models import serving

    if not 0 <= args.min_confidence <= 1:
        raise ValueError(f"--min-confidence {args.min_confidence}: pass a value in [0, 1].")
    if not 0 <= args.margin <= 2:
        raise ValueError(f"--margin {args.margin}: pass a fraction of the face box in [0, 2], "
                         f"e.g. 0.25 (FairFace's crops).")
    model_path = Path(args.model).expanduser()
    if not model_path.is_file():
        raise FileNotFoundError(f"--model {model_path} is not a file; pass a saved .keras model.")
    files, skipped = _image_files(args.images)
    if not files:
        raise ValueError("no image files found; pass image files or folders holding "
                         f"{', '.join(ff.IMAGE_EXTENSIONS)} files.")
    model = serving.load_model(model_path)  # registers the kit's layers first
    schemes = ([labels.get(s) for s in args.schemes] if args.schemes
               else ff.infer_schemes(model))
    columns = ff.table_columns(schemes)
    rows = []
    for path in tqdm(files, desc="images", unit="image", disable=len(files) <= 20,
                     file=sys.stderr):
        try:
            image = ff.load_image(path)
        except (OSError, ValueError, Image.DecompressionBombError) as error:
            rows.append({"image": str(path), "status": f"unreadable: {error}"})
            continue
        found = ff.predict_faces(model, [image], schemes, min_confidence=args.min_confidence,
                                 margin=args.margin)[0]
        rows += ff.table_rows(str(path), found, schemes)
    out = Path(args.out).expanduser()
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, columns)
        writer.writeheader()
        writer.writerows(rows)
    counts = {}
    for row in rows:
        key = row["status"].split(":")[0]
        counts[key] = counts.get(key, 0) + 1
    print(f"{len(files)} images: {counts.get('ok', 0)} faces, {counts.get('no face', 0)} without "
          f"a face, {counts.get('unreadable', 0)} unreadable; {out}")
    if skipped:  # named, not dropped silently: a photo saved as .heic would land here
        names = ", ".join(p.name for p in skipped[:5]) + (", ..." if len(skipped) > 5 else "")
        print(f"{len(skipped)} other file(s) in the folders skipped, not images by their "
              f"extension ({', '.join(ff.IMAGE_EXTENSIONS)}): {names}")
    return 0


# ---- labs, bench, info --------------------------------------------------------------------

def _cmd_labs_run(args) -> int:
    from faceattr_lab.course import runner

    parameters = {name: _parse_value(value) for name, value in args.parameter or ()}
    table = runner.run_labs(labs=args.labs or None, parameters=parameters, output=args.output)
    failed = table[table["status"] != "ok"] if len(table) else table
    if len(failed):
        print(f"{len(failed)} of {len(table)} labs failed: {', '.join(map(str, failed['lab']))}",
              file=sys.stderr)
        return 1
    return 0


def _cmd_labs_student(args) -> int:
    from faceattr_lab.course import release

    extra = {"kit_url": args.kit_url} if getattr(args, "kit_url", None) else {}
    try:
        written = release.build_student(output=args.output, **extra)
    except release.ReleaseFailed as failed:
        print(f"faceattr-lab: {failed}", file=sys.stderr)
        return 1
    for path in written or ():
        print(path)
    return 0


def _cmd_labs_report(args) -> int:
    from faceattr_lab.course import cohort

    written = cohort.report(args.grades_dir)
    for name, path in written.items():
        if name != "feedback":
            print(path)
    feedback = sorted(written["feedback"].values())
    print(f"feedback for {len(feedback)} students in {feedback[0].parent if feedback else '-'}:")
    for path in feedback:
        print(f"  {path.name}")
    return 0


def _cmd_labs_grade(args) -> int:
    from faceattr_lab.course import grader

    parameters = {name: _parse_value(value) for name, value in args.parameter or ()}
    grader.grade(args.lab, args.submissions, output=args.output, parameters=parameters,
                 jobs=args.jobs, timeout=args.timeout, memory_mb=args.memory_mb, force=args.force,
                 scheduler=args.scheduler)
    return 0


def _cmd_bench_grading(args) -> int:
    from faceattr_lab import benchmarks

    benchmarks.print_grading_benchmark(lab=args.lab, n=args.n, jobs=args.jobs)
    return 0


def _cmd_bench_pipeline(args) -> int:
    from faceattr_lab import benchmarks

    benchmarks.print_pipeline_benchmark(n=args.n)
    return 0


def _cmd_bench_models(args) -> int:
    from faceattr_lab import benchmarks

    benchmarks.print_model_benchmark(n=args.n, image_size=args.image_size)
    return 0


def _cmd_bench_resume(args) -> int:
    from faceattr_lab import benchmarks

    benchmarks.print_resume_benchmark(n=args.n, epochs=args.epochs, repeats=args.repeats)
    return 0


def _cmd_bench_transfer(args) -> int:
    from faceattr_lab import benchmarks

    benchmarks.print_transfer_benchmark(n=args.n, seeds=tuple(args.seeds))
    return 0


def _cmd_bench_predict(args) -> int:
    from faceattr_lab import benchmarks

    benchmarks.print_predict_benchmark(repeats=args.repeats,
                                       backbone=None if args.no_backbone else args.backbone)
    return 0


def _cmd_weights(args) -> int:
    from faceattr_lab import pretraining

    path = pretraining.synthetic_weights(rebuild=args.rebuild, verbose=2 if args.verbose else 0)
    manifest = pretraining.cached(path)
    print(f"SmallVGG pretrained on synthetic attribute faces: {path}")
    print(f"  made in {manifest['seconds']} s; sha256 {manifest['sha256'][:16]}...")
    for name, scores in manifest["validation"].items():
        print(f"  {name:<10} validation accuracy {scores['accuracy']:.3f} "
              f"(majority {scores['majority']:.3f})")
    return 0


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def _cmd_info(args) -> int:
    from faceattr_lab import config

    try:
        gpu = "yes" if config.gpu_available() else "no (CPU only)"
    except ImportError:
        gpu = "unknown (TensorFlow is not installed)"
    rows = [
        ("faceattr-lab", __version__),
        ("python", f"{platform.python_version()} ({sys.executable})"),
        ("tensorflow", _version("tensorflow")),
        ("keras", _version("keras")),
        ("GPU", gpu),
        ("Colab", "yes" if config.in_colab() else "no"),
        ("data folder", f"{config.data_dir()}  (${config.DATA_ENV} overrides)"),
        ("output folder", f"{config.output_dir()}  (${config.OUTPUT_ENV} overrides)"),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    return 0


# ---- parser -------------------------------------------------------------------------------

def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r}: pass a number of seconds above 0, e.g. 600")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a number above 0, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of ``faceattr-lab`` (sub-commands data, labs, bench, info). Lab 00."""
    parser = argparse.ArgumentParser(
        prog="faceattr-lab",
        description="Course kit on classifying gender, age and race from faces (Keras 3).",
    )
    parser.add_argument("--version", action="version", version=f"faceattr-lab {__version__}")
    groups = parser.add_subparsers(dest="group", metavar="COMMAND", required=True)

    data = groups.add_parser("data", help="download, verify or synthesise datasets")
    data_cmds = data.add_subparsers(dest="command", metavar="ACTION", required=True)
    p = data_cmds.add_parser("download", help="download a dataset (or print the manual steps)")
    p.add_argument("name", choices=DATASET_NAMES)
    p.add_argument("--dest", help="folder to put it in (default: the data folder / NAME)")
    p.set_defaults(func=_cmd_data_download)
    p = data_cmds.add_parser("verify", help="load a dataset with checks and compare counts")
    p.add_argument("name", choices=DATASET_NAMES)
    p.add_argument("--root", required=True, help="folder the dataset was unpacked into")
    p.set_defaults(func=_cmd_data_verify)
    p = data_cmds.add_parser("synth", help="write a synthetic dataset in a real one's layout")
    p.add_argument("--layout", required=True, choices=SYNTH_LAYOUTS)
    p.add_argument("--n", type=_positive_int, default=300, help="number of images (300)")
    p.add_argument("--seed", type=int, default=42, help="random seed (42)")
    p.add_argument("--image-size", type=_positive_int, default=64, help="pixels per side (64)")
    p.add_argument("--out", help="folder to write to (default: the kit's synthetic cache)")
    p.set_defaults(func=_cmd_data_synth)

    labs = groups.add_parser("labs", help="run the labs headlessly or build student copies")
    lab_cmds = labs.add_subparsers(dest="command", metavar="ACTION", required=True)
    p = lab_cmds.add_parser("run", help="run labs with papermill and print a summary")
    p.add_argument("labs", nargs="*", metavar="LAB", help='e.g. 00 or 03_transfer (default: all)')
    p.add_argument("-p", "--parameter", nargs=2, action="append", metavar=("NAME", "VALUE"),
                   help="override a parameter in every lab, e.g. -p EPOCHS 1 (repeatable)")
    p.add_argument("--output", help="folder for executed notebooks and results")
    p.set_defaults(func=_cmd_labs_run)
    p = lab_cmds.add_parser("student", help="write student copies (solutions removed)")
    p.add_argument("--output", help="folder to write them to (default: outputs/student)")
    p.add_argument("--kit-url", metavar="URL",
                   help="where students' Colab installs the kit: git+https://.../faceattr-lab@TAG, "
                        "a wheel's https URL, or faceattr-lab==VERSION (default: the labs' own)")
    p.set_defaults(func=_cmd_labs_student)
    p = lab_cmds.add_parser("report", help="pass rates, score histogram, common errors and "
                                           "feedback files of a graded lab")
    p.add_argument("grades_dir", metavar="GRADES_DIR",
                   help="the folder holding grades.csv (e.g. outputs/grades/02_custom_cnn...)")
    p.set_defaults(func=_cmd_labs_report)
    p = lab_cmds.add_parser("grade", help="run students' submissions and score their self-checks")
    p.add_argument("lab", metavar="LAB", help="the teacher lab, e.g. 02")
    p.add_argument("submissions", metavar="SUBMISSIONS",
                   help="folder of submitted notebooks (one per student, or one folder each)")
    p.add_argument("-p", "--parameter", nargs=2, action="append", metavar=("NAME", "VALUE"),
                   help="override a parameter in every submission (repeatable)")
    p.add_argument("--output", help="folder for runs and grades.csv (default: outputs/grades/LAB)")
    p.add_argument("--jobs", type=_positive_int, default=1,
                   help="submissions graded at once, each in its own process (default 1)")
    p.add_argument("--timeout", type=_positive_float, default=1800,
                   help="wall-clock seconds a submission may run (default 1800)")
    p.add_argument("--memory-mb", type=_positive_int, default=None,
                   help="resident memory cap of a submission's kernel, in MB (default: none)")
    p.add_argument("--force", action="store_true",
                   help="grade again the students already in grades.csv (default: skip them)")
    p.add_argument("--scheduler", metavar="ADDRESS", default=None,
                   help="grade on a Dask cluster, e.g. tcp://10.0.0.5:8786 (needs the "
                        "[cluster] extra)")
    p.set_defaults(func=_cmd_labs_grade)

    bench = groups.add_parser("bench", help="benchmarks")
    bench_cmds = bench.add_subparsers(dest="command", metavar="ACTION", required=True)
    p = bench_cmds.add_parser("pipeline", help="input-pipeline throughput (images/s)")
    p.add_argument("--n", type=_positive_int, default=2000, help="images to time (2000)")
    p.set_defaults(func=_cmd_bench_pipeline)
    p = bench_cmds.add_parser("models", help="seconds per epoch of each model family")
    p.add_argument("--n", type=_positive_int, default=1000, help="images per epoch (1000)")
    p.add_argument("--image-size", type=_positive_int, default=64, help="pixels (64)")
    p.set_defaults(func=_cmd_bench_models)
    p = bench_cmds.add_parser("resume", help="seconds per epoch of fl.train.fit (resumable) "
                                             "against bare model.fit, and the overhead")
    p.add_argument("--n", type=_positive_int, default=2000, help="training faces (2000)")
    p.add_argument("--epochs", type=_positive_int, default=3, help="epochs per timed call (3)")
    p.add_argument("--repeats", type=_positive_int, default=7,
                   help="timed calls of each variant, interleaved; the median counts (7)")
    p.set_defaults(func=_cmd_bench_resume)
    p = bench_cmds.add_parser("transfer", help="linear heads on the synthetic-pretrained SmallVGG "
                                               "against random weights and the majority class")
    p.add_argument("--n", type=_positive_int, default=3000, help="synthetic faces per seed (3000)")
    p.add_argument("--seeds", type=int, nargs="+", default=[42, 7, 8], help="data seeds (42 7 8)")
    p.set_defaults(func=_cmd_bench_transfer)
    p = bench_cmds.add_parser("grading", help="seconds per graded submission and the speed-up "
                                              "of --jobs over one at a time")
    p.add_argument("--lab", default="00", help="the teacher lab copied as submissions (default 00)")
    p.add_argument("--n", type=_positive_int, default=16, help="submissions (default 16)")
    p.add_argument("--jobs", type=_positive_int, default=2, help="parallel jobs compared with 1")
    p.set_defaults(func=_cmd_bench_grading)
    p = bench_cmds.add_parser("predict", help="seconds per face of face detection and of a "
                                              "model at batch 1 and 64 (lab 09)")
    p.add_argument("--repeats", type=_positive_int, default=5,
                   help="timed passes of each; the best counts (5)")
    p.add_argument("--backbone", default="MobileNetV2",
                   help="a 224-px ImageNet-shaped backbone timed with random weights "
                        "(default MobileNetV2; any of fl.models.BACKBONES)")
    p.add_argument("--no-backbone", action="store_true",
                   help="time only detection and the kit's quick 32-px model")
    p.set_defaults(func=_cmd_bench_predict)

    p = groups.add_parser("weights", help="pretrain (once) the SmallVGG backbone the quick "
                                          "profile uses, and print where it is")
    p.add_argument("--rebuild", action="store_true", help="train again even if cached")
    p.add_argument("--verbose", action="store_true", help="one line per training epoch")
    p.set_defaults(func=_cmd_weights)

    p = groups.add_parser("predict", help="detect faces in photos and predict each one's "
                                          "gender / age / race with a saved kit model (CSV)")
    p.add_argument("images", nargs="+", metavar="IMAGES",
                   help="image files or folders (searched recursively)")
    p.add_argument("--model", required=True, metavar="M", help="a saved kit model (.keras)")
    p.add_argument("--out", default="predictions.csv",
                   help="CSV to write, one row per face (default predictions.csv)")
    p.add_argument("--min-confidence", type=float, default=0.9, metavar="C",
                   help="MTCNN confidence a face needs (default 0.9)")
    p.add_argument("--margin", type=float, default=0.25,
                   help="crop margin around the face box, a fraction of its side (default "
                        "0.25, FairFace's crops)")
    p.add_argument("--schemes", nargs="+", metavar="S",
                   help="each head's label scheme (default: from its number of classes: "
                        "2 gender, 9 age_fairface9, 5 race_utk5, 7 race_fairface7; name "
                        "regression and CORAL age heads, e.g. age_years_116, coral_21_60)")
    p.set_defaults(func=_cmd_predict)

    p = groups.add_parser("info", help="versions, GPU, data and output folders")
    p.set_defaults(func=_cmd_info)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run ``faceattr-lab`` with ``argv`` (default: the command line); return the exit status.

    Lab 00.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as stop:  # --help, --version or a usage error (argparse printed it)
        return stop.code if isinstance(stop.code, int) else 2
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, FileExistsError) as error:
        print(f"faceattr-lab: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("faceattr-lab: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
