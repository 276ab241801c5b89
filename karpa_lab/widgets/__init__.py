"""Interactive views: each widget wires sliders to a pure, tested function in the same module."""
