"""The pure core: windows, tasks and their states, object naming and generations, messages, config, errors."""
