"""Background processes: the projector runner and the periodic jobs."""
