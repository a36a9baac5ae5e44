"""The three public datasets: where they live on disk, and how to fetch them.

``sartaj`` and ``nickparvar`` are four-class datasets with an official Training/Testing
split. ``br35h`` is a binary tumour / no-tumour collection with no split: it is only
ever used to evaluate (external validity), never to train or select a model.

A dataset is found, in this order:

1. an explicit ``data_dir`` (a folder of dataset folders, or one dataset folder);
2. the ``BRAIN_MRI_DATA`` environment variable (a folder of dataset folders);
3. ``data/raw/<folder>`` inside the project;
4. a download with kagglehub (plus, for Sartaj, the public GitHub archive), linked
   into ``data/raw/`` so that step 3 finds it next time.

A location given explicitly (1 or 2) is the only place looked at: when it does not
exist, holds no copy of the dataset, or holds an incomplete one, that is an error that
names the location and what is missing, never a silent fall back to another copy.

Dataset folders are read-only for the project: nothing is ever written into them.
"""

from __future__ import annotations

import hashlib
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from brainmri.core import cache, paths
from brainmri.core.errors import DatasetNotFoundError
from brainmri.core.files import atomic_write_text

ENV_VAR = "BRAIN_MRI_DATA"


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    title: str  # the name a reader sees in tables, figures and prose
    folder: str  # folder name under BRAIN_MRI_DATA or data/raw
    kaggle: str  # kagglehub handle
    class_folders: dict[str, str]  # on-disk class folder -> canonical class name
    citation_key: str
    archive_url: str | None = None  # fallback download when Kaggle is unavailable
    split_folders: dict[str, str] = field(
        default_factory=lambda: {"Training": "train", "Testing": "test"}
    )  # on-disk split folder ("." for none) -> official split
    note: str = ""

    @property
    def kaggle_url(self) -> str:
        return f"https://www.kaggle.com/datasets/{self.kaggle}"

    @property
    def labels(self) -> tuple[str, ...]:
        """The canonical labels of this dataset, in folder order."""
        return tuple(dict.fromkeys(self.class_folders.values()))

    @property
    def evaluation_only(self) -> bool:
        """No Training folder: the dataset can score a model, never train one."""
        return "train" not in self.split_folders.values()

    def layout(self) -> str:
        """The expected folder layout, for error messages."""
        splits = [s for s in self.split_folders if s != "."]
        inner = "{" + ",".join(self.class_folders) + "}/"
        return f"{self.folder}/" + ("{" + ",".join(splits) + "}/" if splits else "") + inner


DATASETS: dict[str, DatasetSpec] = {
    "sartaj": DatasetSpec(
        name="sartaj",
        title="Sartaj",
        folder="brain-tumor-classification-mri",
        kaggle="sartajbhuvaji/brain-tumor-classification-mri",
        class_folders={
            "glioma_tumor": "glioma",
            "meningioma_tumor": "meningioma",
            "no_tumor": "no_tumor",
            "pituitary_tumor": "pituitary",
        },
        citation_key="bhuvaji2020",
        archive_url=(
            "https://github.com/SartajBhuvaji/Brain-Tumor-Classification-DataSet"
            "/archive/refs/heads/master.zip"
        ),
    ),
    "nickparvar": DatasetSpec(
        name="nickparvar",
        title="Nickparvar",
        folder="brain-tumor-mri-dataset",
        kaggle="masoudnickparvar/brain-tumor-mri-dataset",
        class_folders={
            "glioma": "glioma",
            "meningioma": "meningioma",
            "notumor": "no_tumor",
            "pituitary": "pituitary",
        },
        citation_key="nickparvar2021",
        note=(
            "The Kaggle release has 7,023 images; the offline copy used for the reference "
            "run lacks 4 no-tumour training images (7,019)."
        ),
    ),
    "br35h": DatasetSpec(
        name="br35h",
        title="Br35H",
        folder="brain-tumor-detection",
        kaggle="ahmedhamada0/brain-tumor-detection",
        class_folders={"yes": "tumour", "no": "no_tumor"},
        citation_key="hamada2020br35h",
        archive_url=(
            "https://github.com/ss8319/Br35H-Brain-Tumor-Detection/archive/refs/heads/main.zip"
        ),
        split_folders={".": "test"},
        note=(
            "Binary (yes = tumour of unknown type, no = no tumour), for external evaluation "
            "only. Its no images are all inside Nickparvar's notumor folders; the offline "
            "copy holds 835 of the release's 1,500 yes images."
        ),
    ),
}
#: The datasets a model can train on (four classes, a Training folder); each is the
#: other's external test set.
HOME_DATASETS: tuple[str, ...] = tuple(n for n, s in DATASETS.items() if not s.evaluation_only)
#: Every dataset's name as a reader sees it.
DISPLAY: dict[str, str] = {n: s.title for n, s in DATASETS.items()}


def get_spec(name: str) -> DatasetSpec:
    try:
        return DATASETS[name]
    except KeyError:
        raise DatasetNotFoundError(
            f"Unknown dataset {name!r}. Choose one of: {', '.join(DATASETS)}."
        ) from None


def _looks_like_dataset(folder: Path, spec: DatasetSpec) -> bool:
    """True when ``folder`` holds this dataset's split folders with some of its classes
    (``check_layout`` then says precisely what is missing)."""
    for split in spec.split_folders:
        split_dir = folder / split
        if not split_dir.is_dir():
            return False
        if not any((split_dir / c).is_dir() for c in spec.class_folders):
            return False
    return True


def _started(folder: Path, spec: DatasetSpec) -> bool:
    """Some of the dataset's layout is there: one of its split folders (or, without
    splits, one of its class folders). ``check_layout`` then names what is missing."""
    for split in spec.split_folders:
        if split != "." and (folder / split).is_dir():
            return True
        if split == "." and any((folder / c).is_dir() for c in spec.class_folders):
            return True
    return False


def check_layout(root: Path, spec: DatasetSpec, hint: str = "") -> None:
    """Every split folder present with every class folder, and none empty; otherwise one
    error that names the missing or empty folders and the expected layout."""
    problems = []
    for split in spec.split_folders:
        if not (root / split).is_dir():
            problems.append(f"{root / split} is missing")
            continue
        for folder in spec.class_folders:
            where = root / split / folder
            if not where.is_dir():
                problems.append(f"{where} is missing")
            elif not any(p.is_file() for p in where.rglob("*")):
                problems.append(f"{where} is empty")
    if problems:
        raise DatasetNotFoundError(
            f"Dataset {spec.name!r} at {root} is incomplete: " + "; ".join(problems)
            + f". Expected layout: {spec.layout()} with image files in every class folder."
            + hint)


def _explicit(data_dir: str | os.PathLike | None) -> tuple[str, Path, str] | None:
    """The location the user named (``data_dir``, else ``$BRAIN_MRI_DATA``): how to
    name it in a message, the folder, and what to do when it is wrong."""
    if data_dir is not None and str(data_dir) != "":
        text = os.fspath(data_dir) if isinstance(data_dir, os.PathLike) else str(data_dir)
        return (f"data_dir={text!r}", Path(text).expanduser(),
                "Give data_dir a folder that holds the dataset folders (or the dataset "
                "folder itself), or leave it null to use $BRAIN_MRI_DATA, data/raw/ or a "
                "download.")
    env = os.environ.get(ENV_VAR)
    if env:
        return (f"${ENV_VAR}={env}", Path(env).expanduser(),
                f"Point {ENV_VAR} at a folder that holds the dataset folders (export "
                f"{ENV_VAR}=/path/to/folder), or unset {ENV_VAR} to use data/raw/ or a "
                "download.")
    return None


def _at_explicit(spec: DatasetSpec, label: str, base: Path, advice: str) -> Path:
    """The dataset at the location the user named, or an error that says what is wrong
    there: nothing else is looked at."""
    if not base.is_dir():
        state = "is not a folder" if base.exists() else "does not exist"
        raise DatasetNotFoundError(
            f"Dataset {spec.name!r}: {label} {state}; expected {base / spec.layout()}. "
            + advice)
    for candidate in (base / spec.folder, base):
        if _started(candidate, spec):
            check_layout(candidate, spec, f" (location from {label}.) " + advice)
            return candidate.resolve()
    raise DatasetNotFoundError(
        f"Dataset {spec.name!r}: {label} holds no {spec.folder}/ folder; expected "
        f"{base / spec.layout()}. " + advice)


def _not_found_message(spec: DatasetSpec, tried: list[tuple[str, Path]], why: str) -> str:
    lines = [
        f"Dataset {spec.name!r} was not found and could not be downloaded ({why}).",
        "Looked in:",
        *[f"  - {p} (from {src})" for src, p in tried],
        "Fix it in one of these ways:",
        f"  1. export {ENV_VAR}=/path/to/folder  where /path/to/folder/{spec.layout()} "
        "exists;",
        f"  2. download {spec.kaggle_url} by hand and unzip it into "
        f"data/raw/{spec.folder}/ (so that data/raw/{spec.layout()} exists);",
        "  3. give Kaggle access (~/.kaggle/kaggle.json or KAGGLE_USERNAME/KAGGLE_KEY) "
        "and rerun: it is then downloaded with kagglehub.",
    ]
    if spec.archive_url:
        lines.append(f"  4. or unzip {spec.archive_url} into data/raw/{spec.folder}/.")
    return "\n".join(lines)


def locate(name: str, data_dir: str | os.PathLike | None = None, download: bool = True) -> Path:
    """Return the folder holding dataset ``name``'s split and class folders."""
    spec = get_spec(name)
    explicit = _explicit(data_dir)
    if explicit is not None:
        return _at_explicit(spec, *explicit)
    raw = paths.data_dir() / "raw" / spec.folder
    if _started(raw, spec):
        check_layout(raw, spec)
        return raw.resolve()
    tried = [("data/raw", raw)]
    if not download:
        raise DatasetNotFoundError(_not_found_message(spec, tried, "downloads disabled"))
    return _download(spec, tried)


def _find_layout(root: Path, spec: DatasetSpec) -> Path | None:
    """Downloads unpack with varying nesting; find the folder that has the layout."""
    if _looks_like_dataset(root, spec):
        return root
    for class_folder in spec.class_folders:
        for sub in sorted(p for p in root.rglob(class_folder) if p.is_dir()):
            for candidate in (sub.parent, sub.parent.parent):
                if _looks_like_dataset(candidate, spec):
                    return candidate
    return None


def _link_into_raw(spec: DatasetSpec, source: Path) -> Path:
    target = paths.data_dir() / "raw" / spec.folder
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.is_symlink() or not target.exists():
        if target.is_symlink():
            target.unlink()
        target.symlink_to(source, target_is_directory=True)
    return target.resolve()


def _download(spec: DatasetSpec, tried: list[tuple[str, Path]]) -> Path:
    errors = []
    try:
        import kagglehub

        print(f"Downloading {spec.kaggle} with kagglehub ...", file=sys.stderr)
        root = _find_layout(Path(kagglehub.dataset_download(spec.kaggle)), spec)
        if root is not None:
            return _link_into_raw(spec, root)
        errors.append(f"kagglehub download has no {spec.layout()} layout")
    except Exception as exc:  # noqa: BLE001 - any failure means "try the next source"
        errors.append(f"kagglehub: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
    if spec.archive_url:
        try:
            import keras

            print(f"Downloading {spec.archive_url} ...", file=sys.stderr)
            downloads = paths.data_dir() / "raw" / "_downloads"
            extracted = keras.utils.get_file(
                fname=f"{spec.folder}.zip", origin=spec.archive_url, extract=True,
                cache_dir=str(downloads), cache_subdir=spec.name,
            )
            root = _find_layout(Path(extracted).parent, spec) or _find_layout(
                Path(extracted), spec)
            if root is not None:
                return _link_into_raw(spec, root)
            errors.append(f"GitHub archive has no {spec.layout()} layout")
        except Exception as exc:  # noqa: BLE001
            errors.append(f"GitHub archive: {type(exc).__name__}: "
                          f"{str(exc).splitlines()[0][:200]}")
    raise DatasetNotFoundError(_not_found_message(spec, tried, "; ".join(errors)))


def fingerprint(root: Path) -> str:
    """A short hash of every file's relative path and bytes: two copies of a dataset with
    the same fingerprint hold the same files, whatever their modification times. Hashing
    the bytes takes seconds, so the result is cached under the file list's stamp."""
    root = Path(root)
    rel_paths = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    target = cache.cache_file("fingerprints", root.name,
                              cache.stamp(root, rel_paths, "fingerprint-v2"), ".txt")
    if target.exists():
        return target.read_text().strip()
    digest = hashlib.sha1()
    for rel in rel_paths:
        digest.update(f"{rel}\t{hashlib.md5((root / rel).read_bytes()).hexdigest()}\n".encode())
    value = digest.hexdigest()[:16]
    atomic_write_text(value + "\n", target)
    return value
