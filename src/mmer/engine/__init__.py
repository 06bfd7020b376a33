"""Training engine: fit / evaluate / predict, checkpoints, optimizers and schedules, seeding."""
