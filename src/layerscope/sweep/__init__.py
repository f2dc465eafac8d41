"""Sweeps: the stacked launcher, progress, the sweep report and the callbacks that end a sweep."""
