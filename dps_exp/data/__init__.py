"""Where images come from: files (the bundled photographs, a folder, the paper's validation sets) and exact-prior
draws, each an ordered list of items loaded as (C, size, size) tensors in [0, 1]."""
