"""Device choices of ``cacl_cli.device``: the device, the precision, the CPU's flags."""

import pytest
import torch

from cacl_cli import device


def test_cpu_flags_are_read_from_cpuinfo(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx512f avx512_bf16\nbugs\t\t: none\n")
    assert device.cpu_flags(cpuinfo) == {"fpu", "sse2", "avx512f", "avx512_bf16"}
    assert device.cpu_flags(tmp_path / "absent") == frozenset()


@pytest.mark.parametrize(
    "flags,expected",
    [({"avx512f", "avx512_bf16"}, True), ({"amx_bf16"}, True), ({"avx2", "avx512f"}, False)],
)
def test_bf16_products_are_chosen_only_where_the_cpu_has_bf16_instructions(
    monkeypatch, flags, expected
):
    monkeypatch.setattr(device, "cpu_flags", lambda: frozenset(flags))
    assert device.bf16_matmul_pays(torch.device("cpu")) is expected


@pytest.mark.parametrize(
    "flags,mode,expected",
    [
        ({"avx512_bf16"}, "auto", torch.bfloat16),
        ({"amx_bf16"}, "auto", torch.bfloat16),
        ({"avx2"}, "auto", None),
        ({"avx2"}, "bf16", torch.bfloat16),
        ({"amx_bf16"}, "off", None),
    ],
)
def test_run_amp_on_the_cpu_is_bf16_only_where_native_or_asked_for(
    monkeypatch, flags, mode, expected
):
    monkeypatch.setattr(device, "cpu_flags", lambda: frozenset(flags))
    assert device.amp_dtype(mode, torch.device("cpu")) is expected


def test_fp16_on_the_cpu_is_refused_with_what_to_use():
    with pytest.raises(device.CaclError, match="run.amp=bf16"):
        device.amp_dtype("fp16", torch.device("cpu"))


def _machine(monkeypatch, cuda: int, mps: bool) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: cuda)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)


def test_a_gpu_index_and_apples_backend_are_taken_where_torch_has_them(monkeypatch):
    _machine(monkeypatch, cuda=2, mps=False)
    assert device.resolve_device("cuda:1") == torch.device("cuda", 1)
    assert device.resolve_device("cuda") == torch.device("cuda")
    _machine(monkeypatch, cuda=0, mps=True)
    assert device.resolve_device("mps") == torch.device("mps")
    assert device.resolve_device("auto") == torch.device("cpu")


@pytest.mark.parametrize(
    "name,cuda,mps,message",
    [
        ("cuda:2", 2, False, "--device cuda:2: this machine has cuda:0 to cuda:1"),
        ("cuda:0", 0, True, "no CUDA device is visible; use cpu or mps"),
        ("mps", 1, False, "Apple's Metal backend is not here; use cpu or cuda"),
        ("tpu", 0, False, "--device tpu: use auto, cpu, cuda, cuda:N or mps"),
        ("cuda:x", 1, False, "use auto, cpu, cuda, cuda:N or mps"),
    ],
)
def test_an_absent_device_is_refused_naming_what_is_there(monkeypatch, name, cuda, mps, message):
    _machine(monkeypatch, cuda=cuda, mps=mps)
    with pytest.raises(device.CaclError, match=message.replace("(", r"\(")):
        device.resolve_device(name)
