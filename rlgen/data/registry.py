"""Known datasets: their files, where rlgen looks for them, and how to download them.

Search order for a named dataset (first folder holding every file of the split wins):

1. ``data_dir`` (``--data-dir``): the folder itself, or its ``<name>`` subfolder;
2. ``$RLGEN_DATA``: likewise;
3. the system location ``/usr/share/datasets/<name>`` (Debian's
   ``dataset-fashion-mnist`` installs ``/usr/share/datasets/fashion-mnist``);
4. the user cache ``~/.cache/rlgen/datasets/<name>`` (or ``$RLGEN_CACHE/datasets/<name>``),
   where ``download_dataset`` puts files by default.

Files found on disk are trusted as they are (Debian recompresses the .gz files,
so their checksums differ from upstream's); checksums are verified on download.
"""

from __future__ import annotations

import difflib
import hashlib
import os
import shutil
import tarfile
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Literal

from rlgen.data import cifar
from rlgen.errors import InputError, RlgenError, UnknownNameError

SYSTEM_DATA_ROOT = Path("/usr/share/datasets")


@dataclass(frozen=True)
class Download:
    """One file to fetch: mirrors tried in order, and the checksum it must have."""

    filename: str
    urls: tuple[str, ...]
    md5: str | None = None
    sha256: str | None = None
    extract: tuple[str, ...] = ()  # for a .tar.gz: the member basenames to extract, then delete it


@dataclass(frozen=True)
class DatasetSpec:
    """What a dataset is made of and where its files come from."""

    name: str
    format: Literal["idx", "cifar_bin", "digits"]
    shape: tuple[int, int, int]  # (C, H, W)
    class_names: tuple[str, ...]
    files: dict[str, tuple[str, ...]] = field(default_factory=dict)  # split -> file names
    downloads: tuple[Download, ...] = ()
    aliases: tuple[str, ...] = ()  # other spellings accepted for the name and as folder names
    subdirs: tuple[str, ...] = ("",)  # where the files may sit inside a dataset folder
    how_to_get: str = ""  # the first suggestion in the "not found" message


_FASHION_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
_MNIST_URLS = ("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/")
_IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def _idx_downloads(bases: tuple[str, ...], md5s: dict[str, str]) -> tuple[Download, ...]:
    return tuple(
        Download(f"{name}.gz", tuple(f"{b}{name}.gz" for b in bases), md5=md5) for name, md5 in md5s.items()
    )


DATASETS: dict[str, DatasetSpec] = {
    "fashion-mnist": DatasetSpec(
        name="fashion-mnist",
        format="idx",
        shape=(1, 28, 28),
        class_names=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                     "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
        files=_IDX_FILES,
        # MD5s from the Fashion-MNIST README.
        downloads=_idx_downloads((_FASHION_URL,), {
            "train-images-idx3-ubyte": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
            "train-labels-idx1-ubyte": "25c81989df183df01b3e8a0aad5dffbe",
            "t10k-images-idx3-ubyte": "bef4ecab320f06d8554ea6380940ec79",
            "t10k-labels-idx1-ubyte": "bb300cfdad3c16e7a12a480ee83cd310",
        }),
        aliases=("fashion_mnist", "fashionmnist", "FashionMNIST"),
        subdirs=("", "raw", "FashionMNIST/raw"),
        how_to_get="`apt-get install dataset-fashion-mnist`",
    ),
    "mnist": DatasetSpec(
        name="mnist",
        format="idx",
        shape=(1, 28, 28),
        class_names=tuple(str(i) for i in range(10)),
        files=_IDX_FILES,
        downloads=_idx_downloads(_MNIST_URLS, {
            "train-images-idx3-ubyte": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
            "train-labels-idx1-ubyte": "d53e105ee54ea40749a09fcbcd1e9432",
            "t10k-images-idx3-ubyte": "9fb629c4189551a2d022fa330f9573f3",
            "t10k-labels-idx1-ubyte": "ec29112dd5afa0611ce80d1b7f02629c",
        }),
        aliases=("MNIST",),
        subdirs=("", "raw", "MNIST/raw"),
    ),
    "cifar10": DatasetSpec(
        name="cifar10",
        format="cifar_bin",
        shape=(3, 32, 32),
        class_names=("airplane", "automobile", "bird", "cat", "deer",
                     "dog", "frog", "horse", "ship", "truck"),
        files={"train": cifar.TRAIN_FILES, "test": cifar.TEST_FILES},
        downloads=(
            Download(
                "cifar-10-binary.tar.gz",
                ("https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz",),
                md5="c32a1d4ab5d03f1284b67883e8d87530",  # from the CIFAR page
                extract=(*cifar.TRAIN_FILES, *cifar.TEST_FILES, cifar.META_FILE),
            ),
        ),
        aliases=("cifar-10", "CIFAR10", "cifar-10-batches-bin"),
        subdirs=("", "cifar-10-batches-bin"),
    ),
    "digits": DatasetSpec(
        name="digits",
        format="digits",
        shape=(1, 8, 8),
        class_names=tuple(str(i) for i in range(10)),
        aliases=("sklearn-digits",),
    ),
}


def cache_root() -> Path:
    """rlgen's cache folder: ``$RLGEN_CACHE``, else ``$XDG_CACHE_HOME/rlgen``, else ``~/.cache/rlgen``."""
    if os.environ.get("RLGEN_CACHE"):
        return Path(os.environ["RLGEN_CACHE"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "rlgen"


def resolve_name(name: str) -> DatasetSpec | None:
    """The spec for a dataset name or alias (case-insensitive), or None."""
    key = name.strip().lower()
    for spec in DATASETS.values():
        if key == spec.name or key in (a.lower() for a in spec.aliases):
            return spec
    return None


def unknown_name_error(name: str) -> UnknownNameError:
    """The error for a name that is neither a known dataset nor an existing folder."""
    names = sorted(DATASETS)
    close = difflib.get_close_matches(name.lower(), names, n=1, cutoff=0.6)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    return UnknownNameError(
        f"unknown dataset '{name}'.{hint} Valid names: {', '.join(names)}, "
        "or the path of a folder of PNG/JPEG images"
    )


def _file_variants(filename: str) -> tuple[str, ...]:
    """Names a file may have on disk: gzipped or not; MNIST's ``train-images.idx3-ubyte`` spelling."""
    stems = {filename, filename.replace("-idx", ".idx")}
    return tuple(v for s in sorted(stems) for v in (s, f"{s}.gz"))


def search_locations(spec: DatasetSpec, data_dir: str | os.PathLike | None) -> list[tuple[str, list[Path]]]:
    """The places looked in, in order, as (label, candidate folders) pairs; empty list = not set."""
    folder_names = (spec.name, *spec.aliases)

    def under(root: str | os.PathLike | None) -> list[Path]:
        if not root:
            return []
        root = Path(root).expanduser()
        return [root, *(root / n for n in folder_names)]

    return [
        ("--data-dir", under(data_dir)),
        ("$RLGEN_DATA", under(os.environ.get("RLGEN_DATA"))),
        ("system", [SYSTEM_DATA_ROOT / spec.name]),
        ("user cache", [cache_root() / "datasets" / spec.name]),
    ]


def find_files(spec: DatasetSpec, split: str, data_dir: str | os.PathLike | None) -> dict[str, Path]:
    """Locate every file of one split, following the search order.

    Returns:
        A dict from each file name of ``spec.files[split]`` to the path found.

    Raises:
        RlgenError: nothing found; the message lists where rlgen looked and how to get the data.
    """
    wanted = spec.files[split]
    for _, folders in search_locations(spec, data_dir):
        for folder in folders:
            for sub in spec.subdirs:
                d = folder / sub if sub else folder
                found = {}
                for name in wanted:
                    hit = next((d / v for v in _file_variants(name) if (d / v).is_file()), None)
                    if hit is None:
                        break
                    found[name] = hit
                if len(found) == len(wanted):
                    return found
    raise RlgenError(not_found_message(spec, split, data_dir))


def not_found_message(spec: DatasetSpec, split: str, data_dir: str | os.PathLike | None) -> str:
    """One line: which files were missing, every place looked, and how to get them."""
    places = []
    for label, folders in search_locations(spec, data_dir):
        if not folders:
            places.append(f"{label} (not set)")
        elif label in ("--data-dir", "$RLGEN_DATA"):
            places.append(f"{label} {folders[0]} (and {folders[0] / spec.name})")
        else:
            places.append(str(folders[0]))
    files = ", ".join(f"{f}[.gz]" if spec.format == "idx" else f for f in spec.files[split])
    ways = [w for w in (spec.how_to_get,) if w]
    ways += ["put the files in one of those folders or pass --data-dir DIR",
             "pass --download to fetch them when internet is available"]
    return (
        f"dataset '{spec.name}' ({split} split) not found: looked for {files} in "
        f"{'; '.join(places)}. To get it: {'; or '.join(ways)}"
    )


def _checksum_problem(path: Path, dl: Download) -> str | None:
    """None if ``path`` has the expected checksum(s), else a description of the mismatch."""
    for algo, expected in (("md5", dl.md5), ("sha256", dl.sha256)):
        if expected is None:
            continue
        h = hashlib.new(algo)
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        if h.hexdigest() != expected.lower():
            return f"expected {algo} {expected}, got {h.hexdigest()}"
    return None


def _fetch(dl: Download, dest: Path, opener: Callable[[str], BinaryIO]) -> Path:
    """Download one file into ``dest`` through a ``.part`` file; verify; rename. Returns its path."""
    assert dl.md5 or dl.sha256, f"download spec {dl.filename} has no checksum"
    target = dest / dl.filename
    part = dest / f".{dl.filename}.part"
    errors = []
    for url in dl.urls:
        try:
            with opener(url) as response, open(part, "wb") as out:
                shutil.copyfileobj(response, out, length=1 << 20)
            problem = _checksum_problem(part, dl)
            if problem is not None:
                raise RlgenError(
                    f"checksum mismatch for {url}: {problem}; the download is corrupt or the file "
                    "changed upstream, so nothing was saved (try again, or get the file another way)"
                )
            os.replace(part, target)
            return target
        except OSError as e:  # network errors are OSErrors (URLError); try the next mirror
            errors.append(f"{url}: {e}")
        finally:
            part.unlink(missing_ok=True)
    raise RlgenError(f"could not download {dl.filename}: {'; '.join(errors)}")


def _extract_members(archive: Path, names: tuple[str, ...], dest: Path) -> None:
    """Extract the regular files whose basename is in ``names`` (flat, no paths from the archive)."""
    wanted = set(names)
    with tarfile.open(archive, "r:*") as tar:
        for member in tar.getmembers():
            base = os.path.basename(member.name)
            if not member.isfile() or base not in wanted:
                continue
            src = tar.extractfile(member)
            assert src is not None
            part = dest / f".{base}.part"
            with src, open(part, "wb") as out:
                shutil.copyfileobj(src, out, length=1 << 20)
            os.replace(part, dest / base)
            wanted.discard(base)
    if wanted:
        raise RlgenError(f"{archive} lacks {', '.join(sorted(wanted))}; is it the right archive?")


def _urlopen(url: str) -> BinaryIO:
    return urllib.request.urlopen(url, timeout=60)  # noqa: S310 (http(s) and file:// are all fine here)


def download_dataset(
    name: str, dest: str | os.PathLike | None = None, opener: Callable[[str], BinaryIO] | None = None
) -> Path:
    """Download a dataset's files into ``dest``, verifying each checksum.

    Every file is written to a hidden ``.part`` file and renamed only once its
    checksum matches, so an interrupted or corrupt download leaves nothing
    that a later search would mistake for the dataset.

    Args:
        name: a dataset name from ``DATASETS`` (or an alias).
        dest: target folder; default the user cache ``<cache>/datasets/<name>``.
        opener: ``url -> readable binary file``; default ``urllib.request.urlopen``.

    Returns:
        The folder holding the files.
    """
    spec = resolve_name(name)
    if spec is None:
        raise unknown_name_error(name)
    if not spec.downloads:
        raise InputError(f"dataset '{spec.name}' is built in and needs no download")
    dest = Path(dest).expanduser() if dest is not None else cache_root() / "datasets" / spec.name
    dest.mkdir(parents=True, exist_ok=True)
    for dl in spec.downloads:
        if dl.extract and all((dest / m).is_file() for m in dl.extract):
            continue
        target = dest / dl.filename
        if not (target.is_file() and _checksum_problem(target, dl) is None):
            target = _fetch(dl, dest, opener or _urlopen)
        if dl.extract:
            _extract_members(target, dl.extract, dest)
            target.unlink()
    return dest
