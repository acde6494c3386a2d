"""Training a small diffusion prior (scripts/train_prior.py, conf/train/): crops of photographs, a DDPM loop."""
