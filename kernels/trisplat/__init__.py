"""Triangle splatting rasterizer: torch reference (Triton kernels to come)."""
