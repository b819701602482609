"""What a try runs: the handler of each task type, the task context, log capture and the
references to user callables."""
