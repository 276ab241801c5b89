"""Reference models the lessons build from scratch and then reuse; each is tested against PyTorch."""
