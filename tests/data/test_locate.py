"""Missing data becomes one clear DataError line, and no test touches the network."""

from __future__ import annotations

import socket
import threading
import time
import urllib.error
import urllib.request

import pytest

from mixcollapse.config import DataConfig
from mixcollapse.data import locate as data
from mixcollapse.data.datasets import build_datasets
from mixcollapse.data.locate import DataError

EXPECTED = {
    "cifar10": ["cifar-10-batches-py/data_batch_1..5, test_batch, batches.meta", "cifar-10-python.tar.gz"],
    "cifar100": ["cifar-100-python/train, test, meta", "cifar-100-python.tar.gz"],
    "fashionmnist": ["FashionMNIST/raw/train-images-idx3-ubyte(.gz)", "t10k-labels-idx1-ubyte(.gz)", "fashion-mnist"],
}


@pytest.fixture
def offline(monkeypatch):
    """No connection can be opened: what a machine without network looks like to the probe."""

    def refuse(*args, **kwargs):
        raise socket.gaierror(-2, "Name or service not known")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


def one_line_error(cfg: DataConfig) -> str:
    with pytest.raises(DataError) as info:
        build_datasets(cfg)
    message = str(info.value)
    assert "\n" not in message and isinstance(info.value, ValueError)
    return message


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_download_off_names_the_files(tmp_path, name):
    message = one_line_error(DataConfig(name=name, root=str(tmp_path), download=False))
    assert "data.download is false" in message and str(tmp_path) in message
    for text in EXPECTED[name]:
        assert text in message
    assert not any(tmp_path.iterdir())  # nothing written


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_offline_download_fails_fast(tmp_path, offline, name):
    start = time.monotonic()
    message = one_line_error(DataConfig(name=name, root=str(tmp_path), download=True))
    assert time.monotonic() - start < 5
    assert "no network" in message and EXPECTED[name][0] in message


@pytest.mark.parametrize("name", ["cifar10", "fashionmnist"])
def test_download_errors_from_torchvision_become_data_errors(tmp_path, monkeypatch, offline, name):
    def no_url(*args, **kwargs):
        raise urllib.error.URLError("simulated: temporary failure in name resolution")

    monkeypatch.setattr(data, "_reachable", lambda url, timeout=0: True)  # the probe passes, the download fails
    monkeypatch.setattr(urllib.request, "urlopen", no_url)
    before = socket.getdefaulttimeout()
    message = one_line_error(DataConfig(name=name, root=str(tmp_path), download=True))
    assert "download failed" in message and EXPECTED[name][0] in message
    assert socket.getdefaulttimeout() == before  # the short download timeout is restored


@pytest.mark.slow  # waits out the probe's timeout
def test_probe_gives_up_when_dns_hangs(monkeypatch):
    release = threading.Event()

    def hang(*args, **kwargs):  # a resolver that does not answer until the test is over
        release.wait(10)
        raise TimeoutError("timed out")

    monkeypatch.setattr(socket, "create_connection", hang)
    start = time.monotonic()
    try:
        assert not data._reachable("https://www.cs.toronto.edu/x.tar.gz", timeout=0.2)
        assert time.monotonic() - start < 3
    finally:
        release.set()


def test_probe_success(monkeypatch):
    class Conn:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    seen = []
    monkeypatch.setattr(socket, "create_connection", lambda address, timeout: seen.append(address) or Conn())
    assert data._reachable("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/")
    assert seen == [("fashion-mnist.s3-website.eu-central-1.amazonaws.com", 80)]


def test_unknown_dataset():
    with pytest.raises(DataError, match="unknown dataset 'mnist'"):
        build_datasets(DataConfig(name="mnist"))
