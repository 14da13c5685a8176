"""Neural networks: the hiding network and the frozen pretrained models facecloak runs."""
