"""Mean-field theory: the variance map, its fixed points, chi_1 and the order-to-chaos phase diagram."""
