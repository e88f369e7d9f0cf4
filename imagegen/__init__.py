"""imagegen: one declarative host profile in, a bootable image proven under QEMU out."""

__version__ = "0.1.0"
