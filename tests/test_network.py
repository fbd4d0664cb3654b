"""``tfmot_easiedge._network``: one recogniser of a failed Keras download, used by ``keras:NAME`` and CIFAR-10.

The failure is made by Keras itself, without a network: ``get_file`` on a ``file://`` URL that does not
exist goes through the same urllib call and the same wrapping as a download without a connection.
"""
from __future__ import annotations

import socket

import pytest

from tfmot_easiedge._network import download_failure_text, is_download_failure


def _keras_fetch_failure(tmp_path) -> Exception:
    import keras

    with pytest.raises(Exception) as err:
        keras.utils.get_file("weights.h5", origin="file:///nonexistent-easiedge/weights.h5",
                             cache_dir=str(tmp_path / "cache"))
    return err.value


def test_what_keras_raises_for_a_failed_download_is_recognised(tmp_path):
    error = _keras_fetch_failure(tmp_path)
    assert type(error) is Exception  # Keras's bare Exception, which callers must not swallow wholesale
    assert is_download_failure(error)
    text = download_failure_text(error)
    assert "\n" not in text and len(text) <= 90
    assert "No such file or directory" in text


def test_transport_errors_count_and_other_errors_do_not():
    assert is_download_failure(TimeoutError("timed out"))  # socket.timeout
    assert is_download_failure(socket.gaierror(-2, "Name or service not known"))
    assert not is_download_failure(ValueError("weights expect 1000 classes"))
    assert not is_download_failure(RuntimeError("out of memory"))


def test_the_reason_is_one_line_and_keeps_its_end():
    error = Exception("URL fetch failure on https://example.org/w.h5: None --\n  [Errno -2] Name or service not known")
    assert download_failure_text(error, width=30) == "-2] Name or service not known"
    assert download_failure_text(Exception()) == "Exception"


def test_keras_application_offline_is_one_line(monkeypatch, tmp_path):
    """``keras:NAME`` with ImageNet weights that cannot be fetched: a UserError naming the ways out."""
    import keras

    from tfmot_easiedge.cli._common import UserError
    from tfmot_easiedge.cli.loading import _application

    error = _keras_fetch_failure(tmp_path)

    def offline(*args, **kwargs):
        raise error

    monkeypatch.setattr(keras.applications, "MobileNetV2", offline)
    with pytest.raises(UserError, match=r"could not download the ImageNet weights \(.*No such file or directory.*\); "
                                        "connect to the internet, or pass --weights none") as err:
        _application("MobileNetV2", None, None)
    assert "\n" not in str(err.value)
