"""Choosing the device and the mixed-precision mode."""

from __future__ import annotations

import contextlib
import functools
from pathlib import Path

import torch

from cacl_cli.errors import CaclError

DEVICE_FORMS = "auto, cpu, cuda, cuda:N or mps"


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when present; a device that is absent is an error naming what is
    there, never a silent CPU."""
    kind, colon, index = name.partition(":")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if kind == "cuda" and (not colon or index.isdigit()):
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise CaclError(f"--device {name}: no CUDA device is visible; use {_present()}")
        if colon and int(index) >= count:
            raise CaclError(f"--device {name}: this machine has cuda:0 to cuda:{count - 1}")
        return torch.device(name)
    if name == "mps":
        if not torch.backends.mps.is_available():
            raise CaclError(f"--device mps: Apple's Metal backend is not here; use {_present()}")
        return torch.device("mps")
    raise CaclError(f"--device {name}: use {DEVICE_FORMS}")


def _present() -> str:
    """The devices this machine has, as --device values."""
    found = ["cpu"]
    if torch.cuda.is_available():
        found.append(
            "cuda"
            + (
                f" (cuda:0 to cuda:{torch.cuda.device_count() - 1})"
                if torch.cuda.device_count() > 1
                else ""
            )
        )
    if torch.backends.mps.is_available():
        found.append("mps")
    return " or ".join(found)


def amp_dtype(mode: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``run.amp``, None for float32. On CUDA ``auto`` is bf16 where the
    GPU supports it, fp16 otherwise; on the CPU ``auto`` is bf16 only with native bf16
    instructions (emulated bf16 is slower than float32), and fp16 is refused."""
    if mode == "off" or device.type not in ("cuda", "cpu"):
        return None
    if device.type == "cpu":
        if mode == "fp16":
            raise CaclError("run.amp=fp16 needs CUDA; on the CPU use run.amp=bf16, auto or off")
        return torch.bfloat16 if mode == "bf16" or native_bf16_cpu() else None
    if mode == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if mode == "bf16" else torch.float16


AMP_SETTINGS = {None: "off", torch.bfloat16: "bf16", torch.float16: "fp16"}


def precision_name(dtype: torch.dtype | None) -> str:
    """How logs and results files name an autocast dtype: bfloat16, float16 or float32."""
    return str(dtype or torch.float32).removeprefix("torch.")


def amp_reason(mode: str, device: torch.device) -> str:
    """Why ``run.amp`` resolves as it does here, in a few words."""
    if mode != "auto":
        return f"run.amp={mode}"
    if device.type == "cpu":
        native = [flag for flag in BF16_CPU_FLAGS if flag in cpu_flags()]
        return (
            f"run.amp=auto: this CPU has native bf16 ({', '.join(native)})"
            if native
            else "run.amp=auto: this CPU has no native bf16 (avx512_bf16 or amx_bf16)"
        )
    return f"run.amp=auto on {device.type}"


def autocast(dtype: torch.dtype | None, device: torch.device):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")  # native bf16 matrix instructions (x86)


@functools.cache
def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> frozenset[str]:
    """The CPU's feature flags as Linux lists them (empty elsewhere)."""
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.partition(":")[2].split())
    return frozenset()


def bf16_matmul_pays(device: torch.device) -> bool:
    """Whether bfloat16 matrix products are the fast choice here: under bf16 autocast on CUDA,
    and on CPUs with native bf16 instructions (elsewhere bf16 is emulated and slower)."""
    if device.type == "cuda":
        return torch.is_autocast_enabled("cuda") and torch.get_autocast_dtype("cuda") == (
            torch.bfloat16
        )
    return device.type == "cpu" and native_bf16_cpu()


def native_bf16_cpu() -> bool:
    """Whether this CPU has native bf16 matrix instructions (else bf16 is emulated, and slower)."""
    return any(flag in cpu_flags() for flag in BF16_CPU_FLAGS)
