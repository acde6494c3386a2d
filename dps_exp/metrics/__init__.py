"""Scores: image quality per image (PSNR, SSIM, LPIPS) and over a set (FID), posterior distances, and the
metric backbones' weights."""
