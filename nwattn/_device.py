"""Choice of the compute device."""

DEVICES = ("cpu", "cuda", "auto")


def resolve_device(device):
    """Validate ``device`` and return the backend that will run: ``"cpu"`` or ``"cuda"``.

    ``"auto"`` runs on the CPU in this version; ``"cuda"`` raises a clear
    error, because the GPU kernels are not part of this release.
    """
    if not isinstance(device, str) or device.lower() not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES}, got {device!r}")
    device = device.lower()
    if device == "cuda":
        raise NotImplementedError(
            "device='cuda' is not available in this version of nwattn; use device='cpu'"
        )
    return "cpu"
