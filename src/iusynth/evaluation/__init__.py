"""Synthesis metrics (PSNR, SSIM, L1, LPIPS) per slice, subject and method."""
