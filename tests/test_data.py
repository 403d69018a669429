"""Datasets: digits, IDX and CIFAR-10 files written by the tests, lookup order, downloads.

No test touches the network: ``_fetch`` is replaced by a function that fails, or by one that
serves bytes made here. The real MNIST/Fashion-MNIST tests run only where ``ONESPIKE_DATA``
points at them.
"""

from __future__ import annotations

import codecs
import gzip
import hashlib
import io
import os
import pickle
import tarfile
import urllib.error
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from onespike import data
from onespike.data import (
    DATASETS,
    Dataset,
    batches,
    download_dataset,
    load_dataset,
    random_flip,
    random_shift,
    search_paths,
    split_validation,
    user_cache_dir,
)
from onespike.errors import (
    ChecksumError,
    ConfigError,
    CorruptFileError,
    DatasetNotFoundError,
    ShapeError,
    UnsafeFileError,
)

# Captured before the autouse fixture hides the developer's settings from every test.
REAL_DATA = os.environ.get("ONESPIKE_DATA")
DEBIAN_FASHION_DIR = data.DEBIAN_FASHION_DIR

IMAGES_MAGIC = 2051
LABELS_MAGIC = 2049
IDX_NAMES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


@pytest.fixture(autouse=True)
def _isolated(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Hide real data, give each test an empty cache, and forbid the network."""
    monkeypatch.delenv("ONESPIKE_DATA", raising=False)
    monkeypatch.setenv("ONESPIKE_CACHE", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.setattr(data, "DEBIAN_FASHION_DIR", tmp_path_factory.mktemp("no-debian"))

    def no_network(url: str) -> bytes:
        raise AssertionError(f"a test tried to reach the network: {url}")

    monkeypatch.setattr(data, "_fetch", no_network)


# --------------------------------------------------------------------------------------------
# Helpers that write small files in the canonical formats
# --------------------------------------------------------------------------------------------


def idx_bytes(array: np.ndarray, magic: int) -> bytes:
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def tiny_mnist(seed: int = 0, n: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    pixels[0, 0, 0], pixels[0, 0, 1], pixels[0, 0, 2] = 0, 51, 255
    labels = rng.integers(0, 10, size=n, dtype=np.uint8)
    return pixels, labels


def write_idx(
    directory: Path,
    split: str,
    pixels: np.ndarray,
    labels: np.ndarray,
    *,
    gz_images: bool = True,
    gz_labels: bool = True,
) -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for base, array, magic, gz in (
        (IDX_NAMES[split][0], pixels, IMAGES_MAGIC, gz_images),
        (IDX_NAMES[split][1], labels, LABELS_MAGIC, gz_labels),
    ):
        raw = idx_bytes(array, magic)
        path = directory / (base + ".gz" if gz else base)
        path.write_bytes(gzip.compress(raw) if gz else raw)
        paths.append(path)
    return paths[0], paths[1]


def expected_images(pixels: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(pixels.astype(np.float32)).unsqueeze(1) / 255


def cifar_batch(seed: int, n: int = 5) -> tuple[np.ndarray, list[int]]:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
    labels = [int(v) for v in rng.integers(0, 10, size=n)]
    return pixels, labels


def write_cifar(folder: Path, protocol: int = pickle.DEFAULT_PROTOCOL) -> dict[str, tuple]:
    """Write 5 train batches (bytes keys, as the real files) and a test batch (str keys)."""
    folder.mkdir(parents=True, exist_ok=True)
    batches_written = {}
    for i in range(1, 6):
        pixels, labels = cifar_batch(i)
        payload = {b"batch_label": b"training batch", b"labels": labels, b"data": pixels}
        (folder / f"data_batch_{i}").write_bytes(pickle.dumps(payload, protocol=protocol))
        batches_written[f"data_batch_{i}"] = (pixels, labels)
    pixels, labels = cifar_batch(99)
    payload_str = {"labels": np.array(labels), "data": pixels}
    (folder / "test_batch").write_bytes(pickle.dumps(payload_str, protocol=protocol))
    batches_written["test_batch"] = (pixels, labels)
    return batches_written


# --------------------------------------------------------------------------------------------
# digits
# --------------------------------------------------------------------------------------------


def test_digits_shapes_range_and_split() -> None:
    from sklearn.datasets import load_digits

    train, test = load_dataset("digits", "train"), load_dataset("digits", "test")
    assert (len(train), len(test)) == (1437, 360)
    assert train.images.shape == (1437, 1, 8, 8)
    assert test.images.shape == (360, 1, 8, 8)
    assert train.images.dtype == torch.float32
    assert train.labels.dtype == torch.int64
    assert train.num_classes == test.num_classes == 10
    assert train.image_shape == (1, 8, 8)
    both = torch.cat([train.images, test.images])
    assert float(both.min()) == 0.0
    assert float(both.max()) == 1.0
    assert torch.equal(both * 16, (both * 16).round())  # exactly the 17 levels 0/16..16/16
    assert set(torch.cat([train.labels, test.labels]).tolist()) == set(range(10))

    # The documented split: default_rng(0) permutation, the last 360 samples are "test".
    bunch = load_digits()
    order = np.random.default_rng(0).permutation(1797)
    want_test = torch.from_numpy(bunch.data[order[-360:]].astype(np.float32) / 16)
    assert torch.equal(test.images.reshape(360, 64), want_test)
    assert test.labels.tolist() == bunch.target[order[-360:]].tolist()
    assert train.labels.tolist() == bunch.target[order[:-360]].tolist()


def test_digits_is_deterministic_and_limit_keeps_the_first() -> None:
    a, b = load_dataset("digits", "train"), load_dataset("digits", "train")
    assert torch.equal(a.images, b.images)
    assert torch.equal(a.labels, b.labels)
    a.images[0].fill_(7.0)  # a caller's edits do not leak into later loads
    assert float(load_dataset("digits", "train").images.max()) == 1.0
    small = load_dataset("digits", "test", limit=10)
    full = load_dataset("digits", "test")
    assert len(small) == 10
    assert torch.equal(small.images, full.images[:10])
    assert torch.equal(small.labels, full.labels[:10])
    assert len(load_dataset("digits", "test", limit=10_000)) == 360
    # Dataset.head: the same first samples as a limited load, images and labels together.
    head = full.head(10)
    assert torch.equal(head.images, small.images)
    assert torch.equal(head.labels, small.labels)
    assert (head.name, head.split, head.num_classes) == (full.name, full.split, full.num_classes)
    assert len(full.head(10_000)) == 360


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"name": "imagenet"}, "digits, mnist, fashion-mnist, cifar10"),
        ({"name": "digits", "split": "val"}, "train, test"),
        ({"name": "digits", "limit": 0}, "limit"),
        ({"name": "digits", "limit": -3}, "limit"),
        ({"name": "digits", "limit": True}, "limit"),
    ],
)
def test_bad_arguments_are_config_errors(kwargs: dict, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        load_dataset(**kwargs)


def test_dataset_names() -> None:
    assert DATASETS == ("digits", "mnist", "fashion-mnist", "cifar10")
    assert search_paths("digits") == []


# --------------------------------------------------------------------------------------------
# IDX files
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("gz_images", "gz_labels"), [(True, True), (False, False), (True, False)])
def test_idx_files_load_with_exact_values(tmp_path: Path, gz_images: bool, gz_labels: bool) -> None:
    pixels, labels = tiny_mnist()
    write_idx(tmp_path / "mnist", "test", pixels, labels, gz_images=gz_images, gz_labels=gz_labels)
    ds = load_dataset("mnist", "test", data_dir=tmp_path)
    assert (ds.name, ds.split, ds.num_classes) == ("mnist", "test", 10)
    assert ds.images.shape == (3, 1, 28, 28)
    assert ds.images.dtype == torch.float32
    assert torch.equal(ds.images, expected_images(pixels))
    assert ds.images[0, 0, 0, :3].tolist() == [0.0, np.float32(51) / np.float32(255), 1.0]
    assert ds.labels.dtype == torch.int64
    assert ds.labels.tolist() == labels.tolist()
    assert len(load_dataset("mnist", "test", data_dir=tmp_path, limit=2)) == 2


def test_fashion_mnist_reads_the_same_format(tmp_path: Path) -> None:
    pixels, labels = tiny_mnist(seed=5, n=4)
    write_idx(tmp_path, "train", pixels, labels)  # directly in the base directory
    ds = load_dataset("fashion-mnist", "train", data_dir=tmp_path)
    assert ds.name == "fashion-mnist"
    assert torch.equal(ds.images, expected_images(pixels))
    assert ds.labels.tolist() == labels.tolist()


def _corrupt_cases() -> list[object]:
    def truncated(d: Path) -> None:
        path = d / "t10k-images-idx3-ubyte"
        path.write_bytes(path.read_bytes()[:-10])

    def wrong_magic(d: Path) -> None:
        path = d / "t10k-images-idx3-ubyte"
        path.write_bytes((2049).to_bytes(4, "big") + path.read_bytes()[4:])

    def extra_bytes(d: Path) -> None:
        path = d / "t10k-labels-idx1-ubyte"
        path.write_bytes(path.read_bytes() + b"\x00")

    def short_header(d: Path) -> None:
        (d / "t10k-labels-idx1-ubyte").write_bytes(b"\x00\x00")

    def count_mismatch(d: Path) -> None:
        (d / "t10k-labels-idx1-ubyte").write_bytes(
            idx_bytes(np.array([1, 2], np.uint8), LABELS_MAGIC)
        )

    def wrong_size(d: Path) -> None:
        (d / "t10k-images-idx3-ubyte").write_bytes(
            idx_bytes(np.zeros((3, 5, 5), np.uint8), IMAGES_MAGIC)
        )

    def bad_label(d: Path) -> None:
        (d / "t10k-labels-idx1-ubyte").write_bytes(
            idx_bytes(np.array([1, 2, 10], np.uint8), LABELS_MAGIC)
        )

    def truncated_gzip(d: Path) -> None:
        raw = (d / "t10k-images-idx3-ubyte").read_bytes()
        (d / "t10k-images-idx3-ubyte").unlink()
        (d / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(raw)[:200])

    cases = [
        ("t10k-images-idx3-ubyte", truncated, "truncated"),
        ("t10k-images-idx3-ubyte", wrong_magic, "magic number 2049"),
        ("t10k-labels-idx1-ubyte", extra_bytes, "1 bytes beyond"),
        ("t10k-labels-idx1-ubyte", short_header, "truncated: 2 bytes"),
        ("t10k-labels-idx1-ubyte", count_mismatch, "3 images but .* 2 labels"),
        ("t10k-images-idx3-ubyte", wrong_size, "5x5 images"),
        ("t10k-labels-idx1-ubyte", bad_label, "label 10"),
        ("t10k-images-idx3-ubyte.gz", truncated_gzip, "not a valid gzip file"),
    ]
    return [pytest.param(*case, id=case[1].__name__) for case in cases]


@pytest.mark.parametrize(("culprit", "damage", "fragment"), _corrupt_cases())
def test_corrupt_idx_files_are_reported(
    tmp_path: Path, culprit: str, damage: Callable[[Path], None], fragment: str
) -> None:
    pixels, labels = tiny_mnist()
    write_idx(tmp_path, "test", pixels, labels, gz_images=False, gz_labels=False)
    damage(tmp_path)
    with pytest.raises(CorruptFileError, match=fragment) as info:
        load_dataset("mnist", "test", data_dir=tmp_path)
    assert culprit in str(info.value)
    assert not isinstance(info.value, ChecksumError)


# --------------------------------------------------------------------------------------------
# CIFAR-10 pickles
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_cifar10_batches_load_with_exact_values(tmp_path: Path, protocol: int) -> None:
    written = write_cifar(tmp_path / "cifar-10-batches-py", protocol)
    train = load_dataset("cifar10", "train", data_dir=tmp_path)
    test = load_dataset("cifar10", "test", data_dir=tmp_path)
    assert train.images.shape == (25, 3, 32, 32)
    assert test.images.shape == (5, 3, 32, 32)
    assert (train.split, test.split, train.num_classes) == ("train", "test", 10)
    want = np.concatenate([written[f"data_batch_{i}"][0] for i in range(1, 6)])
    want_images = torch.from_numpy(want.astype(np.float32).reshape(25, 3, 32, 32)) / 255
    assert torch.equal(train.images, want_images)
    assert train.labels.tolist() == [
        label for i in range(1, 6) for label in written[f"data_batch_{i}"][1]
    ]
    # Channel layout: the first 1024 values of a row are red, row-major 32x32.
    first = written["data_batch_1"][0][0]
    assert float(train.images[0, 1, 2, 3]) == np.float32(first[1024 + 2 * 32 + 3]) / np.float32(255)
    assert test.labels.tolist() == written["test_batch"][1]
    assert torch.equal(
        test.images.reshape(5, 3072) * 255, torch.from_numpy(written["test_batch"][0]).float()
    )
    limited = load_dataset("cifar10", "train", data_dir=tmp_path, limit=7)
    assert torch.equal(limited.images, train.images[:7])
    assert torch.equal(limited.labels, train.labels[:7])


class _RunsCommand:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (os.system, (f"touch {self.marker}",))


class _Evaluates:
    def __reduce__(self) -> tuple:
        return (eval, ("1 + 1",))


class _OddCodec:
    def __reduce__(self) -> tuple:
        return (codecs.encode, ("payload", "rot13"))


@pytest.mark.parametrize("kind", ["system", "eval", "codec"])
def test_pickle_asking_for_other_globals_is_refused_unrun(tmp_path: Path, kind: str) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar(folder)
    marker = tmp_path / "pwned"
    bad = {"system": _RunsCommand(marker), "eval": _Evaluates(), "codec": _OddCodec()}[kind]
    (folder / "data_batch_3").write_bytes(pickle.dumps({b"data": bad, b"labels": [0]}, protocol=2))
    with pytest.raises(UnsafeFileError, match=kind if kind != "codec" else "rot13") as info:
        load_dataset("cifar10", "train", data_dir=tmp_path)
    if kind != "codec":
        assert "data_batch_3" in str(info.value)
    assert not marker.exists()
    assert len(load_dataset("cifar10", "train", data_dir=tmp_path, limit=10)) == 10


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        (pickle.dumps([1, 2, 3]), "holds a list"),
        (pickle.dumps({b"labels": [1]}), "no 'data'"),
        (pickle.dumps({b"data": np.zeros((2, 3072), np.uint8)}), "no 'labels'"),
        (pickle.dumps({"data": np.zeros((2, 100), np.uint8), "labels": [1, 2]}), "100 values"),
        (pickle.dumps({"data": np.zeros((2, 3072), np.float32), "labels": [1, 2]}), "uint8"),
        (pickle.dumps({"data": np.zeros((2, 3072), np.uint8), "labels": [1]}), "2 images"),
        (pickle.dumps({"data": np.zeros((1, 3072), np.uint8), "labels": [12]}), "outside"),
        (pickle.dumps({"data": np.zeros((1, 3072), np.uint8)})[:-20], "not a readable pickle"),
    ],
)
def test_malformed_cifar_batches_are_corrupt(tmp_path: Path, payload: bytes, fragment: str) -> None:
    write_cifar(tmp_path)
    (tmp_path / "test_batch").write_bytes(payload)
    with pytest.raises(CorruptFileError, match=fragment):
        load_dataset("cifar10", "test", data_dir=tmp_path)


# --------------------------------------------------------------------------------------------
# Lookup order and the not-found message
# --------------------------------------------------------------------------------------------


def test_search_paths_follow_the_documented_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    explicit, env, cache = tmp_path / "explicit", tmp_path / "env", tmp_path / "cache"
    monkeypatch.setenv("ONESPIKE_DATA", str(env))
    monkeypatch.setenv("ONESPIKE_CACHE", str(cache))
    assert search_paths("mnist", explicit) == [
        explicit / "mnist",
        explicit,
        env / "mnist",
        env,
        cache / "mnist",
        cache,
    ]
    debian = data.DEBIAN_FASHION_DIR
    assert search_paths("fashion-mnist", str(explicit)) == [
        explicit / "fashion-mnist",
        explicit,
        env / "fashion-mnist",
        env,
        debian / "fashion-mnist",
        debian,
        cache / "fashion-mnist",
        cache,
    ]
    assert search_paths("cifar10") == [
        env / "cifar10",
        env / "cifar10" / "cifar-10-batches-py",
        env,
        env / "cifar-10-batches-py",
        cache / "cifar10",
        cache / "cifar10" / "cifar-10-batches-py",
        cache,
        cache / "cifar-10-batches-py",
    ]
    assert Path("/usr/share/datasets/fashion-mnist") == DEBIAN_FASHION_DIR


def test_user_cache_dir_fallbacks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ONESPIKE_CACHE", str(tmp_path / "c"))
    assert user_cache_dir() == tmp_path / "c"
    monkeypatch.delenv("ONESPIKE_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert user_cache_dir() == tmp_path / "xdg" / "onespike"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert user_cache_dir() == tmp_path / "home" / ".cache" / "onespike"


def test_data_dir_beats_env_which_beats_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pixels, _ = tiny_mnist(n=2)
    for folder, label in (("explicit", 1), ("env", 2), ("cache", 3)):
        write_idx(tmp_path / folder / "mnist", "test", pixels, np.full(2, label, np.uint8))
    monkeypatch.setenv("ONESPIKE_DATA", str(tmp_path / "env"))
    monkeypatch.setenv("ONESPIKE_CACHE", str(tmp_path / "cache"))
    assert load_dataset("mnist", "test", data_dir=tmp_path / "explicit").labels.tolist() == [1, 1]
    assert load_dataset("mnist", "test").labels.tolist() == [2, 2]
    # A directory without the split's files is passed over: data_dir holds only "train" here.
    write_idx(tmp_path / "only-train", "train", pixels, np.zeros(2, np.uint8))
    assert load_dataset("mnist", "test", data_dir=tmp_path / "only-train").labels.tolist() == [
        2,
        2,
    ]
    monkeypatch.delenv("ONESPIKE_DATA")
    assert load_dataset("mnist", "test").labels.tolist() == [3, 3]
    # base/<name>/ is tried before base/ itself.
    write_idx(tmp_path / "explicit", "test", pixels, np.full(2, 4, np.uint8))
    assert load_dataset("mnist", "test", data_dir=tmp_path / "explicit").labels.tolist() == [1, 1]


def test_missing_dataset_lists_every_place_and_the_remedies(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ONESPIKE_DATA", str(tmp_path / "env"))
    (tmp_path / "explicit").mkdir()
    write_idx(tmp_path / "explicit", "test", *tiny_mnist())  # the other split only
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset("mnist", "train", data_dir=tmp_path / "explicit")
    message = str(info.value)
    for path in search_paths("mnist", tmp_path / "explicit"):
        assert f"  {path}  (" in message
    assert "none of the files" in message
    assert "no such directory" in message
    assert "--data-dir" in message
    assert "data_dir=" in message
    assert "ONESPIKE_DATA" in message
    assert "download=True" in message
    assert "--download" in message
    assert "train-images-idx3-ubyte[.gz]" in message
    assert "apt-get" not in message

    with pytest.raises(DatasetNotFoundError, match="apt-get install dataset-fashion-mnist"):
        load_dataset("fashion-mnist", "test")
    with pytest.raises(DatasetNotFoundError, match="cifar-10-batches-py") as info:
        load_dataset("cifar10", "test", data_dir=tmp_path)
    assert str(tmp_path / "cifar-10-batches-py") in str(info.value)


def test_partial_directories_say_what_is_missing(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar(folder)
    (folder / "data_batch_4").unlink()
    with pytest.raises(DatasetNotFoundError, match=r"missing data_batch_4\)"):
        load_dataset("cifar10", "train", data_dir=tmp_path)
    assert len(load_dataset("cifar10", "test", data_dir=tmp_path)) == 5


# --------------------------------------------------------------------------------------------
# Downloads, with _fetch replaced
# --------------------------------------------------------------------------------------------


def serve(monkeypatch: pytest.MonkeyPatch, files: dict[str, bytes]) -> list[str]:
    """Replace ``_fetch`` by a server of ``files`` (by URL basename); return the URLs asked."""
    asked: list[str] = []

    def fake_fetch(url: str) -> bytes:
        asked.append(url)
        name = url.rsplit("/", 1)[-1]
        if name not in files:
            raise urllib.error.URLError(f"no route to host for {name}")
        return files[name]

    monkeypatch.setattr(data, "_fetch", fake_fetch)
    return asked


def tiny_idx_remote(
    monkeypatch: pytest.MonkeyPatch, name: str, *, checksum: str
) -> tuple[dict[str, bytes], dict[str, np.ndarray]]:
    """Serve tiny gzipped IDX files for ``name`` and make ``_REMOTE`` expect their sums."""
    arrays: dict[str, np.ndarray] = {}
    for split, seed in (("train", 1), ("test", 2)):
        pixels, labels = tiny_mnist(seed=seed, n=2 + seed)
        arrays[IDX_NAMES[split][0]] = pixels
        arrays[IDX_NAMES[split][1]] = labels
    served: dict[str, bytes] = {}
    remote_files = []
    for base, array in arrays.items():
        raw = idx_bytes(array, IMAGES_MAGIC if "images" in base else LABELS_MAGIC)
        gz = gzip.compress(raw)
        served[base + ".gz"] = gz
        sums = {
            "sha256": {"sha256": hashlib.sha256(raw).hexdigest()},
            "md5": {"md5": hashlib.md5(gz).hexdigest()},
            "none": {},
        }[checksum]
        remote_files.append(data._RemoteFile(base + ".gz", **sums))
    remote = data._Remote(
        ("https://mirror.invalid/a/", "https://mirror.invalid/b/"), tuple(remote_files)
    )
    monkeypatch.setitem(data._REMOTE, name, remote)
    return served, arrays


@pytest.mark.parametrize(("name", "checksum"), [("mnist", "sha256"), ("fashion-mnist", "md5")])
def test_download_with_good_checksums_fills_the_cache(
    monkeypatch: pytest.MonkeyPatch, name: str, checksum: str
) -> None:
    served, arrays = tiny_idx_remote(monkeypatch, name, checksum=checksum)
    asked = serve(monkeypatch, served)
    ds = load_dataset(name, "test", download=True)
    assert len(asked) == 4
    assert all(url.startswith("https://mirror.invalid/a/") for url in asked)
    assert torch.equal(ds.images, expected_images(arrays["t10k-images-idx3-ubyte"]))
    assert ds.labels.tolist() == arrays["t10k-labels-idx1-ubyte"].tolist()
    folder = user_cache_dir() / name
    assert sorted(p.name for p in folder.iterdir()) == sorted(served)
    assert download_dataset(name) == folder
    assert len(asked) == 4  # already cached: nothing fetched again
    assert len(load_dataset(name, "train")) == 3


def test_download_tries_the_next_mirror(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    served, _ = tiny_idx_remote(monkeypatch, "mnist", checksum="sha256")
    asked = serve(monkeypatch, {})

    def flaky(url: str) -> bytes:
        asked.append(url)
        if "/a/" in url:
            raise urllib.error.URLError("mirror a is down")
        return served[url.rsplit("/", 1)[-1]]

    monkeypatch.setattr(data, "_fetch", flaky)
    assert download_dataset("mnist", cache_dir=tmp_path) == tmp_path / "mnist"
    assert len(asked) == 8
    assert len(list((tmp_path / "mnist").iterdir())) == 4


@pytest.mark.parametrize(("name", "checksum"), [("mnist", "sha256"), ("fashion-mnist", "md5")])
def test_download_with_a_bad_checksum_leaves_nothing(
    monkeypatch: pytest.MonkeyPatch, name: str, checksum: str
) -> None:
    served, _ = tiny_idx_remote(monkeypatch, name, checksum=checksum)
    labels = gzip.decompress(served["t10k-labels-idx1-ubyte.gz"])
    served["t10k-labels-idx1-ubyte.gz"] = gzip.compress(labels[:-1] + b"\x09")  # last file
    serve(monkeypatch, served)
    algo = "SHA-256" if checksum == "sha256" else "MD5"
    with pytest.raises(ChecksumError, match=f"{algo} .* nothing was written") as info:
        download_dataset(name)
    assert "t10k-labels-idx1-ubyte.gz" in str(info.value)
    assert not list(user_cache_dir().rglob("*"))


def test_download_without_checksum_checks_the_format(monkeypatch: pytest.MonkeyPatch) -> None:
    served, _ = tiny_idx_remote(monkeypatch, "mnist", checksum="none")
    serve(monkeypatch, served)
    with pytest.warns(UserWarning, match="no checksum is known"):
        download_dataset("mnist")
    assert len(load_dataset("mnist", "test")) == 4

    for path in (user_cache_dir() / "mnist").iterdir():
        path.unlink()
    header_only = idx_bytes(np.zeros((2, 28, 28), np.uint8), IMAGES_MAGIC)[:16]
    served["train-images-idx3-ubyte.gz"] = gzip.compress(header_only)
    with (
        pytest.warns(UserWarning, match="no checksum"),
        pytest.raises(CorruptFileError, match="truncated"),
    ):
        download_dataset("mnist")
    assert not [p for p in user_cache_dir().rglob("*") if p.is_file()]


def test_download_failure_is_a_clear_not_found(monkeypatch: pytest.MonkeyPatch) -> None:
    asked = serve(monkeypatch, {})
    with pytest.raises(DatasetNotFoundError, match="could not download") as info:
        load_dataset("mnist", "train", download=True)
    assert asked[0] in str(info.value)
    assert "ONESPIKE_DATA" in str(info.value)
    with pytest.raises(ConfigError, match="nothing to download"):
        download_dataset("digits")


def test_real_checksums_accept_the_real_mnist(monkeypatch: pytest.MonkeyPatch) -> None:
    folder = Path(REAL_DATA or "/nonexistent") / "mnist"
    if not (folder / "t10k-labels-idx1-ubyte.gz").is_file():
        pytest.skip(
            "ONESPIKE_DATA is unset or holds no mnist/ (set ONESPIKE_DATA=../shared/datasets)"
        )
    serve(monkeypatch, {p.name: p.read_bytes() for p in folder.glob("*.gz")})
    target = download_dataset("mnist")
    assert sorted(p.name for p in target.iterdir()) == sorted(p.name for p in folder.glob("*.gz"))


def cifar_tarball(tmp_path: Path) -> tuple[bytes, dict[str, tuple]]:
    written = write_cifar(tmp_path / "src")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for base in written:
            tar.add(tmp_path / "src" / base, arcname=f"cifar-10-batches-py/{base}")
        meta = pickle.dumps({"label_names": ["airplane"], "num_cases_per_batch": 5})
        for arcname, content in (
            ("cifar-10-batches-py/batches.meta", meta),
            ("cifar-10-batches-py/readme.html", b"<p>hi</p>"),
            ("../escaped.txt", b"outside"),
            ("cifar-10-batches-py/../../escaped2.txt", b"outside"),
        ):
            info = tarfile.TarInfo(arcname)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue(), written


def test_cifar_download_extracts_only_the_expected_members(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tarball, written = cifar_tarball(tmp_path)
    md5 = hashlib.md5(tarball).hexdigest()
    remote = data._Remote(
        ("https://mirror.invalid/",), (data._RemoteFile("cifar-10-python.tar.gz", md5=md5),)
    )
    monkeypatch.setitem(data._REMOTE, "cifar10", remote)
    serve(monkeypatch, {"cifar-10-python.tar.gz": tarball})
    cache = tmp_path / "cache" / "deep"
    folder = download_dataset("cifar10", cache_dir=cache)
    assert folder == cache / "cifar10" / "cifar-10-batches-py"
    assert sorted(p.name for p in cache.rglob("*") if p.is_file()) == sorted(
        [*written, "batches.meta"]
    )
    assert not list(tmp_path.rglob("escaped*"))
    test = load_dataset("cifar10", "test", data_dir=cache)
    assert test.labels.tolist() == written["test_batch"][1]


def test_cifar_download_with_a_bad_checksum_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tarball, _ = cifar_tarball(tmp_path)
    remote = data._Remote(
        ("https://mirror.invalid/",),
        (data._RemoteFile("cifar-10-python.tar.gz", md5="0" * 32),),
    )
    monkeypatch.setitem(data._REMOTE, "cifar10", remote)
    serve(monkeypatch, {"cifar-10-python.tar.gz": tarball})
    with pytest.raises(ChecksumError, match="MD5"):
        load_dataset("cifar10", "train", download=True)
    assert not list(user_cache_dir().rglob("*"))


def test_real_urls_and_checksums_are_https_and_complete() -> None:
    for name, remote in data._REMOTE.items():
        assert all(m.startswith("https://") and m.endswith("/") for m in remote.mirrors), name
        assert all(f.sha256 or f.md5 for f in remote.files), name
    assert data._REMOTE["mnist"].files[0].sha256 == (
        "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db"
    )
    assert data._REMOTE["cifar10"].files[0].md5 == "c58f30108f718f92721af3b95e74349a"


# --------------------------------------------------------------------------------------------
# batches and split_validation
# --------------------------------------------------------------------------------------------


def numbered(n: int) -> Dataset:
    """A dataset whose image i is filled with i, so every sample can be traced."""
    images = torch.arange(n, dtype=torch.float32).reshape(n, 1, 1, 1).expand(n, 1, 2, 2)
    return Dataset("toy", "train", images.contiguous(), torch.arange(n) % 10, 10)


def test_batches_cover_the_data_in_order() -> None:
    ds = numbered(10)
    got = list(batches(ds, 4))
    assert [len(labels) for _, labels in got] == [4, 4, 2]
    assert torch.equal(torch.cat([images for images, _ in got]), ds.images)
    assert torch.equal(torch.cat([labels for _, labels in got]), ds.labels)


def test_shuffled_batches_are_a_seeded_permutation() -> None:
    ds = numbered(50)
    first = torch.cat([images[:, 0, 0, 0] for images, _ in batches(ds, 7, shuffle=True, seed=3)])
    again = torch.cat([images[:, 0, 0, 0] for images, _ in batches(ds, 7, shuffle=True, seed=3)])
    other = torch.cat([images[:, 0, 0, 0] for images, _ in batches(ds, 7, shuffle=True, seed=4)])
    assert torch.equal(first, again)
    assert not torch.equal(first, other)
    assert not torch.equal(first, torch.arange(50.0))
    assert sorted(first.tolist()) == list(range(50))
    for images, labels in batches(ds, 7, shuffle=True):
        assert torch.equal(labels, images[:, 0, 0, 0].long() % 10)  # pairs stay together


@pytest.mark.parametrize("size", [0, -1, 2.5, True])
def test_bad_batch_size_fails_at_the_call(size: object) -> None:
    with pytest.raises(ConfigError, match="batch_size"):
        batches(numbered(4), size)  # type: ignore[arg-type]


def test_split_validation_is_deterministic_and_disjoint() -> None:
    ds = load_dataset("digits", "train")
    rest, val = split_validation(ds)
    assert (len(rest), len(val)) == (1293, 144)
    assert (rest.split, val.split, val.name, val.num_classes) == (
        "train",
        "validation",
        "digits",
        10,
    )
    rest2, val2 = split_validation(ds)
    assert torch.equal(val.images, val2.images)
    assert torch.equal(rest.labels, rest2.labels)

    toy = numbered(20)
    rest, val = split_validation(toy, 0.25, seed=1)
    rest_ids = rest.images[:, 0, 0, 0].long().tolist()
    val_ids = val.images[:, 0, 0, 0].long().tolist()
    assert len(val_ids) == 5
    assert sorted(rest_ids + val_ids) == list(range(20))
    assert rest_ids == sorted(rest_ids)  # original order is kept
    assert val_ids == sorted(val_ids)
    _, val_other = split_validation(toy, 0.25, seed=2)
    assert val_other.images[:, 0, 0, 0].long().tolist() != val_ids


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 1.5, 0.01, 0.99, "0.1"])
def test_bad_fraction_is_a_config_error(fraction: object) -> None:
    with pytest.raises(ConfigError, match="fraction"):
        split_validation(numbered(20), fraction)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# The real datasets, where ONESPIKE_DATA provides them
# --------------------------------------------------------------------------------------------

REAL = {
    "mnist": {
        "train_counts": [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949],
        "train_first": [5, 0, 4, 1, 9, 2, 1, 3, 1, 4],
        "test_first": [7, 2, 1, 0, 4, 1, 4, 9, 5, 9],
        "mean": 0.1307,
    },
    "fashion-mnist": {
        "train_counts": [6000] * 10,
        "train_first": [9, 0, 0, 3, 0, 2, 7, 2, 5, 5],
        "test_first": [9, 2, 1, 1, 6, 1, 4, 6, 5, 7],
        "mean": 0.2860,
    },
}


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_real_dataset_via_onespike_data(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if not REAL_DATA:
        pytest.skip("ONESPIKE_DATA is unset (set ONESPIKE_DATA=../shared/datasets)")
    if not (Path(REAL_DATA) / name / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"ONESPIKE_DATA={REAL_DATA} has no {name}/ files")
    monkeypatch.setenv("ONESPIKE_DATA", REAL_DATA)
    facts = REAL[name]
    train = load_dataset(name, "train")
    test = load_dataset(name, "test")
    assert train.images.shape == (60000, 1, 28, 28)
    assert test.images.shape == (10000, 1, 28, 28)
    assert train.labels.shape == (60000,)
    assert test.labels.shape == (10000,)
    assert int(train.labels.min()) == 0
    assert int(train.labels.max()) == 9
    assert torch.bincount(train.labels).tolist() == facts["train_counts"]
    assert train.labels[:10].tolist() == facts["train_first"]
    assert test.labels[:10].tolist() == facts["test_first"]
    assert float(train.images.min()) == 0.0
    assert float(train.images.max()) == 1.0
    assert float(train.images.mean()) == pytest.approx(facts["mean"], abs=5e-4)
    small = load_dataset(name, "test", limit=100)
    assert len(small) == 100
    assert torch.equal(small.images, test.images[:100])
    assert torch.equal(small.labels, test.labels[:100])


def test_dataset_refuses_images_and_labels_of_different_lengths() -> None:
    with pytest.raises(ShapeError, match="one row per sample"):
        Dataset("mnist", "train", torch.zeros(3, 1, 2, 2), torch.zeros(4, dtype=torch.int64), 10)


def test_random_shift_moves_each_image_by_its_drawn_offset() -> None:
    images = torch.arange(2 * 1 * 5 * 6, dtype=torch.float32).reshape(2, 1, 5, 6) + 1
    shifted = random_shift(images, 2, torch.Generator().manual_seed(7))
    offsets = torch.randint(-2, 3, (2, 2), generator=torch.Generator().manual_seed(7))
    for i, (dy, dx) in enumerate(offsets.tolist()):
        expected = torch.zeros(1, 5, 6)
        for y in range(5):
            for x in range(6):
                if 0 <= y - dy < 5 and 0 <= x - dx < 6:
                    expected[0, y, x] = images[i, 0, y - dy, x - dx]
        assert torch.equal(shifted[i], expected)
    again = random_shift(images, 2, torch.Generator().manual_seed(7))
    assert torch.equal(shifted, again)
    assert random_shift(images, 0, torch.Generator()) is images
    assert shifted.shape == images.shape
    assert shifted.dtype == images.dtype


@pytest.mark.parametrize(
    ("shape", "shift", "match"),
    [
        ((2, 1, 5, 6), -1, "max_shift must be an integer >= 0"),
        ((2, 1, 5, 6), 1.5, "max_shift must be an integer >= 0"),
        ((2, 1, 5, 6), 5, "out of view; use a shift below 5"),
        ((2, 30), 1, "need images"),
    ],
)
def test_random_shift_refuses_what_it_cannot_shift(
    shape: tuple[int, ...], shift: Any, match: str
) -> None:
    with pytest.raises(ConfigError, match=match):
        random_shift(torch.zeros(shape), shift, torch.Generator())


def test_random_flip_mirrors_each_image_by_its_own_draw() -> None:
    images = torch.arange(6 * 2 * 3 * 4, dtype=torch.float32).reshape(6, 2, 3, 4)
    flipped = random_flip(images, torch.Generator().manual_seed(5))
    draws = torch.rand(6, generator=torch.Generator().manual_seed(5)) < 0.5
    assert 0 < int(draws.sum()) < 6  # this seed mirrors some images and keeps others
    for i, mirrored in enumerate(draws.tolist()):
        expected = images[i, :, :, torch.arange(3, -1, -1)] if mirrored else images[i]
        assert torch.equal(flipped[i], expected)
    assert torch.equal(flipped, random_flip(images, torch.Generator().manual_seed(5)))
    assert flipped.dtype == images.dtype
    with pytest.raises(ConfigError, match="random flips need images"):
        random_flip(torch.zeros(2, 30), torch.Generator())
