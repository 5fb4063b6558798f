"""What runs a task: the Task interface, TrainConfig, the trainer, the run directory, loggers and
distributed glue. Imports only ``core`` (and ``errors``); tasks plug into it, it never imports them."""
