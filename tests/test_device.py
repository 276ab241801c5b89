"""Device choice, the size knob and seeding."""

from __future__ import annotations

import pytest
import torch

from karpa_lab.device import (
    DeviceError,
    autocast_dtype,
    by_scale,
    describe,
    get_device,
    scale,
    seed_everything,
)


def test_default_device_is_the_best_available(monkeypatch):
    monkeypatch.delenv("KARPA_DEVICE", raising=False)
    expected = "cuda" if torch.cuda.is_available() else ("mps" if torch.backends.mps.is_available() else "cpu")
    assert get_device().type == expected


def test_override_to_cpu(monkeypatch):
    monkeypatch.setenv("KARPA_DEVICE", "cpu")
    assert get_device() == torch.device("cpu")
    assert "set by KARPA_DEVICE" in describe()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_cuda_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("KARPA_DEVICE", "cuda")
    with pytest.raises(DeviceError, match="sees no CUDA GPU.*Unset KARPA_DEVICE"):
        get_device()


def test_unknown_device_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("KARPA_DEVICE", "tpu9")
    with pytest.raises(DeviceError, match="not a device name"):
        get_device()


@pytest.mark.skipif(torch.backends.mps.is_available(), reason="this machine has MPS")
def test_mps_without_mps_is_a_clear_error():
    with pytest.raises(DeviceError, match="MPS"):
        get_device("mps")


def test_autocast_dtype_on_cpu():
    assert autocast_dtype("cpu") is None
    assert autocast_dtype("cpu", cpu_bf16=True) == torch.bfloat16


def test_scale_knob(monkeypatch):
    monkeypatch.delenv("KARPA_SCALE", raising=False)
    assert scale() == "small" and by_scale(1, 2) == 1
    monkeypatch.setenv("KARPA_SCALE", "full")
    assert scale() == "full" and by_scale(1, 2) == 2
    monkeypatch.setenv("KARPA_SCALE", "huge")
    with pytest.raises(ValueError, match="'small'.*'full'"):
        scale()


def test_seed_everything_repeats():
    seed_everything(7)
    a = torch.randn(3)
    seed_everything(7)
    assert torch.equal(a, torch.randn(3))
