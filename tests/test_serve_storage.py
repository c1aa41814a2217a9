"""Upload storage: LocalStorage on disk and S3Storage against an in-process moto S3 server."""

import io
import os
import sys
from pathlib import Path

import pytest
from s3_fixtures import s3_bucket, s3_server  # noqa: F401

from emofusion.serve.storage import LocalStorage, S3Storage, StorageError, storage_from_url

BIG = os.urandom(3 * 1024 * 1024 + 123)  # ~3 MB, not a multiple of any chunk size
BAD_KEYS = ["", "/etc/passwd", "../outside", "uploads/../../outside", "a\\b", "a\x00b", "a//b", "./a", "a/"]


class ChunkReader(io.RawIOBase):
    """A binary file object that records the size of every read, to check that data is streamed."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)
        self.sizes: list[int] = []

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        self.sizes.append(size)
        return self._data.read(size)


class FailingReader(io.RawIOBase):
    """A binary file object that fails after its first chunk."""

    def __init__(self) -> None:
        self._chunks = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        self._chunks += 1
        if self._chunks > 1:
            raise OSError(5, "Input/output error")
        return b"x" * 1000


def all_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


# ------------------------------------------------------------------ LocalStorage


@pytest.fixture
def local(tmp_path: Path) -> LocalStorage:
    return LocalStorage(tmp_path / "store" / "nested")


def test_local_creates_root_and_describes_it(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "a" / "b")
    assert (tmp_path / "a" / "b").is_dir()
    assert storage.description == f"local:{tmp_path / 'a' / 'b'}"


def test_local_round_trip_bytes(local: LocalStorage) -> None:
    assert not local.exists("uploads/1/video")
    local.put("uploads/1/video", b"hello bytes")
    assert local.exists("uploads/1/video")
    with local.local_path("uploads/1/video") as path:
        assert path == local.root / "uploads" / "1" / "video"
        assert path.read_bytes() == b"hello bytes"
    assert path.exists()  # the object's own file stays


def test_local_round_trip_file_object_is_streamed(local: LocalStorage, tmp_path: Path) -> None:
    source = tmp_path / "big.bin"
    source.write_bytes(BIG)
    with open(source, "rb") as f:
        local.put("uploads/2/video", f)
    reader = ChunkReader(BIG)
    local.put("uploads/3/video", reader)
    assert all(0 < size <= 1024 * 1024 for size in reader.sizes), reader.sizes[:5]
    for key in ("uploads/2/video", "uploads/3/video"):
        with local.local_path(key) as path:
            assert path.read_bytes() == BIG


def test_local_put_replaces_and_leaves_no_temporary_files(local: LocalStorage) -> None:
    local.put("k", b"first")
    local.put("k", b"second, longer")
    with local.local_path("k") as path:
        assert path.read_bytes() == b"second, longer"
    assert all_files(local.root) == [local.root / "k"]


def test_local_failed_put_leaves_old_object_and_no_partial_file(local: LocalStorage) -> None:
    local.put("uploads/4/video", b"old")
    with pytest.raises(StorageError, match="Input/output error"):
        local.put("uploads/4/video", FailingReader())
    with local.local_path("uploads/4/video") as path:
        assert path.read_bytes() == b"old"
    assert all_files(local.root) == [local.root / "uploads" / "4" / "video"]


def test_local_delete(local: LocalStorage) -> None:
    local.put("uploads/5/video", b"v")
    local.put("uploads/6/video", b"w")
    local.delete("uploads/5/video")
    assert not local.exists("uploads/5/video")
    assert local.exists("uploads/6/video")
    with pytest.raises(StorageError, match="no object"):
        with local.local_path("uploads/5/video"):
            pass
    assert not (local.root / "uploads" / "5").exists()  # emptied folders are pruned
    local.delete("uploads/5/video")  # missing: no error
    local.delete("never/there")
    local.delete("uploads/6/video")
    assert local.root.is_dir() and list(local.root.iterdir()) == []


@pytest.mark.parametrize("key", BAD_KEYS)
def test_local_rejects_bad_keys(local: LocalStorage, tmp_path: Path, key: str) -> None:
    before = all_files(tmp_path)
    with pytest.raises(StorageError):
        local.put(key, b"escape")
    with pytest.raises(StorageError):
        local.exists(key)
    with pytest.raises(StorageError):
        local.delete(key)
    with pytest.raises(StorageError):
        with local.local_path(key):
            pass
    assert all_files(tmp_path) == before


# ------------------------------------------------------------------ S3Storage


@pytest.fixture
def s3(s3_server: str, s3_bucket: str) -> S3Storage:  # noqa: F811
    return S3Storage(s3_bucket, "media/", endpoint_url=s3_server)


def test_s3_round_trip_bytes_under_prefix(s3: S3Storage, s3_server: str) -> None:  # noqa: F811
    import boto3

    assert not s3.exists("uploads/1/video")
    s3.put("uploads/1/video", b"hello s3")
    assert s3.exists("uploads/1/video")
    raw = boto3.client("s3", endpoint_url=s3_server).get_object(Bucket=s3.bucket, Key="media/uploads/1/video")
    assert raw["Body"].read() == b"hello s3"
    with s3.local_path("uploads/1/video") as path:
        assert path.name == "video"
        assert path.read_bytes() == b"hello s3"
    assert not path.exists() and not path.parent.exists()


def test_s3_round_trip_file_object(s3: S3Storage, tmp_path: Path) -> None:
    source = tmp_path / "big.bin"
    source.write_bytes(BIG)
    with open(source, "rb") as f:
        s3.put("uploads/2/video", f)
    with s3.local_path("uploads/2/video") as path:
        assert path.stat().st_size == len(BIG)
        assert path.read_bytes() == BIG
    assert not path.exists()


def test_s3_temporary_file_removed_when_block_raises(s3: S3Storage) -> None:
    s3.put("k", b"data")
    with pytest.raises(ValueError):
        with s3.local_path("k") as path:
            assert path.read_bytes() == b"data"
            raise ValueError("boom")
    assert not path.exists() and not path.parent.exists()


def test_s3_delete(s3: S3Storage) -> None:
    s3.put("uploads/3/video", b"v")
    s3.delete("uploads/3/video")
    assert not s3.exists("uploads/3/video")
    with pytest.raises(StorageError, match="no such object"):
        with s3.local_path("uploads/3/video"):
            pass
    s3.delete("uploads/3/video")  # missing: no error


@pytest.mark.parametrize("key", BAD_KEYS)
def test_s3_rejects_bad_keys(s3: S3Storage, key: str) -> None:
    with pytest.raises(StorageError):
        s3.put(key, b"escape")
    with pytest.raises(StorageError):
        s3.exists(key)
    with pytest.raises(StorageError):
        s3.delete(key)
    with pytest.raises(StorageError):
        with s3.local_path(key):
            pass


def test_s3_missing_bucket(s3_server: str) -> None:  # noqa: F811
    storage = S3Storage("no-such-bucket", endpoint_url=s3_server)
    missing = "bucket 'no-such-bucket' does not exist"
    with pytest.raises(StorageError, match=missing):
        storage.put("k", b"x")
    with pytest.raises(StorageError, match=missing):
        storage.exists("k")
    with pytest.raises(StorageError, match=missing):
        storage.delete("k")
    with pytest.raises(StorageError, match=missing):
        with storage.local_path("k"):
            pass


def test_s3_description_has_no_secrets() -> None:
    storage = S3Storage("b", "p", endpoint_url="http://user:secret@127.0.0.1:9000", client=object())
    assert storage.description == "s3://b/p/ at http://127.0.0.1:9000"


def test_s3_without_boto3(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "boto3", None)
    with pytest.raises(StorageError, match=r"emofusion\[s3\]"):
        S3Storage("bucket")


# ------------------------------------------------------------------ storage_from_url


def test_storage_from_url_s3(s3_server: str) -> None:  # noqa: F811
    storage = storage_from_url("s3://my-bucket/some/prefix/", endpoint_url=s3_server)
    assert isinstance(storage, S3Storage)
    assert (storage.bucket, storage.prefix) == ("my-bucket", "some/prefix/")
    storage = storage_from_url("s3://my-bucket", endpoint_url=s3_server)
    assert isinstance(storage, S3Storage)
    assert (storage.bucket, storage.prefix) == ("my-bucket", "")


def test_storage_from_url_local(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    storage = storage_from_url(f"file://{tmp_path}/from%20url")
    assert isinstance(storage, LocalStorage) and storage.root == tmp_path / "from url"
    storage = storage_from_url(str(tmp_path / "plain"))
    assert isinstance(storage, LocalStorage) and storage.root == tmp_path / "plain"
    monkeypatch.chdir(tmp_path)
    storage = storage_from_url("relative/dir")
    assert isinstance(storage, LocalStorage) and storage.root == tmp_path / "relative" / "dir"
    assert storage.root.is_dir()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://x", "unsupported storage URL scheme 'ftp'"),
        ("", "empty storage URL"),
        ("s3://", "no bucket"),
        ("s3://bucket/prefix?region=x", "query"),
        ("file://otherhost/srv/x", "file:///absolute/path"),
        ("s3://bucket/a/../b", r"'\.\.'"),
    ],
)
def test_storage_from_url_rejects(url: str, message: str) -> None:
    with pytest.raises(StorageError, match=message):
        storage_from_url(url)
