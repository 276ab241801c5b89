"""The teacher's side of the labs: release them, and grade submissions in a sandbox with verdicts it cannot reach."""
