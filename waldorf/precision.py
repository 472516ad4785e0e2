"""Mixed precision that follows the hardware, so one profile runs on any machine.

A profile asks for ``"bf16"`` (mixed precision, the best the machine has), ``"fp16"`` or
``"no"``. What runs:

- on a GPU with native bf16 (compute capability 8.0 or newer: A100, L4, H100, H200): bf16;
- on an older GPU (a T4, Colab's free one): fp16 autocast, where Accelerate adds a gradient
  scaler (``Accelerator(mixed_precision="fp16")`` brings its own ``GradScaler``: the loss is
  scaled before backward, steps with inf/nan gradients are skipped) so that small fp16
  gradients do not underflow to zero;
- on a CPU with AVX512-BF16 or AMX: bf16 autocast (about twice as fast as fp32);
- elsewhere: fp32. No profile fails for want of bf16.

Explained in book/02_teacher.ipynb.
"""

from __future__ import annotations

import torch

PRECISIONS = ("no", "bf16", "fp16")


def cpu_supports_bf16() -> bool:
    """Whether bf16 autocast is fast here (AVX512-BF16 or AMX); elsewhere it is emulated and slow.

    Explained in book/02_teacher.ipynb.
    """
    checks = [getattr(torch.cpu, name, None)
              for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    return any(check() for check in checks if check is not None)


def cuda_supports_bf16() -> bool:
    """Whether this GPU computes in bf16 natively (compute capability 8.0 or newer).

    torch's default check also counts emulated bf16 (a T4 passes it), which runs far slower
    than fp16 there, so the emulation is left out. Explained in book/02_teacher.ipynb.
    """
    try:
        return torch.cuda.is_bf16_supported(including_emulation=False)
    except TypeError:  # a torch without the emulation switch
        return torch.cuda.get_device_capability() >= (8, 0)


def resolve_mixed_precision(requested: str) -> str:
    """The precision actually used for ``requested`` on this hardware (rules in the module doc).

    Explained in book/02_teacher.ipynb.
    """
    if requested not in PRECISIONS:
        raise ValueError(f"mixed_precision must be 'no', 'bf16' or 'fp16', not {requested!r}")
    if requested == "no":
        return "no"
    if torch.cuda.is_available():
        return "bf16" if requested == "bf16" and cuda_supports_bf16() else "fp16"
    return "bf16" if cpu_supports_bf16() else "no"


def autocast(requested: str) -> torch.autocast:
    """``torch.autocast`` in the precision ``requested`` resolves to here (off for fp32), for
    inference outside the training loop, which gets its autocast from Accelerate.

    Explained in book/02_teacher.ipynb.
    """
    precision = resolve_mixed_precision(requested)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device, dtype=dtype, enabled=precision != "no")
