"""rlgen.data on files the tests write: IDX, CIFAR binary, PNG folders, downloads, search order."""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from rlgen.data import (
    DATASETS,
    Download,
    ImageDataset,
    batches,
    download_dataset,
    from_model_range,
    load_dataset,
    read_idx,
    resize_images,
    to_model_range,
    write_idx,
)
from rlgen.data.cifar import read_cifar_batch, write_cifar_batch
from rlgen.errors import RlgenError, UnknownNameError


@pytest.fixture(autouse=True)
def isolated_locations(tmp_path, monkeypatch):
    """No test sees the real $RLGEN_DATA, /usr/share/datasets or ~/.cache."""
    monkeypatch.delenv("RLGEN_DATA", raising=False)
    monkeypatch.setenv("RLGEN_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr("rlgen.data.registry.SYSTEM_DATA_ROOT", tmp_path / "system")


def make_idx_dataset(folder: Path, n_train: int = 12, n_test: int = 6, seed: int = 0, gz: bool = True) -> dict:
    """Write a tiny MNIST-format dataset; returns the arrays written."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n).astype(np.uint8)
        suffix = ".gz" if gz else ""
        write_idx(folder / f"{prefix}-images-idx3-ubyte{suffix}", images)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte{suffix}", labels)
        arrays[prefix] = (images, labels)
    return arrays


# ----------------------------------------------------------------------------- IDX


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
@pytest.mark.parametrize("compress", [False, True])
def test_idx_round_trip_is_exact(tmp_path, dtype, compress):
    rng = np.random.default_rng(1)
    array = (rng.standard_normal((3, 4, 5)) * 100).astype(dtype)
    path = write_idx(tmp_path / "a.idx", array, compress=compress)
    back = read_idx(path)
    assert back.dtype == np.dtype(dtype) and back.shape == (3, 4, 5)
    np.testing.assert_array_equal(back, array)
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == compress


def test_idx_header_is_the_mnist_layout(tmp_path):
    labels = np.array([7, 2, 1], dtype=np.uint8)
    raw = write_idx(tmp_path / "labels", labels).read_bytes()
    # magic 0x00000801 (ubyte, 1 dim), then the size 3 big-endian, then the bytes.
    assert raw == bytes([0, 0, 8, 1, 0, 0, 0, 3, 7, 2, 1])


def test_idx_bad_magic_and_truncation_are_clear_errors(tmp_path):
    bad = tmp_path / "bad"
    bad.write_bytes(b"\x12\x34\x08\x01" + bytes(8))
    with pytest.raises(RlgenError, match="bad IDX magic number 0x12340801"):
        read_idx(bad)

    good = write_idx(tmp_path / "img", np.zeros((4, 28, 28), np.uint8)).read_bytes()
    cut = tmp_path / "cut"
    cut.write_bytes(good[:-10])
    with pytest.raises(RlgenError, match=r"truncated: shape \(4, 28, 28\).*needs 3152 bytes, file has 3142"):
        read_idx(cut)

    cut_gz = tmp_path / "cut.gz"
    cut_gz.write_bytes(gzip.compress(good)[:-20])
    with pytest.raises(RlgenError, match="gzip data is truncated or corrupt"):
        read_idx(cut_gz)


# ----------------------------------------------------------------------------- named datasets


@pytest.mark.parametrize("gz", [True, False])
def test_idx_dataset_loads_from_data_dir(tmp_path, gz):
    arrays = make_idx_dataset(tmp_path / "data" / "fashion-mnist", gz=gz)
    for split, prefix in (("train", "train"), ("test", "t10k")):
        ds = load_dataset("fashion-mnist", split, data_dir=str(tmp_path / "data"))
        images, labels = arrays[prefix]
        assert ds.images.dtype == torch.uint8 and ds.images.shape == (len(images), 1, 28, 28)
        assert torch.equal(ds.images[:, 0], torch.from_numpy(images))
        assert torch.equal(ds.labels, torch.from_numpy(labels.astype(np.int64)))
        assert ds.num_classes == 10 and ds.class_names[0] == "T-shirt/top" and ds.name == "fashion-mnist"


def test_search_order_data_dir_beats_rlgen_data_beats_system(tmp_path, monkeypatch):
    a = make_idx_dataset(tmp_path / "explicit", seed=1)
    b = make_idx_dataset(tmp_path / "env" / "mnist", seed=2)
    c = make_idx_dataset(tmp_path / "system" / "mnist", seed=3)
    monkeypatch.setenv("RLGEN_DATA", str(tmp_path / "env"))

    def first_label_row(**kw):
        return load_dataset("mnist", "train", **kw).images[0, 0]

    assert torch.equal(first_label_row(data_dir=str(tmp_path / "explicit")), torch.from_numpy(a["train"][0][0]))
    assert torch.equal(first_label_row(), torch.from_numpy(b["train"][0][0]))
    monkeypatch.delenv("RLGEN_DATA")
    assert torch.equal(first_label_row(), torch.from_numpy(c["train"][0][0]))


def test_missing_dataset_message_names_every_place(tmp_path, monkeypatch):
    monkeypatch.setenv("RLGEN_DATA", str(tmp_path / "env"))
    with pytest.raises(RlgenError) as info:
        load_dataset("fashion-mnist", "test", data_dir=str(tmp_path / "mine"))
    msg = str(info.value)
    assert "\n" not in msg
    for place in (tmp_path / "mine", tmp_path / "env", tmp_path / "system" / "fashion-mnist",
                  tmp_path / "cache" / "datasets" / "fashion-mnist"):
        assert str(place) in msg
    assert "t10k-images-idx3-ubyte" in msg
    assert "apt-get install dataset-fashion-mnist" in msg and "--download" in msg and "--data-dir" in msg


def test_unknown_name_suggests_close_match():
    with pytest.raises(UnknownNameError, match="Did you mean 'fashion-mnist'.*cifar10, digits, fashion-mnist, mnist"):
        load_dataset("fashon-mnist")
    with pytest.raises(RlgenError, match="does not exist"):
        load_dataset("./no/such/folder")


def test_digits_has_ten_classes_and_a_fixed_held_out_fifth():
    train, test = load_dataset("digits", "train"), load_dataset("digits", "test")
    assert train.images.shape[1:] == (1, 8, 8) and train.num_classes == 10
    assert len(train) + len(test) == 1797 and abs(len(test) - 0.2 * 1797) < 10
    assert set(test.labels.tolist()) == set(range(10))
    assert int(train.images.max()) == 255 and int(train.images.min()) == 0
    # Fixed split: loading again gives the same images, and train and test share none.
    assert torch.equal(load_dataset("digits", "test").images, test.images)
    train_rows = {bytes(r) for r in train.images.flatten(1).numpy()}
    overlap = sum(bytes(r) in train_rows for r in test.images.flatten(1).numpy())
    assert overlap < 5  # sklearn's digits hold a few exact duplicates, nothing more


# ----------------------------------------------------------------------------- CIFAR-10 binary


def test_cifar_binary_parse(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(5, 3, 32, 32), dtype=np.uint8)
    labels = np.array([0, 9, 3, 3, 1])
    path = write_cifar_batch(tmp_path / "test_batch.bin", images, labels)
    raw = path.read_bytes()
    assert len(raw) == 5 * 3073 and raw[3073] == 9  # second record starts with its label
    assert raw[1 + 1024] == images[0, 1, 0, 0]  # green plane follows the red one
    got_images, got_labels = read_cifar_batch(path)
    assert np.array_equal(got_images, images) and got_labels.tolist() == labels.tolist()

    (tmp_path / "cut.bin").write_bytes(raw[:-1])
    with pytest.raises(RlgenError, match="not a whole number of 3073-byte"):
        read_cifar_batch(tmp_path / "cut.bin")


def test_cifar10_dataset_from_batches_bin_folder(tmp_path):
    folder = tmp_path / "cifar10" / "cifar-10-batches-bin"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name, n in [(f"data_batch_{i}.bin", 2) for i in range(1, 6)] + [("test_batch.bin", 3)]:
        write_cifar_batch(folder / name, rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8), np.arange(n))
    (folder / "batches.meta.txt").write_text("airplane\nautomobile\nbird\n\n")
    train = load_dataset("cifar10", "train", data_dir=str(tmp_path))
    test = load_dataset("cifar10", "test", data_dir=str(tmp_path))
    assert train.images.shape == (10, 3, 32, 32) and test.images.shape == (3, 3, 32, 32)
    assert test.class_names == ["airplane", "automobile", "bird"] and test.labels.tolist() == [0, 1, 2]


# ----------------------------------------------------------------------------- image folders


def test_folder_of_pngs_with_class_subfolders(tmp_path):
    root = tmp_path / "shapes"
    for label, cls in enumerate(["circle", "square"]):
        (root / cls).mkdir(parents=True)
        for i in range(10):
            Image.fromarray(np.full((6, 6), 20 * i + label, np.uint8), mode="L").save(root / cls / f"{i}.png")
    Image.fromarray(np.zeros((6, 6), np.uint8)).save(root / "circle" / "extra.jpg")
    train, test = load_dataset(str(root), "train"), load_dataset(str(root), "test")
    assert train.class_names == ["circle", "square"] and train.num_classes == 2
    assert train.images.shape[1:] == (1, 6, 6)  # grayscale stays single-channel
    assert len(train) + len(test) == 21 and len(test) == 4
    pixel_parity = (train.images[:, 0, 0, 0] % 2).long()  # the pixel value encodes the class
    assert torch.equal(pixel_parity, train.labels)
    assert load_dataset(str(root), "train", image_size=8).images.shape[1:] == (1, 8, 8)


def test_unlabeled_rgb_folder_with_mixed_sizes_needs_image_size(tmp_path):
    root = tmp_path / "photos"
    root.mkdir()
    Image.fromarray(np.zeros((10, 20, 3), np.uint8)).save(root / "wide.png")
    Image.fromarray(np.full((12, 12), 255, np.uint8)).save(root / "gray.jpeg")
    with pytest.raises(RlgenError, match="not all the same square size.*image size"):
        load_dataset(str(root))
    both = torch.cat([load_dataset(str(root), s, image_size=4).images for s in ("train", "test")])
    assert both.shape == (2, 3, 4, 4) and sorted(both.flatten(1).float().mean(1).tolist()) == [0.0, 255.0]
    assert load_dataset(str(root), image_size=4).num_classes == 0


# ----------------------------------------------------------------------------- downloads


def _spec_served_from(tmp_path: Path, monkeypatch, md5_override: dict | None = None) -> dict:
    """Point the mnist spec at file:// URLs of files written here; returns the arrays."""
    served = tmp_path / "served"
    arrays = make_idx_dataset(served)
    downloads = []
    for dl in DATASETS["mnist"].downloads:
        md5 = hashlib.md5((served / dl.filename).read_bytes()).hexdigest()
        md5 = (md5_override or {}).get(dl.filename, md5)
        downloads.append(Download(dl.filename, ((served / dl.filename).as_uri(),), md5=md5))
    monkeypatch.setitem(DATASETS, "mnist", replace(DATASETS["mnist"], downloads=tuple(downloads)))
    return arrays


def test_download_verifies_and_loads(tmp_path, monkeypatch):
    arrays = _spec_served_from(tmp_path, monkeypatch)
    with pytest.raises(RlgenError, match="not found"):
        load_dataset("mnist", "test")
    ds = load_dataset("mnist", "test", download=True)  # into the user cache
    assert torch.equal(ds.images[:, 0], torch.from_numpy(arrays["t10k"][0]))
    cached = tmp_path / "cache" / "datasets" / "mnist"
    assert sorted(p.name for p in cached.iterdir()) == sorted(d.filename for d in DATASETS["mnist"].downloads)


def test_download_checksum_mismatch_leaves_nothing(tmp_path, monkeypatch):
    _spec_served_from(tmp_path, monkeypatch, md5_override={"t10k-images-idx3-ubyte.gz": "0" * 32})
    dest = tmp_path / "dest"
    with pytest.raises(RlgenError, match="checksum mismatch for file://.*t10k-images.*expected md5 0{32}"):
        download_dataset("mnist", dest)
    assert not any(p.name.startswith("t10k-images") or p.name.endswith(".part") for p in dest.iterdir())


def test_download_through_opener_extracts_cifar_archive(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        names = [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin", "batches.meta.txt"]
        for name in [*names, "readme.html"]:
            if name.endswith(".bin"):
                data = write_cifar_batch(tmp_path / name, rng.integers(0, 256, (2, 3, 32, 32), dtype=np.uint8),
                                         np.array([4, 5])).read_bytes()
            else:
                data = b"a\nb\nc\nd\ne\nf\ng\nh\ni\nj\n"
            info = tarfile.TarInfo(f"cifar-10-batches-bin/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    archive = buf.getvalue()
    spec = DATASETS["cifar10"]
    dl = replace(spec.downloads[0], urls=("https://example.invalid/c.tgz",), md5=hashlib.md5(archive).hexdigest())
    monkeypatch.setitem(DATASETS, "cifar10", replace(spec, downloads=(dl,)))
    requested = []

    def opener(url):
        requested.append(url)
        return io.BytesIO(archive)

    dest = download_dataset("cifar10", tmp_path / "c10", opener=opener)
    assert requested == ["https://example.invalid/c.tgz"]
    assert sorted(p.name for p in dest.iterdir()) == sorted(names)  # archive removed, readme not extracted
    test = load_dataset("cifar10", "test", data_dir=str(dest))
    assert test.labels.tolist() == [4, 5] and test.class_names[:2] == ["a", "b"]


# ----------------------------------------------------------------------------- tensors


def test_model_range_round_trip():
    x = torch.arange(256, dtype=torch.uint8).reshape(1, 1, 16, 16)
    sym, unit = to_model_range(x), to_model_range(x, "unit")
    assert sym.min() == -1 and sym.max() == 1 and unit.min() == 0 and unit.max() == 1
    for kind, y in (("symmetric", sym), ("unit", unit)):
        back = from_model_range(y, kind)
        assert torch.equal((back * 255).round().to(torch.uint8), x)
    assert from_model_range(torch.tensor([-3.0, 3.0])).tolist() == [0.0, 1.0]
    with pytest.raises(ValueError, match="uint8"):
        to_model_range(sym)


def test_resize_pads_28_to_32_exactly():
    x = torch.randint(1, 256, (2, 1, 28, 28), dtype=torch.uint8)
    y = resize_images(x, 32)
    assert y.shape == (2, 1, 32, 32) and torch.equal(y[:, :, 2:30, 2:30], x) and y[:, :, :2].sum() == 0
    z = resize_images(torch.full((1, 1, 8, 8), 200, dtype=torch.uint8), 32)
    assert z.shape == (1, 1, 32, 32) and int(z.min()) == 200  # upsampled, not padded


def test_batches_are_shuffled_epochs_without_repeats():
    ds = ImageDataset("toy", torch.arange(10, dtype=torch.uint8).view(10, 1, 1, 1), torch.arange(10), 10, [])
    it = batches(ds, 3, torch.Generator().manual_seed(0), "cpu")
    epoch = [next(it) for _ in range(3)]  # 9 of 10 items; the partial batch is dropped
    seen = torch.cat([labels for _, labels in epoch])
    assert len(set(seen.tolist())) == 9 and all(torch.equal(x.flatten().long(), y) for x, y in epoch)
    assert epoch[0][0].dtype == torch.uint8
    again = batches(ds, 3, torch.Generator().manual_seed(0), "cpu")
    assert torch.equal(next(again)[1], epoch[0][1])
    with pytest.raises(ValueError, match="larger than the dataset"):
        next(batches(ds, 11, None, "cpu"))
