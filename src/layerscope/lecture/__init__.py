"""The lecture: its claims checked by chapter, the ravine and saddle simulations, the probe grid, make reproduce."""
