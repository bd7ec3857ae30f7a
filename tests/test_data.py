"""CIFAR-10 loading: local archives, downloads (from a local HTTP server), safety checks.

Never touches the internet: archives are tiny synthetic ones and the only server is
http.server on 127.0.0.1, started here.
"""
import http.server
import io
import os
import pickle
import shutil
import socket
import sys
import tarfile
import threading
import warnings

import numpy as np
import pytest

from minivit.data import cifar10
from minivit.data.cifar10 import (
    ARCHIVE_NAME, CIFAR10_MD5, FOLDER, ChecksumWarning, DatasetSizeWarning,
    default_data_dir, download, file_md5, load_cifar10,
)
from minivit.data.synthetic import (
    LABEL_NAMES, make_synthetic_archive, synthetic_files, write_archive,
)

# Synthetic batches are 20 images, not 10,000: expected, and not what these tests are about.
pytestmark = pytest.mark.filterwarnings("ignore::minivit.data.cifar10.DatasetSizeWarning")


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch):
    """A proxy from the environment must not intercept requests to 127.0.0.1."""
    monkeypatch.setenv("no_proxy", "*")
    monkeypatch.setenv("NO_PROXY", "*")


@pytest.fixture
def archive(tmp_path):
    return make_synthetic_archive(tmp_path / "synthetic.tar.gz")


def _load(**kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ChecksumWarning)
        return load_cifar10(download=False, progress=False, **kw)


def _leftovers(data_dir):
    return sorted(p.name for p in data_dir.iterdir()) if data_dir.exists() else []


# --- loading local archives -------------------------------------------------------------
def test_load_from_archive_argument(archive, tmp_path):
    data_dir = tmp_path / "data"
    with pytest.warns(ChecksumWarning, match=CIFAR10_MD5):
        data = load_cifar10(data_dir=data_dir, archive=archive, download=False, progress=False)
    assert data["x_train"].shape == (100, 3, 32, 32) and data["x_train"].dtype == np.uint8
    assert data["x_test"].shape == (20, 3, 32, 32) and data["x_test"].dtype == np.uint8
    assert data["y_train"].shape == (100,) and data["y_train"].dtype == np.int64
    assert data["y_test"].shape == (20,) and data["y_test"].dtype == np.int64
    assert data["classes"] == list(LABEL_NAMES)
    assert set(data["y_train"].tolist()) == set(range(10))
    # The arrays are exactly what was pickled (images reshaped to C, H, W, batches in order).
    first = pickle.loads(synthetic_files()["data_batch_1"])
    np.testing.assert_array_equal(data["x_train"][:20], first[b"data"].reshape(20, 3, 32, 32))
    np.testing.assert_array_equal(data["y_train"][:20], first[b"labels"])
    assert _leftovers(data_dir) == [FOLDER]  # no temporary extraction folder left

    # Second time: straight from the extracted folder, no archive needed, no md5 warning.
    with warnings.catch_warnings():
        warnings.simplefilter("error", ChecksumWarning)
        again = load_cifar10(data_dir=data_dir, download=False)
    for key in ("x_train", "y_train", "x_test", "y_test"):
        np.testing.assert_array_equal(again[key], data[key])


def test_load_from_data_dir_and_env(archive, tmp_path, monkeypatch):
    data_dir = tmp_path / "cache"
    data_dir.mkdir()
    os.replace(archive, data_dir / ARCHIVE_NAME)
    monkeypatch.setenv("MINIVIT_DATA", str(data_dir))
    with pytest.warns(ChecksumWarning):
        data = load_cifar10(download=False, progress=False)
    assert data["x_train"].shape == (100, 3, 32, 32)
    assert (data_dir / FOLDER / "data_batch_5").is_file()


def test_sizes_other_than_official_warn(archive, tmp_path):
    with pytest.warns(DatasetSizeWarning, match="20, 20"):
        _load(data_dir=tmp_path / "d", archive=archive)


def test_official_md5_gives_no_warning(archive, tmp_path, monkeypatch):
    """The md5 warning depends on the md5: pretend the synthetic file is the official one."""
    monkeypatch.setattr(cifar10, "CIFAR10_MD5", file_md5(archive))
    with warnings.catch_warnings():
        warnings.simplefilter("error", ChecksumWarning)
        load_cifar10(data_dir=tmp_path / "d", archive=archive, download=False)


def test_invalid_folder_is_rebuilt_from_archive(archive, tmp_path):
    data_dir = tmp_path / "d"
    (data_dir / FOLDER).mkdir(parents=True)
    (data_dir / FOLDER / "data_batch_1").write_bytes(b"not a pickle")
    shutil.copy(archive, data_dir / ARCHIVE_NAME)     # the data dir's own archive
    with pytest.warns(UserWarning, match="failed validation"):
        data = _load(data_dir=data_dir)
    assert data["x_train"].shape == (100, 3, 32, 32)
    assert (data_dir / FOLDER / "test_batch").is_file()


def test_python2_style_pickles_load(tmp_path):
    """The official batches name numpy.core.multiarray (NumPy 1.x, Python 2)."""
    files = {name: blob.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
             for name, blob in synthetic_files().items()}
    assert b"numpy.core.multiarray" in files["data_batch_1"]
    path = write_archive(tmp_path / "py2.tar.gz", files)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        data = _load(data_dir=tmp_path / "d", archive=path)
    assert data["x_test"].shape == (20, 3, 32, 32)


def test_missing_data_and_no_download_says_where_to_put_it(tmp_path):
    with pytest.raises(RuntimeError) as err:
        load_cifar10(data_dir=tmp_path, download=False)
    msg = str(err.value)
    assert str(tmp_path / ARCHIVE_NAME) in msg and "--data-archive" in msg
    with pytest.raises(FileNotFoundError):
        load_cifar10(data_dir=tmp_path, archive=tmp_path / "nope.tar.gz")


# --- default_data_dir -------------------------------------------------------------------
def test_default_data_dir_resolution(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MINIVIT_DATA", str(tmp_path / "env"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_data_dir(tmp_path / "arg") == tmp_path / "arg"
    assert default_data_dir(str(tmp_path / "arg")) == tmp_path / "arg"
    assert default_data_dir() == tmp_path / "env"
    monkeypatch.setenv("MINIVIT_DATA", "")  # empty counts as unset
    assert default_data_dir() == tmp_path / "xdg" / "minivit"
    monkeypatch.delenv("MINIVIT_DATA")
    assert default_data_dir() == tmp_path / "xdg" / "minivit"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert default_data_dir() == tmp_path / "home" / ".cache" / "minivit"
    assert default_data_dir("~/x") == tmp_path / "home" / "x"


# --- downloads from a local server ------------------------------------------------------
@pytest.fixture
def server(archive):
    """127.0.0.1 server: /good sends the archive, /short promises more bytes than it sends."""
    body = archive.read_bytes()
    routes = {"/good": (body, len(body)), "/short": (body[: len(body) // 2], len(body))}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path not in routes:
                self.send_error(404)
                return
            payload, length = routes[self.path]
            self.send_response(200)
            self.send_header("Content-Length", str(length))
            self.end_headers()
            self.wfile.write(payload)
            self.close_connection = True

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


def test_download_good_file(server, archive, tmp_path):
    dest = tmp_path / "dl" / ARCHIVE_NAME
    out = download(f"{server}/good", dest, file_md5(archive), timeout=5, progress=True)
    assert out == dest and dest.read_bytes() == archive.read_bytes()
    assert _leftovers(dest.parent) == [ARCHIVE_NAME]


def test_download_wrong_checksum_is_an_error(server, tmp_path):
    dest = tmp_path / "dl" / ARCHIVE_NAME
    with pytest.raises(RuntimeError, match="its md5 is"):
        download(f"{server}/good", dest, "0" * 32, timeout=5, progress=False)
    assert _leftovers(dest.parent) == []  # neither the archive nor a .part


def test_download_interrupted_transfer(server, archive, tmp_path):
    dest = tmp_path / "dl" / ARCHIVE_NAME
    with pytest.raises(RuntimeError, match="interrupted after"):  # md5 is right for the whole file
        download(f"{server}/short", dest, file_md5(archive), timeout=5, progress=False)
    assert _leftovers(dest.parent) == []


def _closed_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("where", ["refused", "404"])
def test_download_network_error_says_what_to_do(server, tmp_path, where):
    base = f"http://127.0.0.1:{_closed_port()}" if where == "refused" else server
    url, dest = f"{base}/{ARCHIVE_NAME}", tmp_path / "dl" / ARCHIVE_NAME
    with pytest.raises(RuntimeError) as err:
        download(url, dest, CIFAR10_MD5, timeout=5, progress=False)
    assert url in str(err.value) and str(dest) in str(err.value)
    assert _leftovers(dest.parent) == []


def test_load_cifar10_download_must_match_official_md5(server, tmp_path):
    """The served file is not the official archive: a download is never trusted anyway."""
    with pytest.raises(RuntimeError, match="its md5 is"):
        load_cifar10(data_dir=tmp_path / "d", url=f"{server}/good", progress=False)
    assert _leftovers(tmp_path / "d") == []


# --- hostile or broken archives ---------------------------------------------------------
def _tar(path, members):
    """Write a .tar.gz from (TarInfo, bytes or None) pairs."""
    with tarfile.open(path, "w:gz") as tar:
        for info, blob in members:
            if blob is not None:
                info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob) if blob is not None else None)
    return path


def _file(name, blob):
    return tarfile.TarInfo(name), blob


def _link(name, target):
    info = tarfile.TarInfo(name)
    info.type, info.linkname = tarfile.SYMTYPE, target
    return info, None


@pytest.mark.parametrize("data_filter", [True, False], ids=["data_filter", "fallback"])
@pytest.mark.parametrize("bad", ["dotdot", "absolute_link", "outside_link"])
def test_unsafe_members_are_refused(tmp_path, monkeypatch, data_filter, bad):
    if data_filter and not cifar10._HAS_DATA_FILTER:
        pytest.skip("this Python has no tarfile data filter")
    monkeypatch.setattr(cifar10, "_HAS_DATA_FILTER", data_filter)
    files = list(synthetic_files().items())
    evil = {"dotdot": _file("../evil", b"pwned"),
            "absolute_link": _link(f"{FOLDER}/evil", "/etc/passwd"),
            "outside_link": _link(f"{FOLDER}/evil", "../../../evil")}[bad]
    members = [_file(f"{FOLDER}/{n}", b) for n, b in files[:3]] + [evil] + \
              [_file(f"{FOLDER}/{n}", b) for n, b in files[3:]]
    path = _tar(tmp_path / "evil.tar.gz", members)
    data_dir = tmp_path / "data"
    with pytest.raises(ValueError, match="refusing to extract"):
        _load(data_dir=data_dir, archive=path)
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["data", "evil.tar.gz"]


def test_safe_archive_extracts_with_fallback_check(archive, tmp_path, monkeypatch):
    monkeypatch.setattr(cifar10, "_HAS_DATA_FILTER", False)
    assert _load(data_dir=tmp_path / "d", archive=archive)["x_train"].shape[0] == 100


@pytest.mark.parametrize("damage", ["truncated", "garbage", "missing_batch"])
def test_broken_archive_is_a_clear_error_and_leaves_nothing(archive, tmp_path, damage):
    bad = tmp_path / "bad.tar.gz"
    if damage == "truncated":
        bad.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    elif damage == "garbage":
        bad.write_bytes(np.random.default_rng(0).bytes(4096))
    else:
        files = synthetic_files()
        del files["data_batch_5"]
        write_archive(bad, files)
    data_dir = tmp_path / "data"
    with pytest.raises((RuntimeError, ValueError)) as err:
        _load(data_dir=data_dir, archive=bad)
    assert str(bad) in str(err.value) and "download it again" in str(err.value)
    assert _leftovers(data_dir) == []  # no cifar-10-batches-py, no temporary folder


class _Payload:
    """Unpickling this runs code: the attack a restricted unpickler has to stop."""

    def __init__(self, how, marker):
        self.how, self.marker = how, str(marker)

    def __reduce__(self):
        if self.how == "os.system":
            return os.system, (f"touch '{self.marker}'",)
        return exec, (f"open({self.marker!r}, 'w').close()",)


@pytest.mark.parametrize("how", [
    "exec",
    pytest.param("os.system", marks=pytest.mark.skipif(sys.platform == "win32", reason="touch")),
])
def test_pickle_that_runs_code_is_refused(tmp_path, how):
    evil = lambda marker: pickle.dumps(  # noqa: E731
        {b"data": _Payload(how, marker), b"labels": []}, protocol=2)
    # The payload is live: a plain pickle.loads does run it.
    pickle.loads(evil(tmp_path / "proof"))
    assert (tmp_path / "proof").exists()

    marker = tmp_path / "pwned"
    files = synthetic_files()
    files["data_batch_1"] = evil(marker)
    path = write_archive(tmp_path / "evil.tar.gz", files)
    with pytest.raises(pickle.UnpicklingError, match="not a genuine CIFAR-10 batch|is not one"):
        _load(data_dir=tmp_path / "data", archive=path)
    assert not marker.exists()
    assert _leftovers(tmp_path / "data") == []

    # Same file already sitting in an extracted folder: refused there too.
    folder = tmp_path / "data2" / FOLDER
    folder.mkdir(parents=True)
    for name, blob in files.items():
        (folder / name).write_bytes(blob)
    with pytest.warns(UserWarning, match="refusing to load"), pytest.raises(RuntimeError):
        _load(data_dir=tmp_path / "data2")
    assert not marker.exists()


# --- single batch files -----------------------------------------------------------------
def test_read_batch_accepts_str_keys(tmp_path):
    data = np.arange(2 * 3072, dtype=np.int64).astype(np.uint8).reshape(2, 3072)
    path = tmp_path / "batch"
    path.write_bytes(pickle.dumps({"data": data, "labels": [3, 9]}, protocol=4))
    x, y = cifar10.read_batch(path)
    assert x.shape == (2, 3, 32, 32) and y.tolist() == [3, 9]
    np.testing.assert_array_equal(x.reshape(2, -1), data)


@pytest.mark.parametrize("bad, match", [
    ({b"data": np.zeros((2, 3072), np.float32), b"labels": [0, 1]}, "uint8"),
    ({b"data": np.zeros((2, 1024), np.uint8), b"labels": [0, 1]}, "3072"),
    ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}, "labels for 2 images"),
    ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]}, "outside 0..9"),
    ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [b"a", b"b"]}, "list of integers"),
    # floats are refused, not truncated (9.9 would have become class 9); bools too
    ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [1, 9.9]}, "float 9.9"),
    ({b"data": np.zeros((2, 3072), np.uint8), b"labels": np.array([1.0, 2.0])}, "float"),
    ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [True, False]}, "bool"),
    ({b"data": np.zeros((2, 3072), np.uint8), b"labels": 3}, "list of integers"),
    ({b"data": np.zeros((2, 3072), np.uint8)}, "no 'labels'"),
    ([1, 2], "not hold a dict"),
])
def test_read_batch_rejects_malformed(tmp_path, bad, match):
    path = tmp_path / "batch"
    path.write_bytes(pickle.dumps(bad, protocol=2))
    with pytest.raises(ValueError, match=match):
        cifar10.read_batch(path)
