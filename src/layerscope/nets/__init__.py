"""The networks: activations, initializers, losses, the plain MLP and K stacked members of one shape."""
