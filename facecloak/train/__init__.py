"""Training of the hiding network: losses, data, and the (DDP-capable) training loop."""
